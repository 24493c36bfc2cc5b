"""A 2-D map of every stored embedding (PCA, then UMAP), fitted in the background and cached on disk.

The fit is the slow part (minutes at 100k logos), so it is a derived result
(:class:`MapFit`, :mod:`pipeline.derived`) made by a background worker with
progress, saved under ``<data>/map/`` keyed by the store's content (model and
logo ids), and reused at start. Logos added after a fit are placed with the
fitted model's ``transform`` (no refit); :meth:`LogoMap.start` with
``refit=True`` fits again on everything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np

from pipeline.derived import Derived, Made
from pipeline.errors import StoreError
from pipeline.store import LogoStore
from pipeline.util import atomic_write_json

log = logging.getLogger(__name__)

MIN_POINTS = 10  # fewer logos than this make no meaningful map


@dataclass(frozen=True)
class MapConfig:
    """UMAP parameters (umap-learn's defaults but cosine metric and PCA init) and the PCA step before it."""

    n_neighbors: int = 15
    min_dist: float = 0.1
    pca_dims: int = 50
    metric: str = "cosine"
    init: str = "pca"  # the spectral default crawls when logos form many disconnected clusters
    max_fit: int = 50_000  # logos the UMAP fit sees (a seeded sample past that); the rest are placed by transform


@dataclass(frozen=True)
class MapStatus:
    """Where the background fit stands, for a progress bar."""

    state: str  # "empty" (nothing fitted), "fitting", "ready", "failed"
    progress: float  # 0..1 while fitting
    message: str
    fitted: int = 0  # logos in the fit
    placed: int = 0  # logos placed afterwards with transform
    seconds: float | None = None  # duration of the last fit


@dataclass(frozen=True)
class MapPoints:
    """Map coordinates of stored logos: ``xy[i]`` is logo ``ids[i]``."""

    ids: np.ndarray
    xy: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class _Fit:
    key: str
    model: Any  # a fitted sklearn Pipeline: PCA -> UMAP
    ids: np.ndarray
    xy: np.ndarray
    seconds: float
    model_id: str | None  # the embedder whose vectors it was fitted on: another's cannot be placed on it
    placed_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    placed_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))


class _EpochProgress:
    """A file-like sink for UMAP's tqdm bar that turns ``n/total`` into a fraction."""

    def __init__(self, report: Any) -> None:
        self.report = report

    def write(self, text: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            done, total = (int(v) for v in found[-1])
            self.report(done / max(1, total))

    def flush(self) -> None:
        pass


def content_key(model_id: str | None, ids: np.ndarray) -> str:
    """A short hash of what the map depends on: the embedding model and the set of logos."""
    digest = hashlib.sha1((model_id or "").encode())
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class MapFit(Derived[_Fit]):
    """The map's fit as a derived result, kept under ``<data>/map/`` and read again at start.

    It depends on the embedding model only: logos added after a fit are placed on it with ``transform``, so it
    is stale only when there is none for the store's model (after a re-embed); a refit on every logo is asked
    for explicitly (:meth:`LogoMap.start` with ``refit=True``).
    """

    name = "map"

    def __init__(self, logo_map: LogoMap) -> None:
        super().__init__()
        self.logo_map = logo_map

    def fingerprint(self) -> str:
        return self.logo_map.store.model_id or ""

    def make(self) -> _Fit:
        import numba

        # leave a core to the requests being served: numba's thread count is per calling thread
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS - 1))
        return self.logo_map.fit_now(self.report)

    def save(self, made: Made[_Fit]) -> None:
        self.logo_map.save_fit(made.value)

    def load(self) -> Made[_Fit] | None:
        fit = self.logo_map.load_fit()
        return None if fit is None else Made(fit.model_id or "", fit, fit.seconds)


class LogoMap:
    """The UMAP map of one store.

    Args:
        store: The logo store whose vectors are mapped.
        directory: Where fits are cached (``<data>/map``).
        config: UMAP / PCA parameters.

    Example:
        >>> import tempfile
        >>> from pipeline.store import LogoStore
        >>> m = LogoMap(LogoStore(tempfile.mkdtemp()), Path(tempfile.mkdtemp()))
        >>> m.status().state, m.points() is None
        ('empty', True)
    """

    def __init__(self, store: LogoStore, directory: Path, config: MapConfig | None = None) -> None:
        self.store = store
        self.directory = Path(directory)
        self.config = config or MapConfig()
        self.result = MapFit(self)
        self._lock = threading.RLock()
        self._message = "not fitted yet"

    # -- state ---------------------------------------------------------------------------
    def _current_fit(self) -> _Fit | None:
        """The fit, unless it was made on another embedder's vectors (the store was re-embedded since)."""
        fit = self.result.fresh()
        if fit is None and self.result.current() is not None:
            self._message = "the store was re-embedded: the map is fitted again"
        return fit

    def status(self) -> MapStatus:
        with self._lock:
            fit = self._current_fit()
            state = self.result.state()
            if state == "making":
                return MapStatus("fitting", self.result.progress, self.result.message, len(fit.ids) if fit else 0)
            if state == "failed":
                return MapStatus("failed", 0.0, f"the map fit failed: {self.result.failure}")
            if fit is None:
                return MapStatus("empty", 0.0, self._message)
            return MapStatus("ready", 1.0, f"{len(fit.ids)} logos fitted", len(fit.ids), len(fit.placed_ids),
                             fit.seconds)

    def _pointer(self) -> Path:
        return self.directory / "current.json"

    def load_fit(self) -> _Fit | None:
        """The last fit saved on disk (a restart reuses it instead of fitting again); None if none is usable."""
        try:
            pointer = json.loads(self._pointer().read_text())
            saved = joblib.load(self.directory / pointer["file"])
        except FileNotFoundError:
            return None
        except Exception as exc:  # a damaged cache costs a refit, never the app
            log.warning("ignoring the cached map (%s); it will be fitted again", exc)
            return None
        fit = _Fit(saved["key"], saved["model"], saved["ids"], saved["xy"], saved["seconds"], saved.get("model_id"))
        placed = self.directory / f"placed-{saved['key']}.npz"
        if placed.exists():
            with np.load(placed) as data:
                fit.placed_ids, fit.placed_xy = data["ids"], data["xy"]
        self._message = f"loaded the cached map of {len(fit.ids)} logos"
        return fit

    def cached_for_current_store(self) -> bool:
        """Whether the cached fit covers exactly the logos stored now."""
        with self._lock:
            fit = self._current_fit()
            ids = np.array(self.store.ids(), dtype=np.int64)
            return fit is not None and fit.key == content_key(self.store.model_id, ids)

    # -- fitting -------------------------------------------------------------------------
    def start(self, refit: bool = False) -> bool:
        """Fit in the background unless a fit is running or one is there for the store's model.

        Args:
            refit: Fit again on every stored logo even if a map exists.

        Returns:
            True if a fit was started.
        """
        with self._lock:
            if self.result.state() == "making":
                return False
            if self._current_fit() is not None and not refit:
                return False
            if self.store.count() < MIN_POINTS:
                self._message = f"a map needs at least {MIN_POINTS} logos; the store has {self.store.count()}"
                return False
            self.result.request(force=refit)
            return True

    def wait(self, timeout: float | None = None) -> MapStatus:
        """Block until a running fit ends (for scripts and tests)."""
        self.result.wait(timeout)
        return self.status()

    def fit(self) -> MapStatus:
        """Fit now on every stored logo, whatever is cached (the caller waits).

        Raises:
            StoreError: fewer than :data:`MIN_POINTS` logos.
        """
        self.result.refresh(force=True)
        return self.status()

    def fit_now(self, report: Callable[[float, str], None]) -> _Fit:
        """Fit PCA + UMAP on the stored vectors (a seeded sample of ``max_fit`` past that, the rest placed with
        ``transform``), telling ``report`` how far it is."""
        from sklearn.decomposition import PCA
        from sklearn.pipeline import make_pipeline
        from umap import UMAP

        started = time.perf_counter()
        report(0.02, "reading the vectors")
        model_id = self.store.model_id
        all_ids = np.array(self.store.ids(), dtype=np.int64)
        if len(all_ids) == 0:
            raise StoreError("the store is empty")
        if len(all_ids) < MIN_POINTS:
            raise StoreError(f"a map needs at least {MIN_POINTS} logos")
        key = content_key(model_id, all_ids)
        ids, rest_ids = all_ids, np.zeros(0, np.int64)
        if len(all_ids) > self.config.max_fit:  # UMAP's fit grows faster than linearly: fit a sample, place the rest
            chosen = np.zeros(len(all_ids), dtype=bool)
            chosen[np.random.default_rng(int(key[:8], 16)).choice(len(all_ids), self.config.max_fit,
                                                                   replace=False)] = True
            ids, rest_ids = all_ids[chosen], all_ids[~chosen]
        vectors = self.store.vectors(ids.tolist())  # only the fitted logos in memory; the rest come in chunks
        share = 1.0 if not len(rest_ids) else 0.6  # of the progress bar, for the fit (the rest: placing)
        report(0.05, f"building the neighbour graph of {len(ids)} logos")
        steps = []
        if vectors.shape[1] > self.config.pca_dims and len(ids) > self.config.pca_dims:
            steps.append(PCA(self.config.pca_dims, random_state=0))
        epochs = _EpochProgress(lambda f: report(0.3 + (share - 0.3) * f, f"laying out: {f:.0%} of the epochs"))
        steps.append(UMAP(n_neighbors=min(self.config.n_neighbors, len(ids) - 1), min_dist=self.config.min_dist,
                          metric=self.config.metric, low_memory=True, init=self.config.init,
                          tqdm_kwds={"disable": False, "file": epochs, "mininterval": 0.5,
                                     "bar_format": "{n}/{total}"}))
        model = make_pipeline(*steps)
        xy = model.fit_transform(vectors).astype(np.float32)
        model[-1].tqdm_kwds = {"disable": True}  # the progress sink is not for pickling, nor for transform
        placed = []
        for start in range(0, len(rest_ids), 50_000):
            report(share + (0.98 - share) * start / len(rest_ids), f"placing the other logos: {start} of {len(rest_ids)}")
            chunk = self.store.vectors(rest_ids[start:start + 50_000].tolist())
            placed.append(np.asarray(model.transform(chunk), dtype=np.float32))
        rest_xy = np.concatenate(placed) if placed else np.zeros((0, 2), np.float32)
        seconds = time.perf_counter() - started
        report(0.99, "saving the map")
        log.info("map fitted: %d logos (+%d placed) in %.1f s", len(ids), len(rest_ids), seconds)
        return _Fit(key, model, ids, xy, seconds, model_id, rest_ids, rest_xy)

    def save_fit(self, fit: _Fit) -> None:
        """Save ``fit`` atomically and make it the one a restart loads (the previous one's files go)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"fit-{fit.key}.joblib"
        partial = self.directory / f".{name}.partial"
        joblib.dump({"key": fit.key, "model": fit.model, "ids": fit.ids, "xy": fit.xy, "seconds": fit.seconds,
                     "model_id": fit.model_id}, partial)
        os.replace(partial, self.directory / name)
        previous = self._pointer_file()
        atomic_write_json(self._pointer(), {"file": name, "key": fit.key, "logos": int(len(fit.ids))})
        if previous and previous != name:
            (self.directory / previous).unlink(missing_ok=True)
            for old in self.directory.glob("placed-*.npz"):
                old.unlink(missing_ok=True)
        if len(fit.placed_ids):
            with self._lock:
                self._save_placed(fit)

    def _pointer_file(self) -> str | None:
        try:
            return json.loads(self._pointer().read_text())["file"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    # -- reading -------------------------------------------------------------------------
    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Place vectors on the current map without refitting (``[n, 2]``)."""
        with self._lock:
            fit = self._current_fit()
            if fit is None:
                raise StoreError("the map is not fitted yet")
            model = fit.model
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, vectors.shape[-1])
        if len(vectors) == 0:
            return np.zeros((0, 2), np.float32)
        return np.asarray(model.transform(vectors), dtype=np.float32)

    def points(self) -> MapPoints | None:
        """Coordinates of every stored logo: the fit, plus logos added since, placed with ``transform``."""
        with self._lock:
            fit = self._current_fit()
            if fit is None:
                return None
            stored = np.array(self.store.ids(), dtype=np.int64)
            known = np.concatenate([fit.ids, fit.placed_ids])
            new = np.setdiff1d(stored, known, assume_unique=True)
            if len(new):
                xy = self.transform(self.store.vectors(new.tolist()))
                fit.placed_ids = np.concatenate([fit.placed_ids, new])
                fit.placed_xy = np.concatenate([fit.placed_xy, xy]).astype(np.float32)
                self._save_placed(fit)
            ids = np.concatenate([fit.ids, fit.placed_ids])
            xy = np.concatenate([fit.xy, fit.placed_xy])
            keep = np.isin(ids, stored)
            return MapPoints(ids[keep], xy[keep])

    def _save_placed(self, fit: _Fit) -> None:
        path = self.directory / f"placed-{fit.key}.npz"
        partial = path.with_name(f".{path.stem}.partial.npz")
        np.savez(partial, ids=fit.placed_ids, xy=fit.placed_xy)
        os.replace(partial, path)

"""Nearest-neighbour search over the store's vectors.

Two layers:

* **Backends** (:mod:`pipeline.vector_backends`): one class per engine (``annoy``,
  ``exact``, ``milvus``) behind one small interface, looked up by name.
* :class:`LogoIndex`: what the service uses. It loads the last built index
  (memory-mapped), searches logos added since that build exactly in a small
  in-memory *delta* so an add is visible at once, merges both, and rebuilds by
  writing a new generation and swapping a pointer file atomically. Rebuilds are
  serialised across processes by a file lock (the app and a CLI may share a
  data directory); an old generation's files are removed one rebuild later, so
  that a reader still opening it never finds it gone. A generation built for
  another embedding model (a crash between a re-embed and its rebuild) is never
  searched: the delta covers every logo until the next rebuild.

Distances are angular distances between unit vectors (:func:`pipeline.vector_backends.angular_from_cosine`).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from pipeline.derived import Derived, Made
from pipeline.errors import BadInputError, ModelMismatchError, StoreError
from pipeline.store import LogoStore
from pipeline.util import atomic_write_json
from pipeline.vector_backends import ExactIndex, IndexConfig, VectorIndex, get_backend

log = logging.getLogger(__name__)

Batches = Iterable[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class IndexInfo:
    """What the current built generation holds."""

    generation: int
    backend: str
    model_id: str
    dim: int
    max_id: int
    count: int
    built_at: float
    build_seconds: float


class IndexGeneration(Derived[IndexInfo]):
    """The built index as a derived result (:mod:`pipeline.derived`): the generation the pointer file names, stale
    when it holds another model's vectors than the store's (or there is none). Made by :meth:`LogoIndex.rebuild`;
    a rebuild for compaction, with the fingerprint unchanged, is asked for with ``force``."""

    name = "index"
    on_disk = True  # the pointer file: another process may rebuild

    def __init__(self, index: LogoIndex) -> None:
        super().__init__()
        self.index = index

    @staticmethod
    def _fingerprint(model_id: str | None, dim: int | None) -> str:
        return f"{model_id}|{dim}"

    def fingerprint(self) -> str:
        return self._fingerprint(self.index.store.model_id, self.index.store.dim)

    def make(self) -> IndexInfo:
        return self.index.rebuild()

    def load(self) -> Made[IndexInfo] | None:
        info = self.index._pointed()
        return None if info is None else Made(self._fingerprint(info.model_id, info.dim), info, info.build_seconds)


class LogoIndex:
    """The store's searchable view: last built index + exact delta of newer logos.

    Thread-safe; notices a rebuild made by another process (it watches the
    pointer file) and switches to it on the next query.
    """

    POINTER = "current.json"

    def __init__(self, store: LogoStore, index_dir: Path, config: IndexConfig | None = None) -> None:
        self.store = store
        self.index_dir = Path(index_dir)
        self.index_dir.mkdir(parents=True, exist_ok=True)
        self.config = config or IndexConfig()
        get_backend(self.config.backend)
        self._lock = threading.RLock()
        self._pointer_stamp: tuple[int, int] | None = None
        self._built: VectorIndex | None = None
        self._info: IndexInfo | None = None
        self._delta = ExactIndex(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
        self._delta_max_id = 0
        self.generation = IndexGeneration(self)

    # -- generations -------------------------------------------------------------------
    def _pointer(self) -> Path:
        return self.index_dir / self.POINTER

    def _stem(self, generation: int, backend: str) -> Path:
        return self.index_dir / f"{backend}-{generation:06d}.idx"

    def _refresh(self) -> None:
        """(Re)load the built generation if the pointer changed since we last looked."""
        pointer = self._pointer()
        stat = pointer.stat() if pointer.exists() else None
        stamp = (stat.st_ino, stat.st_mtime_ns) if stat else None
        if stamp == self._pointer_stamp:
            return
        self._pointer_stamp = stamp
        info = self._pointed() if stamp else None
        if info is not None and (info.model_id, info.dim) != (self.store.model_id, self.store.dim):
            log.warning("index generation %d holds %s vectors (%d-d), the store %s (%s-d): not used until rebuilt",
                        info.generation, info.model_id, info.dim, self.store.model_id, self.store.dim)
            info = None
        if info is None:
            self._built, self._info = None, None
        else:
            backend = get_backend(info.backend)
            self._built = backend.load(self._stem(info.generation, info.backend), info.dim, self.config)
            self._info = info
        self._delta = ExactIndex(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
        self._delta_max_id = self._info.max_id if self._info else 0

    def _refresh_delta(self) -> None:
        """Pull logos added since the last look into the exact delta, or straight into a live index."""
        newest = self.store.max_id()
        if newest <= self._delta_max_id:
            return
        dim = self.store.dim or 0
        if self._built is not None and self._built.live:
            for ids, vectors in self.store.iter_vectors(min_id=self._delta_max_id, max_id=newest):
                self._built.add(ids, vectors)  # upserts: another process adding the same logos is harmless
            self._delta_max_id = newest
            return
        fresh = ExactIndex.from_batches(self.store.iter_vectors(min_id=self._delta_max_id), dim)
        if len(self._delta):
            fresh = ExactIndex(np.concatenate([self._delta.ids, fresh.ids]),
                               np.concatenate([self._delta.vectors, fresh.vectors]))
        self._delta = fresh
        self._delta_max_id = newest

    def info(self) -> IndexInfo | None:
        """The built generation in use; None when there is none for the store's current model."""
        with self._lock:
            self._refresh()
            return self._info

    def needs_rebuild(self) -> bool:
        """True when stored logos have no usable built generation (never built, or built for another model)."""
        return self.store.count() > 0 and self.generation.is_stale()

    def counts(self) -> tuple[int, int]:
        """``(indexed, pending)``: logos in the built index, and logos only in the delta."""
        with self._lock:
            self._refresh()
            self._refresh_delta()
            if self._built is not None and self._built.live:
                return len(self._built), 0
            return (self._info.count if self._info else 0), len(self._delta)

    # -- search ------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, model_id: str) -> list[tuple[int, float]]:
        """The ``k`` nearest stored logos to ``vector`` as ``(id, distance)``, nearest first.

        Raises:
            ModelMismatchError: ``vector`` comes from another model than the store's.
            BadInputError: ``vector`` has the wrong dimension, is not finite, or is all zeros.
        """
        store_model = self.store.model_id
        if store_model is not None and model_id != store_model:
            raise ModelMismatchError(f"the index holds {store_model} vectors; this query is a {model_id} vector")
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.store.dim is not None and vector.shape[0] != self.store.dim:
            raise BadInputError(f"query has {vector.shape[0]} dimensions, the index {self.store.dim}")
        if not np.isfinite(vector).all() or not np.linalg.norm(vector) > 0:
            raise BadInputError("the query vector must be finite and not all zeros")
        with self._lock:
            self._refresh()
            self._refresh_delta()
            built, delta = self._built, self._delta
        pairs: dict[int, float] = {}
        for index in (built, delta):
            if index is not None and len(index):
                ids, distances = index.query(vector, k)
                for logo_id, distance in zip(ids.tolist(), distances.tolist(), strict=True):
                    pairs[logo_id] = min(distance, pairs.get(logo_id, np.inf))
        return sorted(pairs.items(), key=lambda pair: (pair[1], pair[0]))[:k]

    # -- build -------------------------------------------------------------------------
    def rebuild(self) -> IndexInfo:
        """Index every stored vector as a new generation and switch to it atomically (callers go through
        :attr:`generation`: ``refresh(force=True)`` now, ``request(force=True)`` in the background).

        Readers keep using the old generation until the pointer file is replaced;
        a crash mid-build leaves the old generation current. One rebuild runs at
        a time across processes; the files of the generation before the old one
        are removed afterwards (the old one's stay until the next rebuild).
        """
        with FileLock(self.index_dir / "rebuild.lock"):
            model_id, dim = self.store.model_id, self.store.dim
            if model_id is None or dim is None:
                raise StoreError("the store is empty: add logos before building the index")
            backend = get_backend(self.config.backend)
            previous = self._pointed()
            generation = self._newest_generation() + 1
            stem = self._stem(generation, backend.name)
            max_id = self.store.max_id()
            started = time.perf_counter()
            built = backend.build(self.store.iter_vectors(max_id=max_id), dim, stem, self.config)
            info = IndexInfo(generation, backend.name, model_id, dim, max_id, len(built), time.time(),
                             round(time.perf_counter() - started, 3))
            atomic_write_json(self._pointer(), info.__dict__)
            self._remove_generations(keep={generation, previous.generation if previous else generation})
        log.info("built %s index generation %d: %d logos in %.1fs", backend.name, generation, len(built),
                 info.build_seconds)
        with self._lock:
            self._pointer_stamp = None  # force reload of the new generation
            self._refresh()
        return info

    def _pointed(self) -> IndexInfo | None:
        """The generation the pointer file names, whatever its model."""
        try:
            return IndexInfo(**json.loads(self._pointer().read_text()))
        except FileNotFoundError:
            return None

    def _generations(self) -> dict[int, list[Path]]:
        """Every generation with files in the folder, and its files."""
        found: dict[int, list[Path]] = {}
        for path in self.index_dir.glob("*-*.idx*"):
            number = path.name.split(".idx")[0].rsplit("-", 1)[-1]
            if number.isdigit():
                found.setdefault(int(number), []).append(path)
        return found

    def _newest_generation(self) -> int:
        """The highest generation number in use or on disk (a crashed build's files included), so none is reused."""
        pointed = self._pointed()
        return max([*self._generations(), pointed.generation if pointed else 0, 0])

    def _remove_generations(self, keep: set[int]) -> None:
        backend = get_backend(self.config.backend)
        for generation, files in self._generations().items():
            if generation not in keep:
                backend.drop(self._stem(generation, backend.name), self.config)
                for path in files:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)  # open mmaps stay valid until unmapped

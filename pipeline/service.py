"""The one object the CLI, the Gradio app, the Dash map and the HTTP API call.

It ties the parts together (photo -> boxes -> crops -> vectors -> neighbours ->
label) and knows nothing of any user interface.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.calibration import Calibrator, calibrate, traffic_answers
from pipeline.config import Settings
from pipeline.analysis import PhotoAnalyser, PhotoAnalysis, make_detector, make_embedder
from pipeline.detectors import Detector, GivenBoxesDetector
from pipeline.embedders import Embedder, base_name
from pipeline.errors import (BadInputError, ConfigError, DetectorError, EmbedderError, LogoNotFoundError,
                             NotFoundError, NotReadyError, StoreError)
from pipeline.exports import ExportOptions, ExportReport, export_archive
from pipeline.fetch import FetchConfig, fetch_image
from pipeline.health import HealthReport, label_health, too_few_to_judge, unlabelled_clusters
from pipeline.images import ImageSource, crop, image_sha256, load_image
from pipeline.index import IndexConfig, IndexInfo, LogoIndex
from pipeline.knn import VoteConfig, predict_label
from pipeline.progress import BuildStatus, BuildTracker
from pipeline.projection import LogoMap, MapPoints, MapStatus
from pipeline.search_links import SearchLinks
from pipeline.annotation import ReviewGroup, ReviewProgress, ReviewVerdict, apply_review, review_queue
from pipeline.annotation import progress as review_progress
from pipeline.labels import clean_label
from pipeline.store import LabelChange, LogoStore, NewLogo, PhotoRecord
from pipeline.types import (Box, Detection, LabelSource, LogoMatch, LogoRecord, Neighbour, PhotoSearchResult,
                            Prediction, StoreStats)
from pipeline.util import atomic_write_bytes, chunked

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.evaluation import StoreEvaluation

log = logging.getLogger(__name__)

MAX_LOGO_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot name a stored logo
HEALTH_SAMPLE = 20_000  # logos whose neighbours cluster health searches (all of them in a smaller store)
EVALUATION_SAMPLE = 5_000  # logos the background store evaluation searches (each among all the others)
HEALTH_SETTLE_S = 3.0  # quiet seconds after the last add before cluster health is recomputed


@dataclass(frozen=True)
class NeighbourTable:
    """Each sampled logo's nearest neighbours, for the store content ``key`` it was computed on."""

    key: tuple[str, int]
    table: dict[int, list[int]]
    logos: int  # logos in the store when computed (the table covers all of them, or a sample)


@dataclass(frozen=True)
class SearchOnMap:
    """A shared search placed on the map: its logos as points and the stored logos near them."""

    stars: np.ndarray
    neighbour_ids: np.ndarray


@dataclass(frozen=True)
class ReembedReport:
    """What :meth:`LogoService.reembed` did (``to_json`` is the CLI's output shape)."""

    old_model: str | None
    new_model: str
    logos: int
    from_source: int
    from_thumbnail: int
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {"old_model": self.old_model, "new_model": self.new_model, "logos": self.logos,
                "from_source": self.from_source, "from_thumbnail": self.from_thumbnail,
                "seconds": round(self.seconds, 2)}


def proposal(prediction: Prediction, min_confidence: float) -> str | None:
    """The label to propose for review: the best guess (the vote's winner) when it is at least
    ``min_confidence`` likely, even where the naming threshold or the distance limit left it unknown; None
    without labelled neighbours."""
    return prediction.guess if prediction.guess_probability >= min_confidence else None


def calibration_summary(calibrator: Calibrator) -> dict[str, object]:
    """What a calibration says, in the CLI's and the API's JSON shape."""
    return {"model": calibrator.model_id, "answers": calibrator.n_samples,
            "ece": round(float(calibrator.stats.get("ece", float("nan"))), 4),
            "max_distance": round(calibrator.max_distance, 4),
            "default_threshold": round(calibrator.min_probability, 4),
            "label_thresholds": len(calibrator.thresholds)}


def open_service(settings: Settings) -> LogoService:
    """A service ready to serve, with its models loaded, or one :class:`ConfigError` naming the setting at fault.

    The embedder loads lazily in :class:`LogoService`; a server loads it here
    instead, so that a wrong ``LOGOS_EMBEDDER`` stops the start with one clear
    line rather than failing the first visitor's search.
    """
    try:
        service = LogoService(settings)
    except DetectorError as exc:
        raise ConfigError(f"LOGOS_DETECTOR={settings.detector} (LOGOS_DETECTOR_PATH={settings.detector_path}): "
                          f"{exc}") from None
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"LOGOS_DATA_DIR={settings.data_dir}: cannot keep the store there ({exc})") from None
    try:
        service.embedder  # noqa: B018 - loads the model now
    except EmbedderError as exc:
        raise ConfigError(f"LOGOS_EMBEDDER={settings.embedder}: {exc}") from None
    return service


class LogoService:
    """Search, add and label logos in one data directory.

    Args:
        settings: Configuration (data directory, models, vote parameters...).
        embedder: An already created embedder to share (e.g. between a store and
            a temporary evaluation store); created lazily from ``settings`` if None.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> service = LogoService(Settings(data_dir=tempfile.mkdtemp(), detector="whole-image"))
        >>> ids = service.add_logos(Image.new("RGB", (64, 64), "red"), labels=["red square"])
        >>> service.search_photo(Image.new("RGB", (64, 64), "red")).logos[0].prediction.label
        'red square'
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = LogoStore(settings.data_dir)
        self.index = LogoIndex(self.store, settings.data_dir / "index",
                               IndexConfig(settings.index_backend, settings.n_trees, settings.search_k,
                                           settings.milvus_uri))
        self.detector: Detector = make_detector(settings)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self.map = LogoMap(self.store, settings.data_dir / "map")
        self.search_links = SearchLinks()
        self.calibration_path = settings.data_dir / "calibration.json"
        self._calibrator: tuple[tuple[float, str], Calibrator | None] | None = None
        self._calibrating = threading.Lock()
        self._calibration_wanted = threading.Event()
        self._neighbour_table: NeighbourTable | None = None
        self._health_report: tuple[tuple, HealthReport] | None = None
        self._evaluation: tuple[tuple, StoreEvaluation | str] | None = None
        self._health_wanted = threading.Event()
        self._health_running = threading.Lock()
        self._compacting = threading.Lock()
        self.build = BuildTracker()  # the store's first build, when the app runs one (pipeline.demo.start_demo)

    @property
    def embedder(self) -> Embedder:
        """The embedding model, loaded on first use (a second or two)."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = make_embedder(self.settings)
        return self._embedder

    @property
    def analyser(self) -> PhotoAnalyser:
        """Photo -> boxes -> crops -> vectors with this service's models (:mod:`pipeline.analysis`)."""
        return PhotoAnalyser(self.settings, self.detector, self.embedder)

    # -- helpers -----------------------------------------------------------------------
    def load(self, source: ImageSource) -> Image.Image:
        """Decode an upload with this deployment's size limits."""
        return load_image(source, max_pixels=self.settings.max_image_pixels,
                          max_bytes=self.settings.max_upload_bytes)

    def logo_crop(self, photo: Image.Image, box: Box) -> Image.Image:
        """The crop of ``box`` that gets embedded: the box plus ``settings.crop_padding`` of context."""
        return crop(photo, box, self.settings.crop_padding)

    def vote_config(self) -> VoteConfig:
        return VoteConfig(self.settings.max_distance, self.settings.min_confidence,
                          self.settings.machine_label_weight, self.store.thresholds())

    def _neighbours(self, pairs: Sequence[tuple[int, float]]) -> list[Neighbour]:
        labels = self.store.labels([logo_id for logo_id, _ in pairs])
        return [Neighbour(logo_id, *labels.get(logo_id, (None, None)), distance)
                for logo_id, distance in pairs if logo_id in labels]

    def _k(self, k: int | None) -> int:
        k = self.settings.k if k is None else int(k)
        if not 1 <= k <= 1000:
            raise BadInputError(f"k must be between 1 and 1000, got {k}")
        return k

    def namer(self) -> Callable[[Sequence[Neighbour]], Prediction]:
        """How the store names a query now, from its neighbours (the first ``settings.k`` vote).

        With a calibration of the store (:meth:`calibrate`), the confidence is
        the probability that the label is right and a logo unlike any labelled
        one is unknown; without one, the plain vote share of :mod:`pipeline.knn`.
        Per-label thresholds set by people (:meth:`set_threshold`) win over
        suggested ones in both cases. The calibration and thresholds are read
        once here, so name every logo of a photo with one namer.
        """
        voters = self.settings.k
        calibrator = self.calibrator()
        if calibrator is None:
            config = self.vote_config()
            return lambda neighbours: predict_label(list(neighbours)[:voters], config)
        calibrated = replace(calibrator, thresholds={**calibrator.thresholds, **self.store.thresholds()})
        return lambda neighbours: calibrated.predict(list(neighbours)[:voters])

    def predict(self, neighbours: Sequence[Neighbour]) -> Prediction:
        """The label of one query from its neighbours (see :meth:`namer`)."""
        return self.namer()(neighbours)

    # -- calibration -------------------------------------------------------------------
    def calibrator(self) -> Calibrator | None:
        """The store's calibration for the current embedding model, re-read when its file changes."""
        model_id = self.store.model_id
        try:
            stamp = (self.calibration_path.stat().st_mtime, model_id or "")
        except FileNotFoundError:
            return None
        cached = self._calibrator
        if cached is None or cached[0] != stamp:
            try:
                loaded = Calibrator.load(self.calibration_path, model_id) if model_id else None
            except StoreError as exc:
                log.warning("%s", exc)
                loaded = None
            cached = self._calibrator = (stamp, loaded)
        return cached[1]

    def labels_version(self) -> str:
        """Changes whenever a label or a labelled logo is added, changed or removed."""
        return self.store.labels_version()

    def _fit_settings(self) -> dict[str, float]:
        """The settings a calibration is fitted to, kept in its stats: when one changes, it is refitted."""
        return {"target_precision": self.settings.target_precision, "open_set_share": self.settings.open_set_share,
                "distance_quantile": self.settings.distance_quantile}

    def calibration_is_stale(self) -> bool:
        """Whether the labels or the settings it was fitted to (the vote's too) changed since the last
        calibration (or there is none)."""
        calibrator = self.calibrator()
        return (calibrator is None or calibrator.labels_version != self.labels_version()
                or (calibrator.k, calibrator.machine_weight) != (self.settings.k, self.settings.machine_label_weight)
                or any(calibrator.stats.get(name) != value for name, value in self._fit_settings().items()))

    def calibrate(self, traffic: np.ndarray | None = None) -> Calibrator:
        """Fit the confidence calibration on the store's human labels (leave-one-out) and save it.

        The share of searched logos of brands the store does not hold is estimated from ``traffic``
        (features of answers, :func:`pipeline.calibration.traffic_answers`; default: the store's own logos
        that no person labelled, such as imported photos'), once there are enough of them; until then it is
        ``settings.open_set_share``.

        Raises:
            StoreError: Too few human labels to calibrate.
        """
        with self._calibrating:
            calibrator = self._calibrate(traffic)
        if self._calibration_wanted.is_set():  # asked for while this one ran, and its worker gave way
            self.request_calibration()
        return calibrator

    def _calibrate(self, traffic: np.ndarray | None) -> Calibrator:
        """:meth:`calibrate` with the calibration lock held."""
        version = self.labels_version()
        model_id = self.store.model_id
        frame = self.store.label_frame().set_index("id")
        ids, vectors = [], []
        for batch_ids, batch in self.store.iter_vectors():
            ids.append(batch_ids)
            vectors.append(batch)
        if model_id is None or not ids:
            raise StoreError("the store is empty: add labelled logos before calibrating")
        all_ids = np.concatenate(ids)
        rows = frame.reindex(all_ids)
        labels = [label if isinstance(label, str) else None for label in rows.label]
        sources = [LabelSource(source) if isinstance(source, str) else None for source in rows.source]
        hashes = self.store.photo_frame().set_index("id").image_hash.reindex(all_ids)
        photos = [photo if isinstance(photo, str) else None for photo in hashes]
        matrix = np.concatenate(vectors)
        vote = {"k": self.settings.k, "machine_weight": self.settings.machine_label_weight, "photos": photos}
        if traffic is None:  # the logos no person labelled: the store's own traffic
            traffic = traffic_answers(all_ids, matrix, labels, sources, **vote)
        calibrator = calibrate(all_ids, matrix, labels, sources, model_id=model_id, traffic=traffic, **vote,
                               **self._fit_settings())
        calibrator = replace(calibrator, labels_version=version)
        calibrator.save(self.calibration_path)
        log.info("calibrated on %d answers: ECE %.3f, distance limit %.3f, threshold %.2f",
                 calibrator.n_samples, calibrator.stats.get("ece", float("nan")), calibrator.max_distance,
                 calibrator.min_probability)
        return calibrator

    def calibration_state(self) -> str:
        """``fitting`` while a calibration is asked for or running, else ``ready`` (one is in use) or ``none``."""
        if self._calibration_wanted.is_set() or self._calibrating.locked():
            return "fitting"
        return "ready" if self.calibrator() is not None else "none"

    def request_calibration(self) -> None:
        """Recalibrate in a background thread (once more if labels change meanwhile); never blocks a caller."""
        self._calibration_wanted.set()
        threading.Thread(target=self._calibrate_when_wanted, name="calibrate", daemon=True).start()

    def _calibrate_when_wanted(self) -> None:
        while self._calibration_wanted.is_set():
            if not self._calibrating.acquire(blocking=False):
                return  # the running fit will see the flag and go again
            try:  # held from the flag's clearing to the fit's end: calibration_state reads "fitting" throughout
                self._calibration_wanted.clear()
                if self.calibration_is_stale():
                    self._calibrate(None)
            except StoreError as exc:
                log.info("no calibration yet: %s", exc)
            finally:
                self._calibrating.release()

    def set_threshold(self, label: str, threshold: float | None) -> None:
        """Set (or with None remove) the confidence ``label`` needs to be given as an answer."""
        label = clean_label(label) or ""
        if label not in self.store.label_counts():
            raise NotFoundError(f"no logo carries the label {label!r}")
        self.store.set_threshold(label, threshold)

    def thresholds(self) -> dict[str, dict[str, float]]:
        """Per-label thresholds: ``{"set": set by people, "suggested": from the calibration}``."""
        calibrator = self.calibrator()
        return {"set": self.store.thresholds(), "suggested": dict(calibrator.thresholds) if calibrator else {},
                "default": calibrator.min_probability if calibrator else self.settings.min_confidence}

    # -- search ------------------------------------------------------------------------
    def detect(self, image: Image.Image, boxes: Sequence[Box | Sequence[float]] | None = None) -> list[Detection]:
        """Logo boxes on ``image``: the given ``boxes`` if any, else the configured detector's.

        Raises:
            BadInputError: more than ``settings.max_boxes`` boxes (each one is embedded: a search's cost
                grows with them, and an anonymous caller must not hold the CPU for minutes).
        """
        if boxes and len(boxes) > self.settings.max_boxes:
            raise BadInputError(f"at most {self.settings.max_boxes} boxes per photo, got {len(boxes)}")
        detector = GivenBoxesDetector(boxes) if boxes else self.detector
        return detector.detect(image)

    def require_searchable(self) -> None:
        """Refuse a search while the store's build has nothing to search yet.

        A store being built is searched as soon as it has an index for the current model (the build indexes
        the bundled logos first); before that an answer would be "unknown" for everything.

        Raises:
            NotReadyError: no index yet, with the build's progress.
        """
        status = self.build.status()
        if status.building and (self.index.info() is None or self.store.model_id != self.embedder.model_id):
            raise NotReadyError(f"{status.sentence()} Searches are answered as soon as there is an index; "
                                "try again in a few seconds.")

    def build_status(self) -> BuildStatus:
        """How far the store's first build has come (``ready`` when none runs)."""
        return self.build.status()

    def search_embedding(self, vector: np.ndarray, k: int | None = None,
                         model_id: str | None = None) -> list[Neighbour]:
        """Neighbours of a vector made by ``model_id`` (default: this service's embedder)."""
        self.require_searchable()
        model_id = self.resolve_model_id(model_id) if model_id else self.embedder.model_id
        return self._neighbours(self.index.search(vector, self._k(k), model_id))

    def search_crops(self, crops: Sequence[Image.Image], k: int | None = None) -> list[list[Neighbour]]:
        """Neighbours of each crop, embedded in batches."""
        return self._embed_and_search(crops, k)[1]

    def _embed_and_search(self, crops: Sequence[Image.Image],
                          k: int | None) -> tuple[np.ndarray, list[list[Neighbour]]]:
        vectors = self.embedder.embed(list(crops)) if crops else np.zeros((0, 0), np.float32)
        return vectors, [self.search_embedding(vector, k) for vector in vectors]

    def _name(self, neighbour_lists: list[list[Neighbour]], k: int | None) -> list[tuple[Prediction, list[Neighbour]]]:
        """Each query's prediction (from ``settings.k`` voters, whatever ``k``) and its first ``k`` neighbours."""
        shown = self._k(k)
        name = self.namer()
        return [(name(neighbours), neighbours[:shown]) for neighbours in neighbour_lists]

    def search_photo(self, image: ImageSource, boxes: Sequence[Box | Sequence[float]] | None = None,
                     k: int | None = None) -> PhotoSearchResult:
        """Find the logos of a photo and name each from its nearest stored logos.

        Args:
            image: The photo (path, bytes, file object or PIL image).
            boxes: Boxes drawn by a person; None runs the configured detector.
            k: Neighbours per logo (default ``settings.k``).

        Raises:
            NotReadyError: the store is being built and has no index yet.
        """
        self.require_searchable()
        photo = self.load(image)
        detections = self.detect(photo, boxes)
        crops = [self.logo_crop(photo, d.box) for d in detections]
        vectors, neighbour_lists = self._embed_and_search(crops, max(self._k(k), self.settings.k))
        logos = [LogoMatch(d.box, prediction, neighbours, d.score)
                 for d, (prediction, neighbours) in zip(detections, self._name(neighbour_lists, k), strict=True)]
        return PhotoSearchResult(photo.width, photo.height, logos, np.asarray(vectors, dtype=np.float32))

    def share_search(self, result: PhotoSearchResult) -> str:
        """A short-lived id under which the map can show this search (the searcher's link, nobody else's)."""
        return self.search_links.put(result)

    def search_on_map(self, search_id: str | None) -> SearchOnMap | None:
        """A shared search placed on the fitted map, or None if the id is unknown or expired.

        Raises:
            StoreError: the map is not fitted yet.
        """
        result = self.search_links.get(search_id)
        if result is None or result.vectors is None:
            return None
        stars = self.map.transform(result.vectors) if len(result.vectors) else np.zeros((0, 2), np.float32)
        ids = sorted({n.id for logo in result.logos for n in logo.neighbours})
        return SearchOnMap(stars, np.array(ids, dtype=np.int64))

    def search_logo(self, logo_id: int, k: int | None = None) -> list[Neighbour]:
        """Neighbours of a stored logo (itself excluded)."""
        k = self._k(k)
        self.require_searchable()
        if not 0 < int(logo_id) <= MAX_LOGO_ID:
            raise LogoNotFoundError(f"no logo with id {logo_id}")
        try:
            vector = self.store.vectors([logo_id])[0]
        except LogoNotFoundError:
            raise LogoNotFoundError(f"no logo with id {logo_id}") from None
        pairs = self.index.search(vector, k + 1, self.store.model_id or "")
        return self._neighbours([(i, d) for i, d in pairs if i != int(logo_id)][:k])

    # -- writes ------------------------------------------------------------------------
    def add_crops(self, logos: Sequence[NewLogo], *, compact: bool = True, who: str = "local",
                  photos: Sequence[PhotoRecord] = ()) -> list[int]:
        """Embed the crops of ``logos`` and store them; searchable at once (no rebuild needed).

        With ``compact``, a background rebuild folds the new logos into the index once
        enough have piled up; a bulk import that rebuilds at its end passes False. ``who`` is written into the
        label history of the labelled ones; ``photos`` are recorded as done in the same transaction.
        """
        if not logos:
            self.store.add_photos(photos)
            return []
        if any(logo.crop is None for logo in logos):
            raise BadInputError("every logo to add needs its crop")
        vectors = self.embedder.embed([logo.crop for logo in logos])
        ids = self.store.add(logos, vectors, self.embedder.model_id, who=who, photos=photos)
        if compact:
            self._compact_when_due()
        self._logos_changed()
        return ids

    def _logos_changed(self) -> None:
        """After logos were added: cluster health is recomputed in the background, if anyone has asked for it."""
        if self._neighbour_table is not None or self._health_running.locked():
            self.request_health()

    def _compact_when_due(self) -> None:
        """Rebuild the index in the background once more than ``compact_after`` logos wait in the exact delta.

        Until then new logos are searched exactly, which costs a little more with
        each one; one rebuild at a time (the index's file lock serialises processes).
        """
        if self.index.counts()[1] <= self.settings.compact_after or not self._compacting.acquire(blocking=False):
            return

        def rebuild() -> None:
            try:
                self.build_index()
            except Exception:  # a failed compaction leaves the delta in use; the next add tries again
                log.exception("background index rebuild failed")
            finally:
                self._compacting.release()

        threading.Thread(target=rebuild, name="index-compaction", daemon=True).start()

    def add_logos(self, image: ImageSource, boxes: Sequence[Box | Sequence[float]] | None = None,
                  labels: Sequence[str | None] | None = None, source: LabelSource | str = LabelSource.HUMAN,
                  image_path: str | None = None, who: str = "local") -> list[int]:
        """Add the logos of one photo (the given boxes, else the detector's), optionally labelled by ``who``.

        Raises:
            ValueError: ``labels`` does not have one entry per box.
        """
        photo = self.load(image)
        detections = self.detect(photo, boxes)
        labels = list(labels) if labels is not None else [None] * len(detections)
        if len(labels) != len(detections):
            raise BadInputError(f"got {len(labels)} labels for {len(detections)} logos")
        source = LabelSource.parse(source)
        image_hash = image_sha256(photo)
        if any(labels):
            self.request_calibration()  # runs after this add: it waits for nothing but a free moment
        return self.add_crops([
            NewLogo(crop=self.logo_crop(photo, d.box), box=d.box, image_hash=image_hash, image_path=image_path,
                    label=label, label_source=source if label else None, score=d.score)
            for d, label in zip(detections, labels, strict=True)
        ], who=who)

    def annotate_photo(self, photo: Image.Image, image_hash: str, path: str | None, *,
                       who: str = "local") -> list[int]:
        """Auto-annotate one photo: store each detected logo with its kNN label as a ``machine`` label.

        One embedding pass serves both the search and the store. The confidence kept with a proposal is the
        calibrated probability (the vote share before the store has a calibration). A proposal is stored
        when it is at least ``LOGOS_PROPOSE_MIN`` likely, below the threshold at which a search names the
        logo too: people review proposals, least confident first. Other logos are stored unlabelled. The
        photo is recorded in the same transaction as its logos, even when it has none, so that an interrupted
        bulk run resumes without duplicates or gaps.
        """
        return self.store_analysis(self.analyser.analyse(photo, image_hash), path, who=who)

    def store_analysis(self, analysis: PhotoAnalysis, path: str | None, *, who: str = "local") -> list[int]:
        """Search, name and store the logos of an analysed photo (:meth:`annotate_photo`'s second half; a Ray
        import analyses photos on its workers and stores them here)."""
        neighbour_lists = [self.search_embedding(vector, self.settings.k) for vector in analysis.vectors]
        logos = []
        for d, crop_image, (prediction, _) in zip(analysis.detections, analysis.crops,
                                                  self._name(neighbour_lists, None), strict=True):
            label = proposal(prediction, self.settings.propose_min)
            logos.append(NewLogo(crop=crop_image, box=d.box, image_hash=analysis.image_hash, image_path=path,
                                 label=label, label_source=LabelSource.MACHINE if label else None,
                                 score=d.score, confidence=prediction.guess_probability if label else None))
        record = PhotoRecord(analysis.image_hash, path, analysis.width, analysis.height, len(logos))
        ids = self.store.add(logos, analysis.vectors, self.embedder.model_id, who=who, photos=[record])
        if ids:
            self._compact_when_due()
            self._logos_changed()
        return ids

    def annotate_upload(self, path: Path, *, who: str = "local") -> list[int] | None:
        """Auto-annotate an uploaded photo, kept under ``DATA_DIR/photos/`` so that exports can include it.

        Returns:
            The new logo ids, or None when the photo (same pixels) was done before.

        Raises:
            ImageError: The file is not a usable image.
        """
        photo = self.load(path)
        digest = image_sha256(photo)
        if self.store.has_photo(image_hash=digest) or self.store.has_image(digest):
            return None
        kept = self.settings.data_dir / "photos" / f"{digest[:20]}{Path(path).suffix.lower() or '.jpg'}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if not kept.exists():
            atomic_write_bytes(kept, Path(path).read_bytes())
        return self.annotate_photo(photo, digest, str(kept), who=who)

    def export(self, fmt: str, options: ExportOptions | None = None) -> tuple[Path, ExportReport]:
        """The store exported as a ZIP file in a new temporary folder (the caller removes ``path.parent``)."""
        return export_archive(self.store, fmt, options)

    def evaluate_store(self, k: int = 10, max_queries: int | None = None) -> StoreEvaluation:
        """Leave-one-out accuracy of the store on its human labels (:func:`pipeline.evaluation.evaluate_store`)."""
        from pipeline.evaluation import evaluate_store  # evaluation imports this module

        return evaluate_store(self, k=k, max_queries=max_queries)

    def store_evaluation(self, *, wait: bool = True) -> StoreEvaluation | None:
        """The store's leave-one-out accuracy at ``settings.k`` (at most :data:`EVALUATION_SAMPLE` queries),
        made once per state of the logos and labels and shared by every reader.

        With ``wait=False`` (pages, anonymous requests) nothing is computed: the answer is the report for the
        current logos and labels, or None while the background worker (:meth:`request_health`) makes it.

        Raises:
            BadInputError: the store has nothing to evaluate (no label with two human-labelled logos).
        """
        key = (self.store.content_version(), self.store.labels_version(), self.settings.k)
        cached = self._evaluation
        if cached is None or cached[0] != key:
            if not wait:
                self.request_health()
                return None
            try:
                made: StoreEvaluation | str = self.evaluate_store(self.settings.k, max_queries=EVALUATION_SAMPLE)
            except BadInputError as exc:
                made = str(exc)
            cached = self._evaluation = (key, made)
        if isinstance(cached[1], str):
            raise BadInputError(cached[1])
        return cached[1]

    def propose(self, logo_id: int) -> Prediction:
        """The label a stored logo's neighbours give it now (itself left out), calibrated when possible."""
        return self.namer()(self.search_logo(logo_id, self.settings.k))

    def review_queue(self, *, ids: Sequence[int] | None = None, label: str | None = None,
                     limit: int = 40) -> list[ReviewGroup]:
        """The next screen of proposals to judge (see :func:`pipeline.annotation.review_queue`)."""
        return review_queue(self.store, self.propose, ids=ids, label=label, limit=limit)

    def review(self, verdict: ReviewVerdict, proposals: dict[int, str], *, who: str = "local",
               session: str | None = None) -> list[LabelChange]:
        """Record a reviewer's verdicts (see :func:`pipeline.annotation.apply_review`) and recalibrate later.

        Raises:
            LogoNotFoundError: A judged logo the store does not hold (nothing is changed).
        """
        judged = [*verdict.accept, *verdict.reject, *verdict.relabel]
        known = self.store.labels(judged)
        missing = [int(i) for i in judged if int(i) not in known]
        if missing:
            raise LogoNotFoundError(f"unknown logo id(s): {', '.join(map(str, missing[:10]))}")
        changes = apply_review(self.store, verdict, proposals, who=who, session=session)
        self.request_calibration()
        return changes

    def proposed_labels(self) -> list[str]:
        """Labels that some logo carries as a machine proposal, sorted."""
        return sorted(label for label, sources in self.store.label_counts_by_source().items()
                      if sources.get(LabelSource.MACHINE.value))

    def review_progress(self) -> ReviewProgress:
        """Machine labels waiting for review, and what people have done (for the queue's header)."""
        return review_progress(self.store)

    def label_history(self, logo_id: int | None = None, limit: int = 100,
                      before: int | None = None) -> list[dict[str, object]]:
        """Label events, newest first: who changed which logo's label, from what to what, and when."""
        if logo_id is not None and not self.store.labels([logo_id]):
            raise LogoNotFoundError(f"no logo with id {logo_id}")
        return self.store.label_history(logo_id, limit=limit, before=before)

    def add_from_url(self, image_url: str, logos: Sequence[tuple[int, Sequence[float]]]) -> int:
        """robotoff-ann's add: the logos of the image at ``image_url``, each with the client's own id.

        Args:
            image_url: Where the photo is; fetched only from ``settings.image_url_hosts`` (:mod:`pipeline.fetch`).
            logos: ``(client id, [y_min, x_min, y_max, x_max])`` with coordinates in 0..1 of the photo.

        Returns:
            How many logos were added: ids the store already holds are skipped (and when all are, the image is
            not even fetched), as robotoff-ann does.
        """
        wanted: dict[int, Sequence[float]] = {}
        for client_id, box in logos:
            if not 0 < int(client_id) <= MAX_LOGO_ID:
                raise BadInputError(f"a logo id is a positive 64-bit integer, got {client_id}")
            if len(box) != 4 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in box):
                raise BadInputError(f"bounding_box is [y_min, x_min, y_max, x_max] in 0..1, got {list(box)[:8]}")
            wanted.setdefault(int(client_id), box)
        known = self.store.by_external_id(list(wanted))
        new = {client_id: box for client_id, box in wanted.items() if client_id not in known}
        if not new:
            return 0
        settings = self.settings
        hosts = frozenset(h.strip().lower() for h in settings.image_url_hosts.split(",") if h.strip())
        photo = self.load(fetch_image(image_url, FetchConfig(hosts, settings.max_upload_bytes,
                                                             settings.image_url_timeout,
                                                             settings.image_url_allow_private)))
        image_hash = image_sha256(photo)
        additions = []
        for client_id, (y0, x0, y1, x1) in new.items():
            box = Box.from_sequence([x0 * photo.width, y0 * photo.height, x1 * photo.width, y1 * photo.height])
            additions.append(NewLogo(crop=self.logo_crop(photo, box), box=box, image_hash=image_hash,
                                     external_id=client_id))
        return len(self.add_crops(additions))

    def resolve_client_id(self, client_id: int) -> int:
        """The store's id of a logo a client names: the logo with that external id if any, else that store id."""
        if not 0 < int(client_id) <= MAX_LOGO_ID:
            return int(client_id)
        return self.store.by_external_id([client_id]).get(int(client_id), int(client_id))

    def client_ids(self, ids: Sequence[int]) -> dict[int, int]:
        """``{store id: the id clients know}``: the external id where a logo has one, else the store id."""
        external = self.store.external_ids(ids)
        return {int(i): external.get(int(i), int(i)) for i in ids}

    def label(self, ids: Sequence[int], label: str | None, source: LabelSource | str = LabelSource.HUMAN,
              who: str = "local") -> LabelChange:
        """Set or clear the label of stored logos; machine labels never replace human ones."""
        return self.store.set_label(ids, label, source, who=who)

    def bulk_label(self, ids: Sequence[int], label: str | None, *, who: str = "local",
                   session: str | None = None) -> LabelChange:
        """Give many logos one human label (or clear theirs), logged so ``session`` can :meth:`undo_label` it.

        Raises:
            BadInputError: no ids.
            LogoNotFoundError: an id the store does not hold (nothing is changed).
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            raise BadInputError("select at least one logo")
        known = self.store.labels(ids)
        missing = [i for i in ids if i not in known]
        if missing:
            raise LogoNotFoundError(f"unknown logo id(s): {', '.join(map(str, missing[:10]))}")
        change = self.store.set_label(ids, label, LabelSource.HUMAN, who=who, session=session)
        self.request_calibration()
        return change

    def undo_label(self, session: str, who: str = "local") -> LabelChange | None:
        """Undo the last label change made in ``session`` (None if it has nothing left to undo)."""
        change = self.store.undo_last(session, who=who)
        if change is not None:
            self.request_calibration()
        return change

    def neighbour_table(self, k: int = 10) -> NeighbourTable:
        """Nearest neighbours (itself excluded) of every stored logo, or of a seeded sample of
        :data:`HEALTH_SAMPLE` of them in a bigger store; cached until the logos change.

        Labels are not part of it (they change far more often than the logos and are read when a report is
        made), so the table lasts until logos are added or removed.
        """
        key = (self.store.content_version(), k)
        cached = self._neighbour_table
        if cached is not None and cached.key == key:
            return cached
        ids = np.array(self.store.ids(), dtype=np.int64)
        queries = ids
        if len(ids) > HEALTH_SAMPLE:
            seed = zlib.crc32(key[0].encode())
            queries = np.sort(np.random.default_rng(seed).choice(ids, HEALTH_SAMPLE, replace=False))
        table: dict[int, list[int]] = {}
        model_id = self.store.model_id or ""
        for chunk in chunked(queries.tolist(), 1000):
            for logo_id, vector in zip(chunk, self.store.vectors(chunk), strict=True):
                pairs = self.index.search(vector, k + 1, model_id)
                table[logo_id] = [i for i, _ in pairs if i != logo_id][:k]
        made = NeighbourTable(key, table, len(ids))
        self._neighbour_table = made
        return made

    def request_health(self) -> None:
        """Recompute the cluster-health neighbours and the store evaluation in the background once the logos
        stop changing for a few seconds; one run at a time, never on a page load (a visitor reads what the
        last run left). A run with nothing changed computes nothing: safe to ask for at any time."""
        self._health_wanted.set()
        if self._health_running.acquire(blocking=False):
            threading.Thread(target=self._health_worker, name="cluster-health", daemon=True).start()

    def _health_worker(self) -> None:
        try:
            while self._health_wanted.is_set():
                self._health_wanted.clear()
                version = self.store.content_version()
                time.sleep(HEALTH_SETTLE_S)
                if self.store.content_version() != version:  # logos still being added: wait for quiet
                    self._health_wanted.set()  # (readers asking again meanwhile do not delay it)
                    continue
                try:
                    self.cluster_health(self.settings.k)  # the neighbours, then the report every visitor reads
                except Exception:  # a failed run leaves the last table; the next change tries again
                    log.exception("cluster health failed")
                try:
                    self.store_evaluation()
                except BadInputError:
                    pass  # nothing to evaluate yet: kept as the answer for these labels
                except Exception:
                    log.exception("store evaluation failed")
        finally:
            self._health_running.release()
        if self._health_wanted.is_set():  # asked again between the loop's end and the release
            self.request_health()

    def cluster_health(self, k: int = 10, min_cluster_size: int = 5, *, wait: bool = True) -> HealthReport | None:
        """Purity per label, suspect logos, and dense unlabelled clusters on the map (if fitted).

        Args:
            k: Neighbours per logo.
            min_cluster_size: Smallest unlabelled cluster.
            wait: Compute the neighbours and the report now if the logos, labels or map changed since the
                last report; with False, answer None instead and have the background worker
                (:meth:`request_health`) make it, so that a page load never computes it (the dashboard).
        """
        cached = self._neighbour_table
        if not wait and (cached is None or cached.key != (self.store.content_version(), k)):
            return None
        made = self.neighbour_table(k) if wait else cached
        status = self.map.status()
        key = (made.key, self.store.labels_version(), status.state, status.fitted, status.placed, status.seconds,
               min_cluster_size)
        report = self._health_report
        if report is not None and report[0] == key:
            return report[1]  # every visitor reads the same report until logos, labels or the map change
        if not wait:  # labels or the map changed since: the background worker makes the new report
            self.request_health()
            return None
        table = made.table
        seen = set(table) | {n for near in table.values() for n in near}
        labels = self.store.labels(sorted(seen))
        sizes = self.store.label_counts()
        per_label, suspects = label_health(table, labels, label_sizes=sizes)
        clusters = []
        points = self.map.points()
        if points is not None:
            frame = self.store.label_frame()
            unlabelled = np.isin(points.ids, frame.id[frame.label.isna()].to_numpy())
            ids, xy = points.ids[unlabelled], points.xy[unlabelled]
            if len(ids) > HEALTH_SAMPLE:  # HDBSCAN on millions of points would take minutes: a seeded sample
                keep = np.sort(np.random.default_rng(0).choice(len(ids), HEALTH_SAMPLE, replace=False))
                ids, xy = ids[keep], xy[keep]
            clusters = unlabelled_clusters(ids, xy, min_cluster_size)
        made_report = HealthReport(per_label, suspects, clusters, sampled=len(table), logos=made.logos,
                                   too_few=too_few_to_judge(sizes))
        self._health_report = (key, made_report)
        return made_report

    def reembed(self, *, batch: int = 64, progress: bool = True, ray: bool = False,
                workers: int | None = None, advance: Callable[[int], None] | None = None) -> ReembedReport:
        """Re-embed every stored logo with this service's embedder if the store was built with another.

        Each logo is cut again from its source image when that file is still
        there with the same pixels (``image_path`` + ``box``), else taken from
        its stored thumbnail. The new vectors are staged beside the old ones and
        switched in one transaction, then the index is rebuilt; a crash midway
        leaves the store on the old model. Run it before serving (the app does,
        at start): logos added meanwhile would still come with the old model.
        With ``ray``, the crops are cut and embedded on Ray Data workers
        (:func:`pipeline.distributed.reembed_on_ray`) and staged here. ``advance`` is told each batch's size.
        """
        started = time.perf_counter()
        old, new = self.store.model_id, self.embedder.model_id
        if old is None or old == new:
            return ReembedReport(old, new, 0, 0, 0, 0.0)
        ids = self.store.ids()
        log.info("re-embedding %d logos: %s -> %s", len(ids), old, new)
        counts = {"source": 0, "thumbnail": 0}
        if ray:
            from pipeline.distributed import reembed_on_ray

            for chunk_ids, vectors, origins in reembed_on_ray(self, ids, workers=workers, progress=progress):
                self.store.stage_vectors(new, chunk_ids, vectors)
                if advance:
                    advance(len(chunk_ids))
                for origin in origins:
                    counts[origin] += 1
            ids_to_embed: list[int] = []
        else:
            ids_to_embed = ids
        for chunk in tqdm(list(chunked(ids_to_embed, batch)), desc=f"re-embed with {new}", unit="batch",
                          disable=not progress or not ids_to_embed):
            crops, sources = [], {}  # logos of one photo are neighbours in id order: decode it once
            for record in self.store.get(chunk):
                image, origin = self._reembed_crop(record, sources)
                crops.append(image)
                counts[origin] += 1
            self.store.stage_vectors(new, chunk, self.embedder.embed(crops))
            if advance:
                advance(len(chunk))
        self.store.switch_model(new, self.embedder.dim, ids)
        self.build_index()
        report = ReembedReport(old, new, len(ids), counts["source"], counts["thumbnail"],
                               time.perf_counter() - started)
        log.info("re-embedded %d logos (%d from their source image, %d from thumbnails) in %.1f s",
                 report.logos, report.from_source, report.from_thumbnail, report.seconds)
        return report

    def _reembed_crop(self, record: LogoRecord,
                      sources: dict[str, tuple[Image.Image, str] | None]) -> tuple[Image.Image, str]:
        """The logo's crop from its source image if unchanged there, else from its thumbnail."""
        thumbnail = None
        if not (record.image_path and Path(record.image_path).is_file()):
            thumbnail = self.store.thumbnail(record.id)
        try:
            return self.analyser.reembed_crop(record.id, record.image_path, record.image_hash, record.box,
                                              thumbnail, sources)
        except StoreError:
            if thumbnail is not None:
                raise
            return self.analyser.reembed_crop(record.id, None, None, None, self.store.thumbnail(record.id), sources)

    def build_index(self) -> IndexInfo:
        """Rebuild the ANN index from every stored vector and switch to it atomically."""
        return self.index.rebuild()

    # -- what the user interfaces read ---------------------------------------------------
    def count(self) -> int:
        """How many logos are stored."""
        return self.store.count()

    def stored_ids(self, after: int = 0, limit: int | None = None) -> tuple[list[int], int | None]:
        """Stored logos by the id clients know (their external id where they have one), a page at a time.

        Args:
            after: The cursor of the previous page (0: from the start).
            limit: Logos on the page (None: all).

        Returns:
            ``(client ids, cursor of the next page)``; the cursor is None on the last page.
        """
        rows, next_after = self._page(after, limit)
        return [client for _, client in rows], next_after

    def page_of_logos(self, after: int, limit: int) -> tuple[list[int], int | None]:
        """Store ids of the logos after the cursor ``after``, and the next cursor (None on the last page)."""
        rows, next_after = self._page(after, limit)
        return [store_id for store_id, _ in rows], next_after

    def _page(self, after: int, limit: int | None) -> tuple[list[tuple[int, int]], int | None]:
        """``(store id, client id)`` rows after the cursor, at most ``limit``, and the next page's cursor."""
        rows = self.store.client_ids(after, None if limit is None else limit + 1)
        if limit is None or len(rows) <= limit:
            return rows, None
        return rows[:limit], rows[limit - 1][0]

    def thumbnail(self, logo_id: int) -> bytes | None:
        """A stored logo's WebP thumbnail (None for an unknown id)."""
        return self.store.thumbnail(logo_id) if 0 < int(logo_id) <= MAX_LOGO_ID else None

    def labels_in_use(self) -> list[str]:
        """Every label that some logo carries, sorted."""
        return sorted(self.store.label_counts())

    def current_labels(self, ids: Sequence[int]) -> dict[int, str]:
        """The label each of ``ids`` carries now (logos without a label, or unknown ids, are left out)."""
        return {i: label for i, (label, _) in self.store.labels(ids).items() if label}

    def label_of(self, logo_id: int) -> tuple[str | None, LabelSource | None]:
        """A stored logo's label and its source ``(None, None)`` when unlabelled or unknown."""
        return self.store.labels([logo_id]).get(int(logo_id), (None, None))

    def label_frame(self) -> pd.DataFrame:
        """Every logo's id, label and source (columns ``id``, ``label``, ``source``)."""
        return self.store.label_frame()

    def ids_with_label(self, label: str | None) -> np.ndarray:
        """Ids of the logos labelled ``label`` (none for an empty label)."""
        frame = self.store.label_frame()
        return frame.id[frame.label == label].to_numpy() if label else np.zeros(0, np.int64)

    def index_names(self) -> list[str]:
        """The named indexes a client may pick (robotoff-ann's ``index``): one per embedding model in the store."""
        return [self.query_model_id()]

    def check_index(self, name: str | None) -> None:
        """Refuse an index name the store does not have (None means the default one).

        A model's bare registry name stands for its current weights (``name`` for ``name@fingerprint``).
        """
        if name is not None and self.resolve_model_id(name) not in self.index_names():
            raise BadInputError(f"unknown index: {name} (known: {', '.join(self.index_names())})")

    def resolve_model_id(self, name: str) -> str:
        """The store's full model id when ``name`` is its bare registry name, else ``name`` unchanged."""
        current = self.query_model_id()
        return current if name == base_name(current) else name

    def random_logo_id(self) -> int:
        """A stored logo picked at random (robotoff-ann's ``GET /ann``)."""
        logo_id = self.store.random_id(random.random())
        if logo_id is None:
            raise LogoNotFoundError("the store is empty")
        return logo_id

    def query_model_id(self) -> str:
        """The model id a raw embedding is assumed to come from: the store's, else the configured embedder's."""
        return self.store.model_id or self.settings.embedder

    def start_map(self, refit: bool = False) -> None:
        """Fit the map in the background (or read it from its cache); ``refit`` fits again on every logo.

        Not while the store's build runs: a map of part of the store would be fitted again at once (the build
        starts it when it ends).
        """
        if not self.build.status().building:
            self.map.start(refit=refit)

    def map_status(self) -> MapStatus:
        return self.map.status()

    def wait_for_map(self, timeout: float | None = None) -> MapStatus:
        """Block until a running map fit ends (scripts and notebooks; the app never waits)."""
        return self.map.wait(timeout)

    def map_points(self) -> MapPoints | None:
        """Every stored logo's map coordinates (None until the map is fitted)."""
        return self.map.points()

    def stats(self) -> StoreStats:
        indexed, pending = self.index.counts()
        base = self.store.stats()
        return StoreStats(**{**base.__dict__, "indexed": indexed, "pending": pending})

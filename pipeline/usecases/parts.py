"""The parts every use case shares: one store, its index and map, the models, and the signals between them.

Only the use cases (:mod:`pipeline.usecases`) hold a :class:`Parts`; front ends,
the CLI and the other pipeline modules call the use cases, never the store or
the index around them (``tests/unit/test_layout.py`` holds that line).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipeline.analysis import PhotoAnalyser, make_embedder
from pipeline.config import Settings
from pipeline.detectors import Detector
from pipeline.embedders import Embedder
from pipeline.errors import StoreError
from pipeline.images import ImageSource, crop, load_image
from pipeline.index import LogoIndex
from pipeline.progress import BuildTracker
from pipeline.projection import LogoMap
from pipeline.reading import TextReader
from pipeline.search_links import SearchLinks
from pipeline.store import LogoStore
from pipeline.types import Box, LabelSource
from pipeline.vector_backends import IndexConfig

MAX_LOGO_ID = 2**63 - 1  # SQLite's largest integer: a larger id cannot name a stored logo


@dataclass
class Signals:
    """What one use case tells the others without knowing them: logos were added, labels changed.

    The service wires the listeners once (:class:`pipeline.service.LogoService`): compaction when the index's
    exact delta grew, cluster health when logos were added, a recalibration when labels changed.
    """

    index_grew: list[Callable[[], None]] = field(default_factory=list)
    logos_added: list[Callable[[], None]] = field(default_factory=list)
    labels_changed: list[Callable[[], None]] = field(default_factory=list)

    @staticmethod
    def _tell(listeners: list[Callable[[], None]]) -> None:
        for listener in listeners:
            listener()

    def grew(self) -> None:
        self._tell(self.index_grew)

    def added(self) -> None:
        self._tell(self.logos_added)

    def relabelled(self) -> None:
        self._tell(self.labels_changed)


@dataclass(frozen=True)
class StoreVectors:
    """Every stored logo's vector with its label, label source and photo, in id order (what the calibration and
    the store evaluation read in one pass)."""

    ids: np.ndarray
    vectors: np.ndarray
    labels: list[str | None]
    sources: list[LabelSource | None]
    photos: list[str | None]  # the image hash of the photo each logo was cut from
    model_id: str | None


class Parts:
    """One data directory's store, index and map, the models, the first build's progress and the signals.

    Args:
        settings: The deployment's settings.
        detector: The logo detector.
        embedder: An already created embedder to share; created on first use from ``settings`` if None.
    """

    def __init__(self, settings: Settings, detector: Detector, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.store = LogoStore(settings.data_dir)
        self.index = LogoIndex(self.store, settings.data_dir / "index",
                               IndexConfig(settings.index_backend, settings.n_trees, settings.search_k,
                                           settings.milvus_uri))
        self.map = LogoMap(self.store, settings.data_dir / "map")
        self.detector = detector
        self.search_links = SearchLinks()
        self.build = BuildTracker()  # the store's first build, when the app runs one (pipeline.demo.start_demo)
        self.signals = Signals()
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self.reader = TextReader()  # loads its models on first use
        # the stored logos' text is read in the background by a reader of its own on one core: a search never
        # waits for it, and keeps the other core
        self.background_reader = TextReader(threads=1)

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
        """Photo -> boxes -> crops -> vectors with these models (:mod:`pipeline.analysis`)."""
        return PhotoAnalyser(self.settings, self.detector, self.embedder)

    def load(self, source: ImageSource) -> Image.Image:
        """Decode an upload with this deployment's size limits."""
        return load_image(source, max_pixels=self.settings.max_image_pixels,
                          max_bytes=self.settings.max_upload_bytes)

    def logo_crop(self, photo: Image.Image, box: Box) -> Image.Image:
        """The crop of ``box`` that gets embedded: the box plus ``settings.crop_padding`` of context."""
        return crop(photo, box, self.settings.crop_padding)

    def store_vectors(self) -> StoreVectors:
        """Every stored logo's vector, label, source and photo.

        Raises:
            StoreError: the store is empty.
        """
        store = self.store
        model_id = store.model_id
        ids, vectors = [], []
        for batch_ids, batch in store.iter_vectors():
            ids.append(batch_ids)
            vectors.append(batch)
        if model_id is None or not ids:
            raise StoreError("the store is empty: add labelled logos first")
        all_ids = np.concatenate(ids)
        rows = store.label_frame().set_index("id").reindex(all_ids)
        hashes = store.photo_frame().set_index("id").image_hash.reindex(all_ids)
        return StoreVectors(all_ids, np.concatenate(vectors),
                            [label if isinstance(label, str) else None for label in rows.label],
                            [LabelSource(source) if isinstance(source, str) else None for source in rows.source],
                            [photo if isinstance(photo, str) else None for photo in hashes], model_id)

    def missing_ids(self, ids: Sequence[int]) -> list[int]:
        """The ids of ``ids`` that name no stored logo."""
        known = self.store.labels([int(i) for i in ids])
        return [int(i) for i in ids if int(i) not in known]

"""The one place the use cases are wired from the settings; what the CLI, the pages and the API are given.

A front end holds a :class:`LogoService` and calls its use cases, each named for
what people do (:mod:`pipeline.usecases`): ``search``, ``ingest``, ``labels``,
``review``, ``maintenance``, ``ann`` (robotoff-ann compatibility), ``calibration``,
``reading`` (the text on logos) and ``insight`` (what the pages read). Nothing reaches the store, the index or the
map around them. It knows nothing of any user interface.
"""

from __future__ import annotations

import sqlite3

from pipeline.analysis import make_detector
from pipeline.config import Settings
from pipeline.embedders import Embedder
from pipeline.errors import ConfigError, DetectorError, EmbedderError
from pipeline.progress import BuildTracker
from pipeline.usecases.ann import Ann
from pipeline.usecases.calibration import Calibration
from pipeline.usecases.ingest import Ingest
from pipeline.usecases.insight import Insight
from pipeline.usecases.labels import Labels
from pipeline.usecases.maintenance import Maintenance
from pipeline.usecases.parts import Parts
from pipeline.usecases.reading import Reading
from pipeline.usecases.review import Review
from pipeline.usecases.search import Search


class LogoService:
    """Search, add, label and review logos in one data directory: the use cases, wired once.

    Args:
        settings: Configuration (data directory, models, vote parameters...).
        embedder: An already created embedder to share (e.g. between a store and
            a temporary evaluation store); created lazily from ``settings`` if None.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> service = LogoService(Settings(data_dir=tempfile.mkdtemp(), detector="whole-image"))
        >>> ids = service.ingest.photo(Image.new("RGB", (64, 64), "red"), labels=["red square"])
        >>> service.search.photo(Image.new("RGB", (64, 64), "red")).logos[0].prediction.label
        'red square'
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        parts = Parts(settings, make_detector(settings), embedder)
        self._parts = parts
        self.calibration = Calibration(parts)
        self.reading = Reading(parts)
        self.search = Search(parts, self.calibration, self.reading)
        self.ingest = Ingest(parts, self.search)
        self.labels = Labels(parts, self.calibration)
        self.review = Review(parts, self.search)
        self.maintenance = Maintenance(parts)
        self.ann = Ann(parts, self.search, self.ingest)
        self.insight = Insight(parts)
        parts.signals.index_grew.append(self.maintenance.compact_when_due)
        parts.signals.logos_added.append(self.insight.logos_added)
        parts.signals.labels_changed.append(self.calibration.request)

    @property
    def settings(self) -> Settings:
        """The settings every use case reads."""
        return self._parts.settings

    @property
    def build(self) -> BuildTracker:
        """The store's first build (:func:`pipeline.demo.start_demo` moves it along; ``ready`` when none runs)."""
        return self._parts.build

    @property
    def model_id(self) -> str:
        """The configured embedder's model id (loads the model on first use)."""
        return self._parts.embedder.model_id

    def load_models(self) -> None:
        """Load the embedding model now (it loads lazily otherwise)."""
        self._parts.embedder  # noqa: B018 - the property loads it


def open_service(settings: Settings) -> LogoService:
    """A service ready to serve, with its models loaded, or one :class:`ConfigError` naming the setting at fault.

    The embedder loads lazily; a server loads it here instead, so that a wrong
    ``LOGOS_EMBEDDER`` stops the start with one clear line rather than failing the
    first visitor's search.
    """
    try:
        service = LogoService(settings)
    except DetectorError as exc:
        raise ConfigError(f"LOGOS_DETECTOR={settings.detector} (LOGOS_DETECTOR_PATH={settings.detector_path}): "
                          f"{exc}") from None
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"LOGOS_DATA_DIR={settings.data_dir}: cannot keep the store there ({exc})") from None
    try:
        service.load_models()
    except EmbedderError as exc:
        raise ConfigError(f"LOGOS_EMBEDDER={settings.embedder}: {exc}") from None
    return service

"""Photo -> logo boxes -> crops -> vectors: the compute of an import, with no store attached.

Why its own module: bulk imports spend nearly all their time here (decoding,
detection, embedding), and this part needs nothing but the settings, so it can
run anywhere: in the service's own process, or on Ray workers
(:mod:`pipeline.distributed`) whose results the one process that owns the store
then searches and stores. Both paths build the models with the same factories
from the same settings, so they give the same vectors.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import Settings
from pipeline.detectors import Detector, DetectorConfig, create_detector
from pipeline.embedders import Embedder, create_embedder
from pipeline.errors import ImageError, StoreError
from pipeline.images import ImageSource, crop, image_sha256, load_image
from pipeline.types import Box, Detection


def make_detector(settings: Settings) -> Detector:
    """The configured logo detector, down to the proposals' score (:mod:`pipeline.proposals`)."""
    return create_detector(settings.detector, config=DetectorConfig(
        path=settings.detector_path, score_threshold=min(settings.detector_threshold, settings.proposal_threshold),
        max_detections=settings.max_boxes, threads=settings.torch_threads))


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedder, with its runtime, batch size and threads."""
    return create_embedder(settings.embedder, runtime=settings.embed_runtime, batch_size=settings.batch_size,
                           threads=settings.torch_threads)


@dataclass(frozen=True)
class PhotoAnalysis:
    """One photo's logos: boxes, the crops that were embedded, and their vectors (``[n, dim]``)."""

    image_hash: str
    width: int
    height: int
    detections: tuple[Detection, ...]
    crops: tuple[Image.Image, ...]
    vectors: np.ndarray


class PhotoAnalyser:
    """Detects and embeds the logos of photos with the models ``settings`` name (loaded once).

    Example:
        >>> from pipeline.config import Settings
        >>> analyser = PhotoAnalyser(Settings(detector="whole-image"))
        >>> result = analyser.analyse(Image.new("RGB", (64, 48), "red"))
        >>> len(result.detections), result.vectors.shape[0], (result.width, result.height)
        (1, 1, (64, 48))
    """

    def __init__(self, settings: Settings, detector: Detector | None = None, embedder: Embedder | None = None):
        self.settings = settings
        self.detector = detector or make_detector(settings)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings)
        return self._embedder

    def load(self, source: ImageSource) -> Image.Image:
        """Decode a photo with the deployment's size limits (typed errors for bad files)."""
        return load_image(source, max_pixels=self.settings.max_image_pixels, max_bytes=self.settings.max_upload_bytes)

    def analyse(self, photo: Image.Image, image_hash: str | None = None) -> PhotoAnalysis:
        """Detect the logos of ``photo``, cut each with the configured padding, embed them in one batch.

        An import keeps the boxes the detector is sure of (``settings.detector_threshold``), not its proposals
        (:mod:`pipeline.proposals`): a bulk run embeds a few boxes a photo, not forty.
        """
        threshold = self.settings.detector_threshold
        detections = tuple(d for d in self.detector.detect(photo) if d.score >= threshold)
        crops = tuple(crop(photo, d.box, self.settings.crop_padding) for d in detections)
        vectors = (np.asarray(self.embedder.embed(list(crops)), dtype=np.float32) if crops
                   else np.zeros((0, 0), np.float32))
        return PhotoAnalysis(image_hash or image_sha256(photo), photo.width, photo.height, detections, crops, vectors)

    def source_image(self, path: Path) -> tuple[Image.Image, str] | None:
        """A stored logo's source image and its pixel hash, or None if the file is gone or unreadable."""
        if not path.is_file():
            return None
        try:
            photo = self.load(path)
        except ImageError:
            return None
        return photo, image_sha256(photo)

    def reembed_crop(self, logo_id: int, image_path: str | None, image_hash: str | None, box: Box | None,
                     thumbnail: bytes | None, sources: dict[str, tuple[Image.Image, str] | None]
                     ) -> tuple[Image.Image, str]:
        """A stored logo's crop to embed again: cut from its source image if that file still has the same
        pixels, else its thumbnail; with where it came from (``"source"`` or ``"thumbnail"``).

        ``sources`` caches decoded source images by path (a photo's logos are neighbours in id order).

        Raises:
            StoreError: Neither the source image nor a thumbnail is there.
        """
        if image_path and image_path not in sources:
            sources[image_path] = self.source_image(Path(image_path))
        source = sources.get(image_path) if image_path else None
        if source is not None and image_hash in (None, source[1]):
            photo = source[0]
            return (crop(photo, box, self.settings.crop_padding) if box else photo), "source"
        if thumbnail is None:
            raise StoreError(f"logo #{logo_id} has neither its source image nor a thumbnail to re-embed")
        return Image.open(io.BytesIO(thumbnail)).convert("RGB"), "thumbnail"

"""Logo detectors: a registry of names -> factories, one :class:`Detector` interface.

A detector finds the boxes of logos on a photo. Registered today:

* ``whole-image``: the whole photo is one logo (uploads that are already crops).
* ``boxes``: the boxes a user drew, clipped to the photo.

A learned detector registers itself here under its own name and becomes usable
everywhere (``LOGOS_DETECTOR``) without touching callers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from pipeline.types import Box, Detection


class Detector(ABC):
    """Finds logos on an RGB photo."""

    @abstractmethod
    def detect(self, image: Image.Image) -> list[Detection]:
        """Boxes in pixel coordinates of ``image``, clipped to it, best first."""


class WholeImageDetector(Detector):
    """The whole photo is one logo."""

    def detect(self, image: Image.Image) -> list[Detection]:
        return [Detection(Box(0, 0, image.width, image.height), 1.0)]


class GivenBoxesDetector(Detector):
    """Boxes chosen by a person (a click-drag in the UI, or the API's ``boxes``).

    Boxes partly outside the photo are clipped; boxes entirely outside are an error,
    because silently dropping what a person drew would lose their work.
    """

    def __init__(self, boxes: Sequence[Box | Sequence[float]]) -> None:
        self.boxes = [b if isinstance(b, Box) else Box.from_sequence(b) for b in boxes]

    def detect(self, image: Image.Image) -> list[Detection]:
        detections = []
        for box in self.boxes:
            clipped = box.clip(image.width, image.height)
            if clipped is None:
                raise ValueError(f"box {box.to_list()} lies outside the {image.width}x{image.height} image")
            detections.append(Detection(clipped, 1.0, "user"))
        return detections


_REGISTRY: dict[str, Callable[..., Detector]] = {
    "whole-image": WholeImageDetector,
    "boxes": GivenBoxesDetector,
}


def register_detector(name: str, factory: Callable[..., Detector]) -> None:
    """Make ``create_detector(name, **kwargs)`` call ``factory(**kwargs)``."""
    if name in _REGISTRY:
        raise ValueError(f"detector {name!r} is already registered")
    _REGISTRY[name] = factory


def list_detectors() -> list[str]:
    return sorted(_REGISTRY)


def create_detector(name: str, **kwargs: Any) -> Detector:
    """Create a registered detector.

    Args:
        name: A name from :func:`list_detectors`.
        **kwargs: Passed to the detector's factory (``boxes=`` for ``"boxes"``).

    Example:
        >>> from PIL import Image
        >>> create_detector("whole-image").detect(Image.new("RGB", (40, 30)))[0].box
        Box(x0=0, y0=0, x1=40, y1=30)
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(list_detectors())}") from None
    return factory(**kwargs)

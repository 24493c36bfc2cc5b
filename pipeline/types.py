"""Dataclasses that cross module lines: boxes, detections, neighbours, results."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from pipeline.errors import BadInputError


class LabelSource(str, Enum):
    """Who set a logo's label. Human labels always win over machine labels."""

    HUMAN = "human"
    MACHINE = "machine"

    @classmethod
    def parse(cls, value: str | LabelSource) -> LabelSource:
        """Parse a label source, with a clear error for anything else."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise BadInputError(f"label source must be one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates of the original image (x1, y1 exclusive)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def from_sequence(cls, values: Sequence[float]) -> Box:
        """Build a box from ``[x0, y0, x1, y1]``, refusing malformed input."""
        if isinstance(values, (str, bytes)) or len(values) != 4:
            raise BadInputError(f"a box is [x0, y0, x1, y1], got {values!r}")
        try:
            x0, y0, x1, y1 = (float(v) for v in values)
        except (TypeError, ValueError):
            raise BadInputError(f"box coordinates must be numbers, got {values!r}") from None
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise BadInputError(f"box coordinates must be finite, got {values!r}")
        if x1 <= x0 or y1 <= y0:
            raise BadInputError(f"box must have x1 > x0 and y1 > y0, got {values!r}")
        return cls(x0, y0, x1, y1)

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return self.width * self.height

    def overlap(self, other: Box) -> float:
        """The area the two boxes share (0 when they are apart).

        Example:
            >>> a = Box(0.0, 0.0, 10.0, 10.0)
            >>> a.overlap(Box(5.0, 5.0, 20.0, 20.0)), a.overlap(Box(10.0, 0.0, 20.0, 10.0))
            (25.0, 0.0)
        """
        width = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        height = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        return width * height

    def iou(self, other: Box) -> float:
        """Intersection over union: how far two boxes are one (1: the same box, 0: apart).

        Example:
            >>> round(Box(0.0, 0.0, 10.0, 10.0).iou(Box(5.0, 0.0, 15.0, 10.0)), 3)
            0.333
        """
        shared = self.overlap(other)
        return shared / (self.area + other.area - shared)

    def clip(self, width: int, height: int) -> Box | None:
        """The part of the box inside a ``width`` x ``height`` image, or None if empty."""
        x0, y0 = max(0.0, self.x0), max(0.0, self.y0)
        x1, y1 = min(float(width), self.x1), min(float(height), self.y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        return Box(x0, y0, x1, y1)

    def to_list(self) -> list[float]:
        return [round(self.x0, 2), round(self.y0, 2), round(self.x1, 2), round(self.y1, 2)]


@dataclass(frozen=True)
class Detection:
    """A logo found on a photo by a detector."""

    box: Box
    score: float = 1.0
    kind: str | None = None


@dataclass(frozen=True)
class Neighbour:
    """A stored logo near a query, with its current label."""

    id: int
    label: str | None
    label_source: LabelSource | None
    distance: float


@dataclass(frozen=True)
class Prediction:
    """The kNN label of a query: ``label`` is None when the logo is unknown.

    ``guess`` is the vote's winner whether or not it was given (None only when no neighbour is labelled),
    with ``guess_probability`` its probability of being right (calibrated when the store is): an unknown
    logo still has a best guess for a person to confirm, kept apart from a named one. ``named_by`` says what
    gave the label: ``vote`` (the neighbours) or ``text`` (the logo's text named a label that the vote alone
    did not give: :func:`pipeline.text_evidence.hear`, :func:`pipeline.reading.name_by_text`).
    """

    label: str | None
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    guess: str | None = None
    guess_probability: float = 0.0
    named_by: str = "vote"


@dataclass(frozen=True)
class LogoMatch:
    """One logo of a searched photo: where it is, what it probably is, its neighbours, and the text read on it
    ("" when none was read, or reading is off: ``settings.read_text``)."""

    box: Box
    prediction: Prediction
    neighbours: list[Neighbour]
    detection_score: float = 1.0
    text: str = ""
    found_by: str = "detector"  # or "text": a line of text naming a vocabulary label where no box was found


@dataclass(frozen=True)
class PhotoSearchResult:
    """Everything a photo search (``service.search.photo``) found, in pixel coordinates of the original image."""

    width: int
    height: int
    logos: list[LogoMatch]
    vectors: np.ndarray | None = field(default=None, repr=False, compare=False)  # one query vector per logo
    # the proposals left out of the answer (:mod:`pipeline.proposals`): not named; shown on request, never in the JSON
    unnamed: list[LogoMatch] = field(default_factory=list, repr=False, compare=False)


@dataclass(frozen=True)
class LogoRecord:
    """A stored logo as the store keeps it."""

    id: int
    image_hash: str | None
    image_path: str | None
    box: Box | None
    label: str | None
    label_source: LabelSource | None
    score: float | None
    model_id: str
    created: float
    confidence: float | None = None  # P(right) of a machine label, when a machine proposed it
    proposed_by: str | None = None  # what named a machine label: "vote" or "text" (None: not recorded)


@dataclass(frozen=True)
class StoreStats:
    """Counts that describe a store and its index."""

    logos: int
    labelled: int
    human_labelled: int
    machine_labelled: int
    labels: int
    model_id: str | None
    indexed: int
    pending: int

"""Logo detectors: a registry of names -> factories, one :class:`Detector` interface.

A detector finds the boxes of logos on a photo. Registered:

* ``whole-image``: the whole photo is one logo (uploads that are already crops).
* ``boxes``: the boxes a user drew, clipped to the photo.
* ``logo-detector``: the bundled learned detector (``assets/detector``).
* ``onnx``: any detector exported in the YOLOv8 layout, from a path, such as
  Open Food Facts' universal-logo-detector.

Learned detectors share one runner, :class:`OnnxDetector` (ONNX Runtime on the
CPU): letterbox, forward, score threshold, class-aware NMS (torchvision),
boxes mapped back to the photo, clipped, tiny ones dropped.
"""

from __future__ import annotations

import ast
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.ops import batched_nms, box_convert

from pipeline.errors import BadInputError, DetectorError
from pipeline.registry import Registry
from pipeline.types import Box, Detection

BUNDLED_DETECTOR = Path(__file__).resolve().parent.parent / "assets" / "detector" / "logo-detector.onnx"


@dataclass(frozen=True)
class DetectorConfig:
    """Options of the learned detectors (ignored by the others).

    Attributes:
        path: ONNX file; None means the bundled detector.
        score_threshold: Boxes scoring below are dropped.
        iou_threshold: NMS overlap above which the weaker box of a class is dropped.
        min_size: Boxes narrower or lower than this many photo pixels are dropped.
        max_detections: Boxes kept at most, best first.
        threads: ONNX Runtime intra-op threads (0: its default).
    """

    path: Path | None = None
    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    min_size: float = 8.0
    max_detections: int = 50
    threads: int = 0


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
                raise BadInputError(f"box {box.to_list()} lies outside the {image.width}x{image.height} image")
            detections.append(Detection(clipped, 1.0, "user"))
        return detections


def _class_names(metadata: dict[str, str], count: int) -> list[str]:
    """Class names from the model's metadata (``names``: JSON or a Python dict literal, as Ultralytics writes)."""
    raw = metadata.get("names")
    if raw:
        for parse in (json.loads, ast.literal_eval):
            try:
                names = parse(raw)
            except (ValueError, SyntaxError):
                continue
            if isinstance(names, dict):
                names = [names.get(i, names.get(str(i), str(i))) for i in range(count)]
            if isinstance(names, list) and len(names) == count:
                return [str(n) for n in names]
    return ["logo"] if count == 1 else [f"class {i}" for i in range(count)]


class OnnxDetector(Detector):
    """A YOLOv8-layout ONNX detector run with ONNX Runtime.

    The layout (Ultralytics' export, used by Open Food Facts' universal logo
    detector): one input ``[1, 3, H, W]`` float32 RGB in [0, 1], letterboxed
    (aspect kept, grey padding around); one output ``[1, 4 + C, N]``: box
    centre x, y, width, height in input pixels, then ``C`` class scores. ``H``,
    ``W`` and ``C`` are read from the model.

    Args:
        path: The ``.onnx`` file.
        config: Thresholds and limits.

    Raises:
        DetectorError: The file is missing, is not ONNX, or is not in this layout.
    """

    def __init__(self, path: str | Path, config: DetectorConfig | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.config = config or DetectorConfig()
        if not self.path.is_file():
            raise DetectorError(f"detector model not found: {self.path}")
        options = ort.SessionOptions()
        if self.config.threads:
            options.intra_op_num_threads = self.config.threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"{self.path} is not a usable ONNX model: {exc}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            raise DetectorError(f"{self.path}: expected one input [1, 3, H, W], got "
                                f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:]
        self.height = height if isinstance(height, int) else 640  # dynamic axes: the usual export size
        self.width = width if isinstance(width, int) else 640
        shape = outputs[0].shape
        if len(shape) != 3 or (isinstance(shape[1], int) and shape[1] < 5):
            raise DetectorError(f"{self.path}: expected an output [1, 4 + classes, anchors] (YOLOv8 layout), "
                                f"got {shape}")
        if isinstance(shape[1], int) and isinstance(shape[2], int) and shape[1] > shape[2]:
            raise DetectorError(f"{self.path}: output {shape} looks transposed; expected [1, 4 + classes, anchors]")
        self.classes = _class_names(self.session.get_modelmeta().custom_metadata_map,
                                    shape[1] - 4 if isinstance(shape[1], int) else 1)

    def _letterbox(self, image: Image.Image) -> tuple[np.ndarray, float, float, float]:
        scale = min(self.width / image.width, self.height / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        pad_x, pad_y = (self.width - size[0]) / 2, (self.height - size[1]) / 2
        canvas = Image.new("RGB", (self.width, self.height), (114, 114, 114))
        canvas.paste(image.convert("RGB").resize(size, Image.BILINEAR), (int(pad_x), int(pad_y)))
        array = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
        return np.ascontiguousarray(array), scale, int(pad_x), int(pad_y)

    def detect(self, image: Image.Image) -> list[Detection]:
        array, scale, pad_x, pad_y = self._letterbox(image)
        (output,) = self.session.run(None, {self.input_name: array})[:1]
        if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] < 5:
            raise DetectorError(f"{self.path}: output {output.shape} is not [1, 4 + classes, anchors]")
        rows = torch.from_numpy(np.ascontiguousarray(output[0].T))
        scores, classes = rows[:, 4:].max(dim=1)
        keep = scores >= self.config.score_threshold
        boxes = box_convert(rows[keep, :4], "cxcywh", "xyxy")
        boxes = (boxes - torch.tensor([pad_x, pad_y, pad_x, pad_y])) / scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, image.width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, image.height)
        scores, classes = scores[keep], classes[keep]
        size = self.config.min_size
        big = ((boxes[:, 2] - boxes[:, 0]) >= size) & ((boxes[:, 3] - boxes[:, 1]) >= size)
        boxes, scores, classes = boxes[big], scores[big], classes[big]
        order = batched_nms(boxes, scores, classes, self.config.iou_threshold)[: self.config.max_detections]
        return [Detection(Box(*boxes[i].tolist()), float(scores[i]), self.classes[int(classes[i])])
                for i in order.tolist()]


def _bundled(config: DetectorConfig | None = None) -> OnnxDetector:
    config = config or DetectorConfig()
    return OnnxDetector(config.path or BUNDLED_DETECTOR, config)


def _external(config: DetectorConfig | None = None) -> OnnxDetector:
    if config is None or config.path is None:
        raise DetectorError("the onnx detector needs a model path (LOGOS_DETECTOR_PATH)")
    return OnnxDetector(config.path, config)


DETECTORS = Registry[Callable[..., Detector]]("detector", DetectorError)
"""Factories: ``create_detector(name, config=..., **kwargs)`` calls ``factory(config=..., **kwargs)``."""
DETECTORS.register("whole-image", lambda config=None: WholeImageDetector(), "each image is one logo")
DETECTORS.register("boxes", lambda config=None, boxes=(): GivenBoxesDetector(boxes), "the boxes a person drew")
DETECTORS.register("logo-detector", _bundled, "the bundled logo detector (ONNX)")
DETECTORS.register("onnx", _external, "any YOLOv8-layout ONNX detector at LOGOS_DETECTOR_PATH")


def list_detectors() -> list[str]:
    return DETECTORS.names()


def create_detector(name: str, config: DetectorConfig | None = None, **kwargs: Any) -> Detector:
    """Create a registered detector.

    Args:
        name: A name from :func:`list_detectors`.
        config: Options of the learned detectors (model path, thresholds).
        **kwargs: Passed to the detector's factory (``boxes=`` for ``"boxes"``).

    Example:
        >>> from PIL import Image
        >>> create_detector("whole-image").detect(Image.new("RGB", (40, 30)))[0].box
        Box(x0=0, y0=0, x1=40, y1=30)
    """
    return DETECTORS.get(name)(config=config, **kwargs)

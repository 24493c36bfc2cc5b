"""The ONNX detector runner: YOLOv8 layout (Open Food Facts' detector and ours), letterboxing, NMS, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from pipeline.config import Settings
from pipeline.detectors import DetectorConfig, DetectorError, OnnxDetector, create_detector
from pipeline.service import LogoService


class FixedOutput(torch.nn.Module):
    """A tiny 'detector' whose output is fixed rows in the YOLOv8 layout [1, 4 + C, N]."""

    def __init__(self, rows: np.ndarray, anchors: int) -> None:
        super().__init__()
        table = np.zeros((rows.shape[1], anchors), np.float32)
        table[:, :len(rows)] = rows.T
        self.register_buffer("table", torch.from_numpy(table)[None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.table + 0 * images.mean()  # a real graph that depends on its input


def export(path: Path, module: torch.nn.Module, size: int, names: str | None = None) -> Path:
    torch.onnx.export(module, torch.zeros(1, 3, size, size), str(path), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
    if names is not None:
        model = onnx.load(str(path))
        model.metadata_props.add(key="names", value=names)
        onnx.save(model, str(path))
    return path


# cx, cy, w, h (input pixels), then class scores
ONE_CLASS = np.array([
    [320, 320, 100, 50, 0.9],   # the logo
    [322, 321, 100, 52, 0.8],   # a duplicate of it: NMS drops it
    [100, 100, 40, 40, 0.1],    # below the score threshold
    [500, 400, 4, 4, 0.95],     # too small once mapped to the photo
], np.float32)


def test_one_class_640_letterboxed_photo_maps_back_and_filters(tmp_path):
    detector = OnnxDetector(export(tmp_path / "d.onnx", FixedOutput(ONE_CLASS, 8400), 640),
                            DetectorConfig(score_threshold=0.25, min_size=10))
    assert (detector.width, detector.height, detector.classes) == (640, 640, ["logo"])
    photo = Image.new("RGB", (1280, 640))  # scale 0.5, 160 px of padding above and below
    (found,) = detector.detect(photo)
    assert found.kind == "logo" and found.score == pytest.approx(0.9)
    assert found.box.to_list() == pytest.approx([540, 270, 740, 370], abs=0.01)


def test_two_classes_320_input_with_ultralytics_names(tmp_path):
    rows = np.array([[160, 160, 64, 32, 0.2, 0.7], [60, 60, 40, 40, 0.9, 0.1]], np.float32)
    path = export(tmp_path / "off.onnx", FixedOutput(rows, 2100), 320, names="{0: 'brand', 1: 'label'}")
    detector = OnnxDetector(path)
    assert (detector.width, detector.classes) == (320, ["brand", "label"])
    found = detector.detect(Image.new("RGB", (320, 320)))
    assert [(d.kind, round(d.score, 2)) for d in found] == [("brand", 0.9), ("label", 0.7)]
    assert found[1].box.to_list() == pytest.approx([128, 144, 192, 176])


def test_boxes_are_clipped_to_the_photo(tmp_path):
    rows = np.array([[20, 320, 100, 100, 0.9]], np.float32)  # sticks out on the left
    detector = OnnxDetector(export(tmp_path / "d.onnx", FixedOutput(rows, 8400), 640))
    (found,) = detector.detect(Image.new("RGB", (640, 640)))
    assert found.box.x0 == 0 and found.box.x1 == pytest.approx(70)


@pytest.mark.parametrize("module, message", [
    (lambda: FixedOutput(ONE_CLASS, 8400).eval(), None),
    (lambda: TransposedOutput(), "transposed"),
    (lambda: FlatOutput(), "YOLOv8 layout"),
])
def test_layouts_are_checked_at_load(tmp_path, module, message):
    path = export(tmp_path / "m.onnx", module(), 640)
    if message is None:
        OnnxDetector(path)
    else:
        with pytest.raises(DetectorError, match=message):
            OnnxDetector(path)


class TransposedOutput(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 8400, 5) + images.mean()


class FlatOutput(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 8400) + images.mean()


def test_missing_or_corrupt_model_files_give_clear_errors(tmp_path):
    with pytest.raises(DetectorError, match="not found"):
        OnnxDetector(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(DetectorError, match="not a usable ONNX model"):
        OnnxDetector(junk)
    with pytest.raises(DetectorError, match="needs a model path"):
        create_detector("onnx")


def test_service_uses_an_external_detector_from_settings(tmp_path):
    path = export(tmp_path / "ext.onnx", FixedOutput(ONE_CLASS, 8400), 640)
    settings = Settings(data_dir=tmp_path / "data", detector="onnx", detector_path=path, detector_threshold=0.5)
    service = LogoService(settings)
    detections = service.search.detect(Image.new("RGB", (640, 640)))
    assert [d.box.to_list() for d in detections] == [[270.0, 295.0, 370.0, 345.0]]
    assert json.loads(json.dumps([d.kind for d in detections])) == ["logo"]

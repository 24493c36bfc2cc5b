"""The bundled learned detector: it finds logos on a product photo, nothing on a blank one; export is faithful."""

from __future__ import annotations


import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from torchvision.ops import box_iou

from pipeline.config import Settings
from pipeline.datasets import load_yolo
from pipeline.demo import DEMO_LOGOS
from pipeline.detectors import BUNDLED_DETECTOR, DetectorConfig, create_detector
from pipeline.training.detector import YoloLayout, build_model, export_onnx
from pipeline.training.scenes import compose_scene
from tests.conftest import FIXTURES

REAL_PHOTOS = FIXTURES / "real-drinks"  # five real-drinks test photos


def test_bundled_detector_finds_the_logos_of_a_generated_scene():
    detector = create_detector("logo-detector")
    rng = np.random.default_rng(11)
    brands = ["Coca-Cola", "Shell", "Lidl"]
    cards = [(Image.open(next((DEMO_LOGOS / b).glob("*.png"))).convert("RGB"), b) for b in brands]
    scene = compose_scene(cards, rng, size=(1024, 768), strength=0.5, logo_fraction=(0.18, 0.28))
    found = detector.detect(scene.image)
    assert found, "no logo found"
    truth = torch.tensor([b.to_list() for b in scene.boxes])
    iou = box_iou(truth, torch.tensor([d.box.to_list() for d in found]))
    assert (iou.max(dim=1).values >= 0.5).all(), iou  # every pasted logo is found
    assert all(0 <= d.box.x0 < d.box.x1 <= 1024 and 0 <= d.box.y0 < d.box.y1 <= 768 for d in found)


def test_bundled_detector_finds_the_logos_on_real_photos():
    """Real packaging photos (held-out test split): every boxed logo is found at the app's operating threshold."""
    detector = create_detector("logo-detector", config=DetectorConfig(
        score_threshold=Settings().detector_threshold))
    for photo in load_yolo(REAL_PHOTOS).photos:
        found = detector.detect(Image.open(photo.path))
        truth = torch.tensor([a.box.to_list() for a in photo.annotations])
        assert found, f"no logo found on {photo.path.name}"
        iou = box_iou(truth, torch.tensor([d.box.to_list() for d in found]))
        assert (iou.max(dim=1).values >= 0.5).all(), (photo.path.name, iou)


def test_bundled_detector_finds_nothing_on_a_blank_photo():
    detector = create_detector("logo-detector")
    for colour in ["white", "black", (200, 180, 150)]:
        assert detector.detect(Image.new("RGB", (1024, 768), colour)) == []


def test_bundled_model_is_in_the_yolov8_layout():
    session = ort.InferenceSession(str(BUNDLED_DETECTOR))
    (source,), (output,) = session.get_inputs(), session.get_outputs()
    assert (source.name, source.shape) == ("images", [1, 3, 640, 640])
    assert (output.name, output.shape) == ("output0", [1, 5, 8400])


def test_onnx_export_matches_the_torch_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(pretrained=False).eval()
    path = export_onnx(model, tmp_path / "d.onnx")
    images = torch.rand(1, 3, 640, 640)
    with torch.no_grad():
        expected = YoloLayout(model).eval()(images).numpy()
    got = ort.InferenceSession(str(path)).run(None, {"images": images.numpy()})[0]
    assert got.shape == expected.shape == (1, 5, 8400)
    assert np.abs(got[0, :4] - expected[0, :4]).max() < 0.05  # box coordinates, in pixels
    assert np.abs(got[0, 4] - expected[0, 4]).max() < 1e-4  # scores

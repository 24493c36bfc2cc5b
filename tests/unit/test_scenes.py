"""Generated product scenes know where their logos are."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.training.scenes import compose_scene, packaging


def _card(colour: str) -> Image.Image:
    return Image.new("RGB", (90, 60), colour)


def test_flat_scene_boxes_are_where_the_cards_are():
    scene = compose_scene([(_card("#ff0000"), "red"), (_card("#0000ff"), "blue")], np.random.default_rng(3),
                          size=(640, 480), strength=0, logo_fraction=(0.2, 0.2))
    assert scene.labels == ["red", "blue"]
    pixels = np.asarray(scene.image)
    for box, rgb in zip(scene.boxes, [(255, 0, 0), (0, 0, 255)], strict=True):
        x0, y0, x1, y1 = (int(v) for v in box.to_list())
        inside = pixels[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
        assert np.abs(inside.astype(int) - rgb).max() < 3  # the card fills its box
    a, b = scene.boxes
    assert a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0  # cards never overlap


def test_photographed_scene_keeps_boxes_inside_and_on_the_logo():
    rng = np.random.default_rng(5)
    for _ in range(5):
        scene = compose_scene([(_card("#00ff00"), "green")], rng, size=(512, 384), strength=1.0)
        for box in scene.boxes:
            assert 0 <= box.x0 < box.x1 <= 512 and 0 <= box.y0 < box.y1 <= 384
            x0, y0, x1, y1 = (int(v) for v in box.to_list())
            centre = np.asarray(scene.image)[(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
            assert centre[1] > centre[0] and centre[1] > centre[2]  # still the green card under its box


def test_packaging_is_deterministic_for_a_seed():
    one = np.asarray(packaging((200, 150), np.random.default_rng(9)))
    two = np.asarray(packaging((200, 150), np.random.default_rng(9)))
    assert one.shape == (150, 200, 3) and np.array_equal(one, two)

"""Generated product scenes know where their logos are."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.training.scenes import compose_scene, packaging, paste_marks
from pipeline.types import Box


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


def test_marks_printed_on_a_photo_keep_its_logos_and_land_clear_of_them():
    photo = Image.new("RGB", (400, 300), (200, 190, 180))
    logo = Box(20.0, 20.0, 180.0, 140.0)  # the photo's own logo
    mark = Image.new("RGBA", (60, 40), (10, 40, 160, 255))
    printed, boxes = paste_marks(photo, [logo], [mark] * 3, np.random.default_rng(1), logo_fraction=(0.2, 0.25))
    assert boxes[0] == logo and len(boxes) == 4
    pixels = np.asarray(printed).astype(int)
    for box in boxes[1:]:
        assert box.overlap(logo) < 0.1 * box.area  # never over the photo's own logo
        x0, y0, x1, y1 = (int(v) for v in box.to_list())
        centre = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
        assert centre[2] > centre[0] + 60  # the blue mark is under its box, darkened or lit by the spot
    assert np.array_equal(pixels[30:130, 30:170], np.asarray(photo).astype(int)[30:130, 30:170])


def test_a_mark_that_would_not_show_on_its_spot_is_left_out():
    white = Image.new("RGB", (300, 200), "white")
    printed, boxes = paste_marks(white, [], [Image.new("RGBA", (50, 50), (250, 250, 250, 255))],
                                 np.random.default_rng(0))
    assert boxes == [] and np.array_equal(np.asarray(printed), np.asarray(white))

"""Every kind of bad or unusual upload: a typed, readable error or a correct RGB image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.images import (
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    crop,
    load_image,
)
from pipeline.config import Settings
from pipeline.types import Box


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noisy(size=(120, 90), mode="RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8))


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        load_image(empty)


def test_not_an_image():
    with pytest.raises(NotAnImageError, match="not an image"):
        load_image(b"%PDF-1.4 definitely not a picture")


def test_missing_path(tmp_path):
    with pytest.raises(NotAnImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated(fmt):
    data = encode(noisy((300, 300)), fmt)
    with pytest.raises(TruncatedImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_refused_before_decoding():
    bomb = encode(Image.new("L", (5000, 5000)))  # tiny file, 25 Mpx
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(bomb, max_pixels=1_000_000)


def test_file_over_byte_cap():
    with pytest.raises(ImageTooLargeError, match="upload limit"):
        load_image(encode(noisy((400, 400))), max_bytes=10_000)


def test_wrong_type():
    with pytest.raises(NotAnImageError):
        load_image(12345)  # type: ignore[arg-type]


def test_errors_are_value_errors_with_codes():
    with pytest.raises(ValueError) as info:
        load_image(b"")
    assert isinstance(info.value, ImageError) and info.value.code == "empty_file"


def test_rgba_is_flattened_on_white():
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    rgb = load_image(encode(image))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (255, 0, 0)


def test_la_and_palette_with_transparency():
    la = Image.new("LA", (8, 8), (0, 0))
    assert load_image(encode(la)).getpixel((1, 1)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    assert load_image(encode(palette, transparency=0)).getpixel((1, 1)) == (0, 0, 255)


def test_cmyk_jpeg():
    rgb = load_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    red, green, blue = rgb.getpixel((8, 8))
    assert rgb.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_16_bit_grey_is_scaled_not_clipped():
    array = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (8, 1))
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    rgb = load_image(encode(image))
    row = np.asarray(rgb)[0, :, 0]
    assert row[0] < 10 and row[-1] > 245 and 100 < row[32] < 160


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    red, green, blue = load_image(data).getpixel((10, 10))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    upright = load_image(encode(image, "JPEG", exif=exif))
    assert upright.size == (20, 40)


def test_file_object_and_path(tmp_path):
    data = encode(noisy())
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert load_image(path).size == load_image(io.BytesIO(data)).size == (120, 90)


def test_crop_padding_grows_the_box_within_the_image():
    image = noisy((200, 100))
    box = Box(50, 20, 150, 60)
    assert crop(image, box).size == (100, 40)
    assert crop(image, box, 0.1).size == (120, 48)  # 10 px and 4 px more on each side
    assert crop(image, Box(0, 0, 200, 100), 0.25).size == (200, 100)  # clipped to the image
    with pytest.raises(ValueError, match="crop_padding"):
        Settings(crop_padding=1.5)

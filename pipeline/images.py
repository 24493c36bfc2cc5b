"""Safe image loading: every upload becomes an RGB ``PIL.Image`` or a typed error.

Uploads come from strangers: anything that is not a decodable, reasonably sized
picture must end in an :class:`ImageError` with a message a user can read,
never in a stack trace, and never after spending gigabytes on a decompression bomb.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import EmptyImageError, ImageError, ImageTooLargeError, NotAnImageError, TruncatedImageError
from pipeline.types import Box

ImageSource = str | Path | bytes | bytearray | BinaryIO | Image.Image


def _read_bytes(source: str | Path | bytes | bytearray | BinaryIO, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` (+1 to detect overflow) from a path, bytes or a file object."""
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise NotAnImageError(f"{path.name or path}: no such file")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, bytes):
            raise NotAnImageError("the upload is not binary data")
    else:
        raise NotAnImageError(f"cannot read an image from a {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the file is larger than the {max_bytes // (1024 * 1024)} MiB upload limit")
    if not data:
        raise EmptyImageError("the file is empty (0 bytes)")
    return data


def _decode_error(exc: Exception) -> ImageError:
    """Map a decoder's exception onto the typed error a user sees."""
    message = str(exc).lower()
    if "truncat" in message or "broken" in message or "premature end" in message:
        return TruncatedImageError("the image file is truncated or damaged")
    return NotAnImageError(f"the image could not be decoded ({exc})")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float greyscale to 8 bits instead of clipping to white."""
    array = np.asarray(image, dtype=np.float64)
    peak = float(array.max()) if array.size else 0.0
    if peak > 255.0:
        low = float(array.min())
        scale = 65535.0 if peak <= 65535.0 and low >= 0 else peak - low
        array = (array - (0.0 if scale == 65535.0 else low)) / scale * 255.0
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode to RGB: transparency is composited on ``background``, deep greys are rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _high_bit_depth_to_l(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = 40_000_000,
    max_bytes: int = 30 * 1024 * 1024,
) -> Image.Image:
    """Decode an upload into an upright RGB image, or raise an :class:`ImageError`.

    EXIF orientation is applied, animated images give their first frame, and
    transparent images are flattened on white (logos are usually drawn on white).

    Args:
        source: A path, raw bytes, a binary file object, or an already open image.
        max_pixels: Images with more pixels are refused before decoding.
        max_bytes: Files larger than this are refused before decoding.

    Example:
        >>> from PIL import Image; import io
        >>> buf = io.BytesIO(); Image.new("LA", (4, 3)).save(buf, "PNG")
        >>> load_image(buf.getvalue()).mode
        'RGB'
    """
    if isinstance(source, Image.Image):
        opened = source
    else:
        data = _read_bytes(source, max_bytes)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                opened = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise NotAnImageError("the file is not an image in a format we can read") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageTooLargeError(f"the image has more than {max_pixels:,} pixels") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise _decode_error(exc) from None
    width, height = opened.size
    if width <= 0 or height <= 0:
        raise NotAnImageError("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLargeError(f"the image is {width}x{height}, more than {max_pixels:,} pixels")
    try:
        if getattr(opened, "is_animated", False):
            opened.seek(0)
        opened.load()
        upright = ImageOps.exif_transpose(opened)
        return to_rgb(upright)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _decode_error(exc) from None


def image_sha256(image: Image.Image) -> str:
    """A content hash of the decoded pixels: the same picture in two encodings hashes alike."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def crop(image: Image.Image, box: Box, padding: float = 0.0) -> Image.Image:
    """The pixels of ``box``, grown by ``padding`` of its size on each side, within the image."""
    dx, dy = (box.x1 - box.x0) * padding, (box.y1 - box.y0) * padding
    x0, y0 = max(0, int(box.x0 - dx)), max(0, int(box.y0 - dy))
    x1, y1 = min(image.width, int(round(box.x1 + dx))), min(image.height, int(round(box.y1 + dy)))
    return image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))


def brand_ink(hex_colour: str) -> str:
    """A brand colour (hex, no ``#``) to print a logo in: near-white brand colours become dark grey.

    A logo inked in its brand colour must stay visible on white packaging.

    Example:
        >>> brand_ink("E60012"), brand_ink("FFFFFF")
        ('E60012', '333333')
    """
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return hex_colour if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.85 else "333333"

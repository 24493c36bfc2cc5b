"""Product-photo scenes with logos at known boxes: example photos, detector data and benchmarks.

A scene is a packaging panel (gradient or photo-like backdrop, lines of text in
several fonts, a barcode, a nutrition table) with printed logos pasted on it,
then photographed as a whole: perspective, rotation, colour, glare, blur, noise
and JPEG. torchvision's v2 transforms move the boxes with the pixels, so every
scene knows exactly where its logos are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torchvision import tv_tensors
from torchvision.transforms import v2

from pipeline.types import Box

_FONT_DIRS = [Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts")]
_WORDS = ("ORGANIC NATURAL CLASSIC ORIGINAL LIGHT ZERO SUGAR CHOCOLATE ORANGE VANILLA ingredients water "
          "salt milk wheat flour best before net weight energy fat protein carbohydrate fibre store in "
          "a cool dry place recycle made in EU kcal kJ per 100g serving").split()


@dataclass(frozen=True)
class Scene:
    """A photo and the logos on it (boxes in the photo's pixels)."""

    image: Image.Image
    boxes: list[Box]
    labels: list[str]


def _fonts() -> list[Path]:
    found = sorted({p for d in _FONT_DIRS if d.exists() for p in d.rglob("*.ttf")})
    return found


def _font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    fonts = _fonts()
    if not fonts:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(str(w) for w in rng.choice(_WORDS, words))


def _barcode(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, height: int, rng: np.random.Generator) -> None:
    draw.rectangle((x - 6, y - 6, x + width + 6, y + height + 18), fill=(255, 255, 255))
    pos = x
    while pos < x + width:
        bar = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            draw.rectangle((pos, y, pos + bar - 1, y + height), fill=(0, 0, 0))
        pos += bar
    digits = "".join(str(d) for d in rng.integers(0, 10, 13))
    draw.text((x, y + height + 2), digits, fill=(0, 0, 0), font=ImageFont.load_default(size=12))


def _nutrition_table(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, rng: np.random.Generator) -> None:
    rows = ["Energy", "Fat", "of which saturates", "Carbohydrate", "of which sugars", "Protein", "Salt"]
    font = ImageFont.load_default(size=12)
    height = 18 * (len(rows) + 1)
    draw.rectangle((x, y, x + width, y + height), fill=(255, 255, 255), outline=(0, 0, 0))
    draw.text((x + 4, y + 2), "Nutrition per 100 g", fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows, 1):
        draw.line((x, y + 18 * i, x + width, y + 18 * i), fill=(0, 0, 0))
        draw.text((x + 4, y + 18 * i + 2), row, fill=(0, 0, 0), font=font)
        draw.text((x + width - 50, y + 18 * i + 2), f"{rng.uniform(0, 60):.1f} g", fill=(0, 0, 0), font=font)


def packaging(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A product panel without logos: backdrop, text, shapes, and often a barcode and nutrition table."""
    width, height = size
    top, bottom = np.array(_colour(rng)), np.array(_colour(rng))
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
    ramp = (ramp - ramp.min()) / max(1e-6, np.ptp(ramp))
    panel = ((1 - ramp[..., None]) * top + ramp[..., None] * bottom)
    canvas = Image.fromarray(np.clip(panel, 0, 255).astype(np.uint8))
    grain = rng.normal(128, rng.uniform(0, 40), (height // 16 + 1, width // 16 + 1)).clip(0, 255).astype(np.uint8)
    texture = Image.fromarray(grain).resize(size, Image.BICUBIC).convert("RGB")
    canvas = Image.blend(canvas, Image.composite(canvas, texture, Image.new("L", size, 200)), 0.5)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 9))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        fill = _colour(rng)
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
    for _ in range(int(rng.integers(2, 10))):
        font = _font(rng, int(rng.integers(12, max(13, height // 12))))
        draw.text((int(rng.integers(0, width * 0.8)), int(rng.integers(0, height * 0.9))),
                  _text(rng, int(rng.integers(1, 5))), fill=_colour(rng), font=font)
    if rng.random() < 0.5:
        _barcode(draw, int(rng.integers(0, max(1, width - 160))), int(rng.integers(0, max(1, height - 90))),
                 int(rng.integers(90, 150)), int(rng.integers(40, 70)), rng)
    if rng.random() < 0.4:
        _nutrition_table(draw, int(rng.integers(0, max(1, width - 220))), int(rng.integers(0, max(1, height - 150))),
                         int(rng.integers(160, 220)), rng)
    return canvas


def _place(sizes: list[tuple[int, int]], canvas: tuple[int, int], rng: np.random.Generator,
           tries: int = 50) -> list[tuple[int, int]]:
    """Top-left corners for non-overlapping rectangles (a rectangle that does not fit is dropped)."""
    placed: list[tuple[int, int, int, int]] = []
    corners = []
    for w, h in sizes:
        for _ in range(tries):
            x, y = int(rng.integers(0, max(1, canvas[0] - w))), int(rng.integers(0, max(1, canvas[1] - h)))
            if all(x + w + 8 < a or a + c + 8 < x or y + h + 8 < b or b + d + 8 < y for a, b, c, d in placed):
                placed.append((x, y, w, h))
                corners.append((x, y))
                break
        else:
            corners.append((-1, -1))
    return corners


def compose_scene(cards: list[tuple[Image.Image, str]], rng: np.random.Generator,
                  size: tuple[int, int] = (1024, 768), strength: float = 1.0,
                  logo_fraction: tuple[float, float] = (0.12, 0.35)) -> Scene:
    """Paste printed logos on a packaging panel and photograph the whole.

    Args:
        cards: ``(printed logo, label)`` pairs, e.g. from :func:`pipeline.training.synth.logo_card`.
        rng: Source of randomness (seed it for reproducible scenes).
        size: ``(width, height)`` of the photo.
        strength: 0: a flat scan; 1: the full range of photo distortions.
        logo_fraction: Range of a logo's longer side as a share of the photo's shorter side.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> card = Image.new("RGB", (120, 60), "red")
        >>> scene = compose_scene([(card, "red")], np.random.default_rng(0), size=(320, 240), strength=0)
        >>> scene.image.size, scene.labels, round(scene.boxes[0].width / scene.boxes[0].height)
        ((320, 240), ['red'], 2)
    """
    torch.manual_seed(int(rng.integers(0, 2**31)))
    panel = packaging(size, rng)
    scaled = []
    for card, label in cards:
        side = rng.uniform(*logo_fraction) * min(size)
        factor = side / max(card.size)
        scaled.append((card.resize((max(8, int(card.width * factor)), max(8, int(card.height * factor))),
                                   Image.LANCZOS), label))
    corners = _place([c.size for c, _ in scaled], size, rng)
    boxes, labels = [], []
    for (card, label), (x, y) in zip(scaled, corners, strict=True):
        if x < 0:
            continue
        panel.paste(card, (x, y))
        boxes.append([x, y, x + card.width, y + card.height])
        labels.append(label)
    if strength <= 0:
        return Scene(panel, [Box.from_sequence(b) for b in boxes], labels)
    fill = _colour(rng, 30, 200)
    distort = v2.Compose([
        v2.RandomPerspective(distortion_scale=0.3 * strength, p=0.7, fill=fill),
        v2.RandomRotation(degrees=8 * strength, fill=fill),
        v2.ColorJitter(brightness=0.35 * strength, contrast=0.35 * strength, saturation=0.4 * strength,
                       hue=0.05 * strength),
    ])
    image, moved = distort(tv_tensors.Image(v2.functional.pil_to_tensor(panel)),
                           tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                    format="XYXY", canvas_size=(size[1], size[0])))
    photo = v2.functional.to_pil_image(image)
    photo = _glare(photo, rng, strength)
    if rng.random() < 0.5 * strength:
        photo = photo.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5) * strength))
    array = np.asarray(photo).astype(np.float32)
    array += rng.normal(0, rng.uniform(0, 8) * strength, array.shape)
    photo = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    photo = v2.JPEG(quality=(max(30, int(90 - 50 * strength)), 95))(photo)
    kept = [(Box(*b).clip(*size), label) for b, label in zip(moved.tolist(), labels, strict=True)]
    return Scene(photo, [b for b, _ in kept if b is not None], [label for b, label in kept if b is not None])


def _glare(photo: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """A soft bright spot, as a lamp on glossy film gives."""
    if rng.random() > 0.4 * strength:
        return photo
    width, height = photo.size
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    radius = rng.uniform(0.1, 0.4) * max(width, height)
    yy, xx = np.mgrid[0:height, 0:width]
    spot = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius ** 2))[..., None] * rng.uniform(0.3, 0.8)
    array = np.asarray(photo).astype(np.float32)
    return Image.fromarray(np.clip(array + spot * (255 - array), 0, 255).astype(np.uint8))


def paste_marks(photo: Image.Image, boxes: list[Box], marks: list[Image.Image], rng: np.random.Generator,
                logo_fraction: tuple[float, float] = (0.05, 0.3)) -> tuple[Image.Image, list[Box]]:
    """Print more logos onto a real photo, clear of the logos it already shows (copy-paste augmentation).

    Why: a detector trained on the photos of five brands learns those five marks; the same photos carrying
    hundreds of other marks, in their light and on their surfaces, teach "a logo" (Ghiasi et al., 2021, Simple
    Copy-Paste). Each mark is tilted a little, takes the light of the spot it lands on (its colours scaled by
    that region's brightness) and the photo's softness, so its edges are not the giveaway; a mark whose ink
    hardly differs from that spot is left out (its box would ask the model to find a blank).

    Args:
        photo: The real photo (RGB).
        boxes: Its logos' boxes; a mark never covers more than a tenth of one.
        marks: RGBA marks (e.g. :func:`pipeline.training.synth.render_icon`, or a printed card made RGBA).
        logo_fraction: Range of a mark's longer side as a share of the photo's shorter side.

    Returns:
        The photo with the marks printed on it, and every box: the old ones, then one per mark placed.

    Example:
        >>> import numpy as np
        >>> mark = Image.new("RGBA", (40, 20), (200, 0, 0, 255))
        >>> photo, boxes = paste_marks(Image.new("RGB", (320, 240), "white"), [], [mark], np.random.default_rng(0))
        >>> len(boxes), 0.04 * 240 <= max(boxes[0].width, boxes[0].height) <= 0.35 * 240
        (1, True)
    """
    photo = photo.copy()
    placed = list(boxes)
    colour = np.asarray(photo, dtype=np.float32)
    for mark in marks:
        side = rng.uniform(*logo_fraction) * min(photo.size)
        factor = side / max(mark.size)
        mark = mark.resize((max(6, int(mark.width * factor)), max(6, int(mark.height * factor))), Image.LANCZOS)
        mark = mark.rotate(float(rng.uniform(-12, 12)), resample=Image.BICUBIC, expand=True)
        bbox = mark.getchannel("A").getbbox()
        if bbox is None or mark.width >= photo.width or mark.height >= photo.height:
            continue
        mark = mark.crop(bbox)
        for _ in range(30):
            x = int(rng.integers(0, photo.width - mark.width))
            y = int(rng.integers(0, photo.height - mark.height))
            box = Box(x, y, x + mark.width, y + mark.height)
            if all(box.overlap(other) < 0.1 * min(box.area, other.area) for other in placed):
                break
        else:
            continue
        spot = colour[y:y + mark.height, x:x + mark.width].reshape(-1, 3).mean(axis=0)
        alpha = np.asarray(mark.getchannel("A"), dtype=np.float32)[..., None] / 255
        ink = (np.asarray(mark.convert("RGB"), dtype=np.float32) * alpha).reshape(-1, 3).sum(0) / max(alpha.sum(), 1)
        if np.linalg.norm(ink - spot) < 60:  # white ink on a white spot: a box around nothing teaches nothing
            continue
        rgb = np.asarray(mark.convert("RGB"), dtype=np.float32) * (0.55 + 0.6 * float(spot.mean()) / 255)
        shaded = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).convert("RGBA")
        shaded.putalpha(mark.getchannel("A").filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.8)))))
        photo.paste(shaded, (x, y), shaded)
        placed.append(box)
    return photo, placed

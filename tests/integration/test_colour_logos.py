"""Shape first: the colour embedder names a mark by its shape in any colourway (inverted, monochrome, white on a
colour), and tells apart two marks printed in the same colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from pipeline.demo import DEMO_LOGOS
from pipeline.embedders import TRAINED_EMBEDDER, create_embedder
from tests.conftest import FIXTURES

FIXTURES = FIXTURES / "colour-logos"
PAPER = (255, 255, 255)


def marks() -> dict[str, Image.Image]:
    """The four devicon colour logos (an evaluation-only collection) in their own colours, on white."""
    return {p.stem: Image.open(p).convert("RGB") for p in sorted(FIXTURES.glob("*.png"))}


def silhouette(image: Image.Image, ink: tuple[int, int, int], paper: tuple[int, int, int]) -> Image.Image:
    """The mark in one ink on a plain paper: whatever differs from the white around it is ink."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    coverage = np.clip((255.0 - grey) / 255.0 * 3.0, 0.0, 1.0)[..., None]  # light tints count as ink too
    out = coverage * np.array(ink, np.float32) + (1 - coverage) * np.array(paper, np.float32)
    return Image.fromarray(out.round().astype(np.uint8))


COLOURWAYS = {
    "inverted": ImageOps.invert,
    "grey": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "black on white": lambda image: silhouette(image, (20, 20, 20), PAPER),
    "white on red": lambda image: silhouette(image, PAPER, (200, 16, 46)),
    "navy on cream": lambda image: silhouette(image, (16, 32, 96), (245, 236, 210)),
}


def photographed(image: Image.Image, seed: int) -> Image.Image:
    """Another view of a logo: smaller, turned, on a light surround, through JPEG."""
    rng = np.random.default_rng(seed)
    small = image.resize((int(image.width * 0.7), int(image.height * 0.7)), Image.BILINEAR)
    turned = small.rotate(float(rng.uniform(-8, 8)), expand=True, fillcolor=(235, 232, 225))
    canvas = Image.new("RGB", (turned.width + 16, turned.height + 12), (235, 232, 225))
    canvas.paste(turned, (8, 6))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def drawn(shape: str, ink: tuple[int, int, int], paper: tuple[int, int, int] = PAPER) -> Image.Image:
    """A simple mark drawn in code: a ring, a star or a chevron, in ``ink`` on ``paper``."""
    image = Image.new("RGB", (128, 128), paper)
    draw = ImageDraw.Draw(image)
    if shape == "ring":
        draw.ellipse((10, 10, 118, 118), fill=ink)
        draw.ellipse((38, 38, 90, 90), fill=paper)
    elif shape == "star":
        points = [(64 + r * np.sin(a), 64 - r * np.cos(a))
                  for n in range(10) for a, r in [(n * np.pi / 5, 56 if n % 2 == 0 else 22)]]
        draw.polygon(points, fill=ink)
    else:
        draw.polygon([(12, 20), (64, 72), (116, 20), (116, 56), (64, 108), (12, 56)], fill=ink)
    return image


@pytest.fixture(scope="module")
def embedder():
    return create_embedder(TRAINED_EMBEDDER)


def _nearest(embedder, queries: list[Image.Image], gallery: list[Image.Image]) -> list[int]:
    return (embedder.embed(queries) @ embedder.embed(gallery).T).argmax(axis=1).tolist()


def test_colour_logos_are_named_by_their_nearest_logo(embedder):
    names, gallery = zip(*marks().items(), strict=True)
    for seed in range(2):
        assert _nearest(embedder, [photographed(image, seed) for image in gallery], list(gallery)) == \
            list(range(len(names)))


@pytest.mark.parametrize("way", COLOURWAYS)
def test_a_mark_in_another_colourway_is_nearest_to_itself(embedder, way):
    """A can prints the mark white on red, its cap in one ink, a dark pack inverts it: still one brand."""
    names, gallery = zip(*marks().items(), strict=True)
    reprinted = [photographed(COLOURWAYS[way](image), 3) for image in gallery]
    assert [names[i] for i in _nearest(embedder, reprinted, list(gallery))] == list(names)


def test_a_mark_and_its_reprints_are_each_others_nearest(embedder):
    """Among every mark in every colourway, each logo's nearest other logo is the same mark in another colourway."""
    images, owners = [], []
    for name, image in marks().items():
        for way in (None, *COLOURWAYS):
            images.append(image if way is None else COLOURWAYS[way](image))
            owners.append(name)
    vectors = embedder.embed(images)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2.0)
    nearest = similarity.argmax(axis=1)
    assert [owners[i] for i in nearest] == owners


def _on_white(path) -> Image.Image:
    image = Image.open(path).convert("RGBA")
    paper = Image.new("RGBA", image.size, PAPER + (255,))
    paper.alpha_composite(image)
    return paper.convert("RGB")


def _ink(image: Image.Image) -> tuple[int, int, int]:
    """A mark's main colour: the mean of the pixels farthest from white."""
    pixels = np.asarray(image, np.float32).reshape(-1, 3)
    far = np.abs(pixels - 255).sum(axis=1)
    return tuple(int(v) for v in pixels[far >= 0.5 * far.max()].mean(axis=0))


REPRINTS = {
    "white on its colour": lambda image: silhouette(image, PAPER, _ink(image)),
    "inverted": ImageOps.invert,
    "black on white": lambda image: silhouette(image, (20, 20, 20), PAPER),
}


@pytest.mark.parametrize("way", REPRINTS)
def test_the_bundled_brands_and_their_reprints_are_each_others_nearest(embedder, way):
    """The demo store's case (every mark in two colourways): among the 43 bundled brands' clean marks and the same
    marks reprinted, each logo's nearest other logo is its own twin. (Fit: these brands' marks or their
    photographs are what the embedder trained on; the bundled model failed 9 of 86 inverted, 7 in black.)"""
    brands = sorted(p for p in DEMO_LOGOS.iterdir() if p.is_dir())
    marks_ = [_on_white(next(p for p in brand.iterdir() if p.suffix == ".png")) for brand in brands]
    vectors = embedder.embed(marks_ + [REPRINTS[way](mark) for mark in marks_])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -2.0)
    owner = [brand.name for brand in brands] * 2
    strays = sorted({owner[i] for i, j in enumerate(similarity.argmax(axis=1)) if owner[j] != owner[i]})
    assert len(strays) <= 1, strays


def test_two_marks_in_the_same_colours_are_not_each_others_nearest(embedder):
    """Same ink, same paper, other shapes: shape decides, so each mark's nearest is itself in other colours."""
    red, blue, green = (200, 16, 46), (20, 60, 170), (0, 120, 60)
    for shape, other in (("ring", "star"), ("star", "chevron"), ("chevron", "ring")):
        gallery = [drawn(other, red), drawn(shape, blue, (250, 240, 200)), drawn(other, green)]
        query = photographed(drawn(shape, red), 7)
        assert _nearest(embedder, [query], gallery) == [1], (shape, other)

"""The colour embedder names colour logos, including two that differ only in their colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.embedders import GREY_EMBEDDER, TRAINED_EMBEDDER, create_embedder
from tests.conftest import FIXTURES

FIXTURES = FIXTURES / "colour-logos"


def _luma(colour: tuple[int, int, int]) -> int:
    return Image.new("RGB", (1, 1), colour).convert("L").getpixel((0, 0))


# Each pair draws the same shape in colours of the same grey level: only colour tells them apart.
PAIRS = {
    "tricolour": (((205, 30, 40), (30, 120, 60)), ((30, 81, 230), (210, 0, 200))),
}
# A known limit: a plain two-colour disc in other hues reads as one shape reprinted in another colour
# scheme, which the embedder learnt to ignore (packaging prints one brand in many schemes).
RING = (((230, 120, 0), (0, 60, 160)), ((20, 182, 230), (150, 10, 20)))


def _draw(shape: str, colours: tuple[tuple[int, int, int], ...]) -> Image.Image:
    image = Image.new("RGB", (150, 100) if shape == "tricolour" else (120, 120), "white")
    draw = ImageDraw.Draw(image)
    first, second = colours
    if shape == "tricolour":
        draw.rectangle((0, 0, 49, 99), fill=first)
        draw.rectangle((100, 0, 149, 99), fill=second)
        draw.rectangle((0, 0, 149, 99), outline=(60, 60, 60), width=2)
    else:
        draw.ellipse((5, 5, 115, 115), fill=first)
        draw.ellipse((32, 32, 88, 88), fill=second)
    return image


def logos() -> dict[str, Image.Image]:
    drawn = {f"{shape}-{n}": _draw(shape, colours) for shape, pair in PAIRS.items()
             for n, colours in enumerate(pair)}
    drawn["ring-0"] = _draw("ring", RING[0])  # one ring: its shape alone sets it apart from the others
    return {**drawn, **{p.stem: Image.open(p).convert("RGB") for p in sorted(FIXTURES.glob("*.png"))}}


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


def test_the_pairs_differ_only_in_colour():
    for first, second in [*PAIRS.values(), RING]:
        assert [_luma(c) for c in first] == [_luma(c) for c in second]
        assert first != second


@pytest.fixture(scope="module")
def colour_embedder():
    return create_embedder(TRAINED_EMBEDDER)


def test_colour_logos_are_named_by_their_nearest_logo(colour_embedder):
    names, gallery = zip(*logos().items(), strict=True)
    gallery_vectors = colour_embedder.embed(list(gallery))
    for seed in range(2):
        queries = colour_embedder.embed([photographed(image, seed) for image in gallery])
        nearest = (queries @ gallery_vectors.T).argmax(axis=1)
        assert [names[i] for i in nearest] == list(names)


def test_logos_that_differ_only_in_colour_are_apart_in_colour_alike_in_grey(colour_embedder):
    grey = create_embedder(GREY_EMBEDDER)
    for shape in PAIRS:
        pair = [_draw(shape, colours) for colours in PAIRS[shape]]
        seen_grey = grey.embed(pair)
        # the grey model sees two identical images: it cannot tell them apart
        assert seen_grey[0] @ seen_grey[1] > 0.999
        seen_colour = colour_embedder.embed(pair)
        views = colour_embedder.embed([photographed(image, 5) for image in pair])
        assert views[0] @ seen_colour[0] > views[0] @ seen_colour[1]
        assert views[1] @ seen_colour[1] > views[1] @ seen_colour[0]
        assert seen_colour[0] @ seen_colour[1] < 0.95


def test_a_two_colour_ring_in_other_hues_is_told_apart(colour_embedder):
    # the first colour model read this pair as one mark in two print schemes (a strict xfail until the
    # fine-tune with class-mean centres and typeset marks told them apart)
    pair = [_draw("ring", colours) for colours in RING]
    seen = colour_embedder.embed(pair)
    views = colour_embedder.embed([photographed(image, 5) for image in pair])
    assert views[1] @ seen[1] > views[1] @ seen[0] and seen[0] @ seen[1] < 0.95

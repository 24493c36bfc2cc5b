"""Real logos, rendered and "photographed": data for the demo, benchmarks and training.

Logos come from the npm package ``simple-icons`` (CC0 brand SVGs), fetched with
npm into a cache folder (the npm registry is reachable; nothing else is). A logo
is rendered with cairosvg in one of the ways packaging prints it (brand colour
on white, white on brand colour, dark on a tint...), then distorted the way a
phone photo of a package distorts it: rotation, perspective, colour shifts,
blur, noise, JPEG, occlusion, and a cluttered surround.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torchvision.transforms import v2

from pipeline.images import brand_ink

SIMPLE_ICONS_VERSION = "16.37.0"


def split_of(slug: str) -> str:
    """Which split a simple-icons logo belongs to, fixed by a hash of its slug.

    ``"test"`` (a tenth): never used in any training; the retrieval and detector
    benchmarks draw their logos from it. ``"val"`` (another tenth): held out from
    training to tune and pick checkpoints. ``"train"``: the rest.
    """
    bucket = zlib.crc32(slug.encode()) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def held_out(slug: str) -> bool:
    """True for the benchmark logos that no model here ever trains on."""
    return split_of(slug) == "test"


@dataclass(frozen=True)
class Icon:
    """One logo: an SVG with a name and a brand colour (hex).

    A ``multicolour`` logo keeps the colours of its own SVG when printed; a
    single-colour glyph (simple-icons, Font Awesome) is inked in a scheme's colour.
    """

    slug: str
    title: str
    hex: str
    svg: str
    multicolour: bool = False


FONTAWESOME_VERSION = "6.7.2"
DEVICON_VERSION = "1.2.68"


def fetch_npm_package(name: str, version: str, cache_dir: Path, marker: str) -> Path:
    """The npm package ``name@version`` unpacked under ``cache_dir`` (``npm pack`` once; ``marker`` proves it)."""
    target = Path(cache_dir) / f"{name.replace('@', '').replace('/', '-')}-{version}"
    if (target / marker).exists():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is needed once to fetch the {name} package")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        Path(tmp, "package").rename(target)
    return target


def fetch_simple_icons(cache_dir: Path, version: str = SIMPLE_ICONS_VERSION) -> Path:
    """The unpacked ``simple-icons`` npm package under ``cache_dir``."""
    return fetch_npm_package("simple-icons", version, cache_dir, "data/simple-icons.json")


def load_fontawesome_brands(cache_dir: Path, version: str = FONTAWESOME_VERSION) -> list[Icon]:
    """Font Awesome Free's brand icons (CC BY 4.0), sorted by name.

    Reserved for independent evaluation: no training, tuning or demo data uses them.
    They carry no brand colour, so the "brand" colour schemes print them dark grey.
    """
    package = fetch_npm_package("@fortawesome/fontawesome-free", version, cache_dir, "svgs/brands/apple.svg")
    return [Icon(path.stem, path.stem.replace("-", " ").title(), "333333", path.read_text())
            for path in sorted((package / "svgs" / "brands").glob("*.svg"))]


def load_iconify_set(name: str, version: str, cache_dir: Path) -> list[Icon]:
    """Every icon of an ``@iconify-json/NAME`` npm package (SVG bodies in one ``icons.json``), kept in its colours."""
    package = fetch_npm_package(f"@iconify-json/{name}", version, cache_dir, "icons.json")
    data = json.loads((package / "icons.json").read_text())
    icons = []
    for slug, entry in sorted(data["icons"].items()):
        width, height = entry.get("width", data.get("width", 16)), entry.get("height", data.get("height", 16))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="{entry.get("left", 0)} {entry.get("top", 0)} '
               f'{width} {height}">{entry["body"]}</svg>')
        icons.append(Icon(slug, slug.replace("-", " ").title(), "333333", svg, multicolour=True))
    return icons


# Colourful non-brand graphics for training (npm ``@iconify-json/NAME`` versions): emoji, flags, colour icons.
COLOUR_SETS = {"noto": "1.2.9", "twemoji": "1.2.5", "openmoji": "1.2.29", "fluent-emoji-flat": "1.2.6",
               "flag": "1.2.12", "circle-flags": "1.2.11", "flat-color-icons": "1.2.3"}


def load_colour_graphics(cache_dir: Path, per_set: int = 0) -> list[Icon]:
    """Emoji, flags and colour icons of :data:`COLOUR_SETS`, kept in their own colours.

    They teach an embedder what multi-colour marks look like and that colour can be
    all that tells two of them apart (flags). Slugs are ``SET:NAME``; an emoji drawn by
    several sets is kept from the first set only, so two classes never show the same
    subject; square (``-1x1``) flag variants are dropped for their ``-4x3`` twins.

    Args:
        cache_dir: Where the npm packages are unpacked.
        per_set: Keep at most this many icons of each set, spread over it (0: all).
    """
    seen: set[str] = set()
    graphics = []
    for name, version in COLOUR_SETS.items():
        icons = [i for i in load_iconify_set(name, version, cache_dir)
                 if i.slug not in seen and not i.slug.endswith("-1x1")]
        if per_set and len(icons) > per_set:
            icons = icons[:: len(icons) // per_set][:per_set]
        seen.update(i.slug for i in icons)
        graphics += [Icon(f"{name}:{i.slug}", i.title, i.hex, i.svg, multicolour=True) for i in icons]
    return graphics


def load_devicon(cache_dir: Path, version: str = DEVICON_VERSION) -> list[Icon]:
    """The colour logos of dev tools and languages in ``@iconify-json/devicon`` (MIT), glyphs and wordmarks.

    Reserved for independent evaluation: brand logos of another collection and
    style (multi-colour marks and wordmarks), never used in training or tuning.
    """
    return load_iconify_set("devicon", version, cache_dir)


def load_icons(package_dir: Path) -> list[Icon]:
    """Every icon of an unpacked simple-icons package, sorted by slug."""
    meta = json.loads((package_dir / "data" / "simple-icons.json").read_text())
    icons = []
    for entry in meta:
        svg = package_dir / "icons" / f"{entry['slug']}.svg"
        if svg.exists():
            icons.append(Icon(entry["slug"], entry["title"], entry["hex"], svg.read_text()))
    return sorted(icons, key=lambda icon: icon.slug)


def render_icon(icon: Icon, size: int, colour: str) -> Image.Image:
    """The icon as an RGBA image ``size`` pixels on its longer side, filled with ``colour`` (hex)."""
    import cairosvg

    svg = icon.svg if icon.multicolour else icon.svg.replace("<svg ", f'<svg fill="#{colour.lstrip("#")}" ', 1)
    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=size, output_height=size)
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    bbox = image.getchannel("A").getbbox()
    return image.crop(bbox) if bbox else image


def _random_colour(rng: np.random.Generator, light: bool | None = None) -> tuple[int, int, int]:
    low, high = (170, 256) if light else (0, 110) if light is False else (0, 256)
    return tuple(int(v) for v in rng.integers(low, high, 3))


def logo_card(icon: Icon, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """The logo printed on a plain panel, in one of the colour schemes packaging uses.

    A multicolour logo keeps its own colours, on white, on a light tint or on a dark panel.
    """
    if icon.multicolour:
        paper = rng.choice(3, p=[0.5, 0.3, 0.2])
        background = [(255, 255, 255), _random_colour(rng, light=True), _random_colour(rng, light=False)][paper]
        return _card(render_icon(icon, size, "000000"), background, size, rng)
    scheme = rng.choice(["brand_on_white", "white_on_brand", "dark_on_tint", "brand_on_tint", "light_on_dark"],
                        p=[0.35, 0.2, 0.15, 0.15, 0.15])
    brand = brand_ink(icon.hex)
    ink, paper = {
        "brand_on_white": (brand, (255, 255, 255)),
        "white_on_brand": ("FFFFFF", tuple(int(brand[i:i + 2], 16) for i in (0, 2, 4))),
        "dark_on_tint": ("%02X%02X%02X" % _random_colour(rng, light=False), _random_colour(rng, light=True)),
        "brand_on_tint": (brand, _random_colour(rng, light=True)),
        "light_on_dark": ("%02X%02X%02X" % _random_colour(rng, light=True), _random_colour(rng, light=False)),
    }[str(scheme)]
    return _card(render_icon(icon, size, ink), paper, size, rng)


def _card(mark: Image.Image, paper: tuple[int, int, int], size: int, rng: np.random.Generator) -> Image.Image:
    pad = int(size * rng.uniform(0.08, 0.3))
    card = Image.new("RGB", (mark.width + 2 * pad, mark.height + 2 * pad), paper)
    card.paste(mark, (pad, pad), mark)
    return card


def clutter(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A busy packaging-like surface: gradient, shapes, stripes and text."""
    width, height = size
    top, bottom = np.array(_random_colour(rng)), np.array(_random_colour(rng))
    ramp = np.linspace(0, 1, height)[:, None, None]
    canvas = Image.fromarray(((1 - ramp) * top + ramp * bottom).repeat(width, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(5, width // 2 + 6), y0 + rng.integers(5, height // 2 + 6)
        shape = rng.choice(["rect", "ellipse", "line"])
        fill = _random_colour(rng)
        if shape == "rect":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif shape == "ellipse":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=int(rng.integers(1, 6)))
    for _ in range(int(rng.integers(1, 5))):
        font = ImageFont.load_default(size=int(rng.integers(8, 22)))
        text = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 %g")) for _ in range(12))
        draw.text((int(rng.integers(0, width)), int(rng.integers(0, height))), text, fill=_random_colour(rng),
                  font=font)
    return canvas


def photograph(card: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """A "phone photo" crop of ``card``: the logo on a cluttered surround, distorted.

    Args:
        card: The printed logo (from :func:`logo_card`).
        rng: Source of randomness (seed it for reproducible data).
        strength: 0 gives the card untouched; 1 the full range of distortions.
    """
    if strength <= 0:
        return card.copy()
    torch.manual_seed(int(rng.integers(0, 2**31)))
    margin = int(max(card.size) * rng.uniform(0.1, 0.5) * strength)
    scene = clutter((card.width + 2 * margin, card.height + 2 * margin), rng)
    scene.paste(card, (margin, margin))
    # occlusion: a sticker, a finger, a fold
    if rng.random() < 0.4 * strength:
        w, h = card.width * rng.uniform(0.1, 0.35), card.height * rng.uniform(0.1, 0.35)
        x = margin + rng.uniform(-0.1, 0.9) * card.width
        y = margin + rng.uniform(-0.1, 0.9) * card.height
        ImageDraw.Draw(scene).rectangle((x, y, x + w, y + h), fill=_random_colour(rng))
    distort = v2.Compose([
        v2.RandomRotation(degrees=20 * strength, fill=tuple(int(v) for v in rng.integers(0, 256, 3))),
        v2.RandomPerspective(distortion_scale=0.35 * strength, p=0.8, fill=tuple(int(v) for v in rng.integers(0, 256, 3))),
        v2.ColorJitter(brightness=0.4 * strength, contrast=0.4 * strength, saturation=0.5 * strength,
                       hue=0.08 * strength),
    ])
    scene = distort(scene)
    # crop around the logo, loosely, as a detector or a person would
    jitter = lambda: rng.uniform(-0.12, 0.12) * strength  # noqa: E731
    left = margin + jitter() * card.width - 0.05 * card.width
    top = margin + jitter() * card.height - 0.05 * card.height
    right = margin + card.width * (1.05 + jitter())
    bottom = margin + card.height * (1.05 + jitter())
    shot = scene.crop((int(max(0, left)), int(max(0, top)), int(min(scene.width, right)),
                       int(min(scene.height, bottom))))
    scale = rng.uniform(0.35, 1.0) if strength >= 0.5 else 1.0  # distant or close shot
    shot = shot.resize((max(16, int(shot.width * scale)), max(16, int(shot.height * scale))), Image.BILINEAR)
    if rng.random() < 0.6 * strength:
        shot = shot.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6) * strength))
    array = np.asarray(shot).astype(np.float32)
    array += rng.normal(0, rng.uniform(0, 10) * strength, array.shape)
    shot = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return v2.JPEG(quality=(max(15, int(90 - 60 * strength)), 95))(shot)

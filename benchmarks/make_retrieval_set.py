"""Generate the retrieval benchmark: photographed crops of real logos, gallery/query split.

Logos are simple-icons brands of the held-out ``test`` split (``pipeline.training.synth.split_of``:
no model here trains or tunes on them) that are not among the bundled demo logos. Every
sample is an independent rendering (its own colour scheme) "photographed" with
rotation, perspective, colour jitter, blur, noise, JPEG, occlusion and a
cluttered surround (see ``pipeline.training.synth``).

    python benchmarks/make_retrieval_set.py --out benchmarks/out/retrieval
    -> OUT/gallery/<brand>/{0,1,2}.png and OUT/query/<brand>/{0,1}.png

``--collection fontawesome-brands`` draws the logos from Font Awesome Free's
brand icons instead, and ``--collection devicon`` from the colour logos of
``@iconify-json/devicon`` (multi-colour marks and wordmarks, printed in their own
colours): other collections, reserved for independent evaluation (never used
in training, tuning or the demo).

``--colourways`` prints every query in another colourway than the gallery's (the mark in one ink on a
light or dark panel, white on a colour, or the gallery's own printing inverted or in grey), as packaging
reprints one mark (``--collection devicon --colourways`` -> ``retrieval-devicon-colourways``): it asks
whether one mark in other colours is still one brand.

``--collection real-drinks --dataset DIR`` crops real photos instead: the gallery is
``--gallery`` boxes per brand from the dataset's ``val`` split, the queries are every
box of its ``test`` split (never trained on), cut exactly at the annotated box.
real-drinks is the public GitHub repository hxtruong6/brand-detection (MIT); its
README in ``../shared/datasets/real-drinks`` gives the split and the caveats.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.datasets import load_yolo  # noqa: E402
from pipeline.demo import DEMO_LOGOS  # noqa: E402
from pipeline.training.synth import (Icon, _card, fetch_simple_icons, held_out, load_devicon,  # noqa: E402
                                     load_fontawesome_brands, load_icons, logo_card, photograph, render_icon)


def demo_slugs() -> set[str]:
    """simple-icons slugs of the bundled demo logos (their clean renders are named SLUG.png)."""
    return {p.stem for p in DEMO_LOGOS.glob("*/*.png")}


COLLECTIONS = ("simple-icons", "fontawesome-brands", "devicon", "real-drinks")
DEFAULT_REAL_DRINKS = ROOT.parent / "shared" / "datasets" / "real-drinks"


def candidates(collection: str, cache: Path) -> list[Icon]:
    """Logos a set may use: held-out simple-icons minus the demo ones, or every logo of another collection."""
    if collection == "fontawesome-brands":
        return load_fontawesome_brands(cache)
    if collection == "devicon":
        return load_devicon(cache)
    excluded = demo_slugs()
    return [icon for icon in load_icons(fetch_simple_icons(cache)) if held_out(icon.slug) and icon.slug not in excluded]


COLOURWAYS = ("one ink on light", "light ink on dark", "white on colour", "inverted", "grey")


def colourway_card(icon: Icon, rng: np.random.Generator, way: str, size: int = 160) -> Image.Image:
    """The logo reprinted in colourway ``way`` (one of :data:`COLOURWAYS`), as packaging reprints a mark: in a
    single ink (a multi-colour mark's parts as tints of it, lighter parts lighter, as a one-colour print
    separates them), or its usual card inverted or in grey."""
    if way in ("inverted", "grey"):
        card = logo_card(icon, rng, size)
        return ImageOps.invert(card) if way == "inverted" else ImageOps.grayscale(card).convert("RGB")
    rendered = render_icon(icon, size, "000000")
    luma = np.asarray(rendered.convert("RGB").convert("L"), np.float32) / 255.0
    strength = np.asarray(rendered.getchannel("A"), np.float32) / 255.0 * (0.25 + 0.75 * (1.0 - luma))
    dark = tuple(int(v) for v in rng.integers(0, 90, 3))
    light = tuple(int(v) for v in rng.integers(200, 256, 3))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink, paper = {"one ink on light": (dark, light), "light ink on dark": (light, dark),
                  "white on colour": ((255, 255, 255), colour)}[way]
    mark = Image.new("RGBA", rendered.size, ink)
    mark.putalpha(Image.fromarray(np.round(strength * 255).astype(np.uint8)))
    return _card(mark, paper, size, rng)


def generate(out: Path, classes: int, gallery: int, queries: int, seed: int, cache: Path,
             collection: str = "simple-icons", colourways: bool = False) -> Path:
    """Write the set under ``out`` (skipped if a set with the same parameters is there); with ``colourways``
    each query is printed in another colourway than the gallery (:func:`colourway_card`)."""
    params = {"classes": classes, "gallery": gallery, "queries": queries, "seed": seed, "v": 3}
    if collection != "simple-icons":
        params["collection"] = collection
    if colourways:
        params["colourways"] = 2  # 2: a multi-colour mark's parts as tints of the one ink
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == params:
        return out
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(seed)
    icons = candidates(collection, cache)
    chosen = [icons[i] for i in sorted(rng.choice(len(icons), size=classes, replace=False))]
    for icon in chosen:
        for split, count in (("gallery", gallery), ("query", queries)):
            folder = out / split / _folder(icon.title)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                card = (colourway_card(icon, rng, COLOURWAYS[int(rng.integers(len(COLOURWAYS)))])
                        if colourways and split == "query" else logo_card(icon, rng))
                photograph(card, rng).save(folder / f"{n}.png")
    manifest.write_text(json.dumps({"params": params, "slugs": [icon.slug for icon in chosen]}, indent=1))
    return out


def generate_photo_crops(out: Path, dataset: Path, gallery: int, seed: int) -> Path:
    """Crops of a YOLO photo dataset: ``gallery`` boxes per class from ``val``, every ``test`` box as a query."""
    if not Path(dataset).is_dir():
        raise SystemExit(f"{dataset}: no such dataset folder. real-drinks is the public GitHub repository"
                         " hxtruong6/brand-detection (MIT), prepared as ../shared/datasets/real-drinks/README.md says")
    params = {"dataset": str(Path(dataset).resolve()), "gallery": gallery, "seed": seed, "v": 1}
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == params:
        return out
    shutil.rmtree(out, ignore_errors=True)
    data = load_yolo(Path(dataset), skip_empty_boxes=True)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for split in ("val", "test"):
        boxes = [(photo.path, a) for photo in data.split(split).photos for a in photo.annotations]
        if split == "val":
            chosen = []
            for label in data.classes:
                mine = [b for b in boxes if b[1].label == label]
                chosen += [mine[i] for i in sorted(rng.choice(len(mine), min(gallery, len(mine)), replace=False))]
            boxes = chosen
        folder = out / ("gallery" if split == "val" else "query")
        for n, (path, annotation) in enumerate(boxes):
            target = folder / _folder(annotation.label) / f"{path.stem}-{n}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as photo:
                box = annotation.box
                photo.convert("RGB").crop((int(box.x0), int(box.y0), int(box.x1), int(box.y1))).save(target)
        counts[folder.name] = len(boxes)
    manifest.write_text(json.dumps({"params": params, "crops": counts}, indent=1))
    return out


def _folder(title: str) -> str:
    return "".join(c if c.isalnum() or c in " .-_&+'" else "_" for c in title).strip() or "_"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", choices=COLLECTIONS, default="simple-icons")
    parser.add_argument("--out", type=Path, help="default: benchmarks/out/retrieval[-COLLECTION]")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--gallery", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--colourways", action="store_true", help="queries in other colourways than the gallery")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_REAL_DRINKS, help="real-drinks: the dataset folder")
    args = parser.parse_args()
    out = args.out or default_out(args.collection, args.colourways)
    if args.collection == "real-drinks":
        print(generate_photo_crops(out, args.dataset, args.gallery, args.seed))
    else:
        print(generate(out, args.classes, args.gallery, args.queries, args.seed, args.cache, args.collection,
                       args.colourways))


def default_out(collection: str, colourways: bool = False) -> Path:
    """Where a collection's set goes unless told otherwise."""
    name = "retrieval" if collection == "simple-icons" else f"retrieval-{collection}"
    return ROOT / "benchmarks" / "out" / (name + ("-colourways" if colourways else ""))


if __name__ == "__main__":
    main()

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
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.datasets import load_yolo  # noqa: E402
from pipeline.demo import DEMO_LOGOS  # noqa: E402
from pipeline.training.synth import (Icon, fetch_simple_icons, held_out, load_devicon,  # noqa: E402
                                     load_fontawesome_brands, load_icons, logo_card, photograph)


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


def generate(out: Path, classes: int, gallery: int, queries: int, seed: int, cache: Path,
             collection: str = "simple-icons") -> Path:
    """Write the set under ``out`` (skipped if a set with the same parameters is there)."""
    params = {"classes": classes, "gallery": gallery, "queries": queries, "seed": seed, "v": 3}
    if collection != "simple-icons":
        params["collection"] = collection
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
                photograph(logo_card(icon, rng), rng).save(folder / f"{n}.png")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_REAL_DRINKS, help="real-drinks: the dataset folder")
    args = parser.parse_args()
    out = args.out or default_out(args.collection)
    if args.collection == "real-drinks":
        print(generate_photo_crops(out, args.dataset, args.gallery, args.seed))
    else:
        print(generate(out, args.classes, args.gallery, args.queries, args.seed, args.cache, args.collection))


def default_out(collection: str) -> Path:
    """Where a collection's set goes unless told otherwise."""
    name = "retrieval" if collection == "simple-icons" else f"retrieval-{collection}"
    return ROOT / "benchmarks" / "out" / name


if __name__ == "__main__":
    main()

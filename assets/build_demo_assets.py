"""Regenerate the bundled demo logos (``assets/logos``) and example photos (``assets/examples``).

    python assets/build_demo_assets.py

Logos come from npm ``simple-icons`` (CC0). Each brand gets its clean printed
logo plus three "photographed" variants (seeded, so the output is
reproducible); the folder name is the label. These brands are excluded from the
retrieval benchmark, which uses other logos.

The example photos are product-packaging scenes with some of these brands
printed on them, for the app's "example photos"; ``examples.json`` records
where each logo is (tests drag boxes there).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline.training.scenes import compose_scene  # noqa: E402
from pipeline.training.synth import Icon, fetch_simple_icons, load_icons, logo_card, photograph  # noqa: E402

BRANDS = [
    "cocacola", "mcdonalds", "starbucks", "burgerking", "kfc", "redbull", "carrefour", "lidl", "aldinord",
    "aldisud", "tesco", "target", "unilever", "tacobell", "monster", "coop", "ikea", "auchan", "intermarche",
    "edeka", "rewe", "asda", "morrisons", "hellofresh", "deliveroo", "ubereats", "justeat", "doordash",
    "chupachups", "nike", "adidas", "puma", "apple", "samsung", "google", "shell", "toyota", "bmw",
    "visa", "mastercard", "paypal", "spotify", "netflix",
]
VARIANTS = 3
SIZE = 160
# file name -> (brands printed on it, logo size as a share of the photo's shorter side)
EXAMPLES = {
    "snack-box.jpg": (["cocacola", "lidl", "kfc"], (0.2, 0.3)),
    "coffee-bag.jpg": (["starbucks", "redbull"], (0.25, 0.35)),
    "flyer.jpg": (["carrefour", "tesco", "shell", "nike"], (0.15, 0.25)),
    "close-up.jpg": (["mcdonalds"], (0.75, 0.85)),
}


def build_examples(icons: dict[str, Icon], out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rng = np.random.default_rng(7)
    truth = {}
    for name, (slugs, fraction) in EXAMPLES.items():
        cards = [(logo_card(icons[slug], rng, size=320), icons[slug].title) for slug in slugs]
        scene = compose_scene(cards, rng, size=(1024, 768), strength=0.6, logo_fraction=fraction)
        scene.image.save(out / name, quality=85)
        truth[name] = [{"box": box.to_list(), "label": label} for box, label in zip(scene.boxes, scene.labels)]
    (out / "examples.json").write_text(json.dumps(truth, indent=1) + "\n")


def main() -> None:
    icons = {icon.slug: icon for icon in load_icons(fetch_simple_icons(HERE.parent / ".cache"))}
    missing = [slug for slug in BRANDS if slug not in icons]
    if missing:
        raise SystemExit(f"not in simple-icons: {missing}")
    build_examples(icons, HERE / "examples")
    out = HERE / "logos"
    shutil.rmtree(out, ignore_errors=True)
    rng = np.random.default_rng(2026)
    for slug in BRANDS:
        icon = icons[slug]
        folder = out / icon.title.replace("/", "-")
        folder.mkdir(parents=True)
        card = logo_card(icon, rng, size=SIZE)
        card.save(folder / f"{slug}.png", optimize=True)
        for n in range(VARIANTS):
            shot = photograph(logo_card(icon, rng, size=SIZE), rng, strength=0.6)
            shot.thumbnail((SIZE, SIZE))
            shot.save(folder / f"{slug}-photo{n}.jpg", quality=85)
    print(f"{len(BRANDS)} brands x {VARIANTS + 1} images in {out}; {len(EXAMPLES)} example photos")


if __name__ == "__main__":
    main()

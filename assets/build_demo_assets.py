"""Regenerate the bundled demo logos in ``assets/logos`` from npm ``simple-icons`` (CC0).

    python assets/build_demo_assets.py

Each brand gets its clean printed logo plus three "photographed" variants
(seeded, so the output is reproducible); the folder name is the label. These
brands are excluded from the retrieval benchmark, which uses other logos.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pipeline.synth import fetch_simple_icons, load_icons, logo_card, photograph  # noqa: E402

BRANDS = [
    "cocacola", "mcdonalds", "starbucks", "burgerking", "kfc", "redbull", "carrefour", "lidl", "aldinord",
    "aldisud", "tesco", "target", "unilever", "tacobell", "monster", "coop", "ikea", "auchan", "intermarche",
    "edeka", "rewe", "asda", "morrisons", "hellofresh", "deliveroo", "ubereats", "justeat", "doordash",
    "chupachups", "nike", "adidas", "puma", "apple", "samsung", "google", "shell", "toyota", "bmw",
    "visa", "mastercard", "paypal", "spotify", "netflix",
]
VARIANTS = 3
SIZE = 160


def main() -> None:
    icons = {icon.slug: icon for icon in load_icons(fetch_simple_icons(HERE.parent / ".cache"))}
    missing = [slug for slug in BRANDS if slug not in icons]
    if missing:
        raise SystemExit(f"not in simple-icons: {missing}")
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
    print(f"{len(BRANDS)} brands x {VARIANTS + 1} images in {out}")


if __name__ == "__main__":
    main()

"""The map at scale: UMAP fit and transform times, and the figure's payload.

    python benchmarks/map_umap.py [--sizes 10000,100000] [--dim 1280]

For each size, a store of unit vectors in 2,000 clusters (``dim``-d, like
EfficientNet-Lite0's 1,280-d features) is built in a temporary folder; the
map is fitted through :class:`pipeline.projection.LogoMap` (the app's code
path: PCA to 50-d, then UMAP), 1,000 more logos are added and placed with
``transform``, and the figure the Dash page sends is measured. Targets on 2
cores: fit of 100k < 2 min; payload at 100k < 10 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.figures import figure_bytes, map_figure, map_frame  # noqa: E402
from pipeline.projection import LogoMap  # noqa: E402
from pipeline.store import LogoStore, NewLogo  # noqa: E402
from pipeline.types import LabelSource  # noqa: E402


def vectors(n: int, dim: int, rng: np.random.Generator, clusters: int = 2000) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.7, size=(n, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def fill(store: LogoStore, n: int, dim: int, rng: np.random.Generator) -> None:
    for start in range(0, n, 20_000):
        size = min(20_000, n - start)
        labels = [None if rng.random() < 0.3 else f"brand {rng.integers(0, 2000)}" for _ in range(size)]
        logos = [NewLogo(label=label, label_source=LabelSource.HUMAN if label else None) for label in labels]
        store.add(logos, vectors(size, dim, rng), "benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'logos':>8} {'fit s':>8} {'place 1k s':>11} {'payload MB':>11}")
    for n in [int(v) for v in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as data:
            store = LogoStore(data)
            fill(store, n, args.dim, rng)
            logo_map = LogoMap(store, Path(data) / "map")
            started = time.perf_counter()
            logo_map.fit()
            fit = time.perf_counter() - started
            fill(store, 1000, args.dim, rng)
            started = time.perf_counter()
            points = logo_map.points()
            place = time.perf_counter() - started
            payload = figure_bytes(map_figure(map_frame(points.ids, points.xy, store.label_frame())))
            print(f"{n:>8} {fit:>8.1f} {place:>11.1f} {payload / 1e6:>11.2f}", flush=True)
            store.close()


if __name__ == "__main__":
    main()

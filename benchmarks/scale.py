"""Scale: a store of N clustered vectors, built and searched the way the app does it; one JSON line.

    python benchmarks/scale.py --n 100000 [--backends annoy,milvus] [--search-k 20000,40000] [--json] [--skip-map]

N unit vectors of 256-d (the embedder's size) in tight clusters of ~20 (logos of
one brand), a third of them labelled, go in through the store's bulk path
(``LogoStore.add`` in batches, vectors appended to the memory-mapped file), then:

- ``add_s``: the adds; ``build_s``: ``LogoIndex.rebuild`` (Annoy, 50 trees; or the other ``--backends``,
  each measured the same way and listed under ``backends``; the top-level index figures are the first's);
- ``recall@10``: against exact search, for 200 queries near stored logos
  (a stored vector plus noise), through ``LogoIndex.search`` as the API calls it;
  ``p50_ms`` / ``p95_ms`` of those searches; with ``--search-k``, the same for the
  same Annoy trees searched at each of those ``search_k`` (under ``search_k``);
- ``health_s``: the cluster-health neighbour table (a seeded sample of 20,000
  logos past that size, as the app computes it in the background); ``health_report_s``:
  the report made from it (labels read, unlabelled clusters found on the map; no map with
  ``--skip-map``), also made
  in the background after logos change, or on the first read after labels change;
  ``health_read_ms``: what each later page load pays for it;
- ``map_fit_s``: the UMAP map (fitted on a sample of 50,000, the rest placed with
  ``transform``); ``map_payload_mb``: the figure the dashboard sends (a sample of
  200,000 points on the density of all past that); ``map_zoom_s``,
  ``map_zoom_points`` and ``map_zoom_payload_mb``: a zoom onto a tenth of the
  map's width, served as the map's callback serves it (every logo in view);
- ``rss_gb``: the process's peak resident memory; ``disk_gb``: the data folder.

Targets at 1M on 2 cores (issue: Open Food Facts scale): recall@10 >= 0.95,
p50 <= 10 ms, build <= 3 min, RSS <= 6 GB, health <= 2 min, map fit <= 5 min.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Settings  # noqa: E402
from pipeline.index import LogoIndex
from pipeline.vector_backends import IndexConfig  # noqa: E402
from pipeline.service import LogoService  # noqa: E402
from pipeline.store import NewLogo  # noqa: E402
from pipeline.types import LabelSource  # noqa: E402

DIM = 256
MODEL = "scale-benchmark"


def clustered(n: int, rng: np.random.Generator, per_cluster: int = 20) -> np.ndarray:
    clusters = max(1, n // per_cluster)
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + rng.normal(scale=0.35, size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def folder_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**30


def searched(index: LogoIndex, queries: np.ndarray, exact_ids: np.ndarray) -> dict[str, float]:
    """recall@10 against exact search and the search latency percentiles, through ``LogoIndex.search``."""
    index.search(queries[0], 10, MODEL)  # the index files are opened by the first search: not timed
    hits, times = 0, []
    for query, truth in zip(queries, exact_ids, strict=True):
        began = time.perf_counter()
        found = index.search(query, 10, MODEL)
        times.append(time.perf_counter() - began)
        hits += len({i for i, _ in found} & set(truth.tolist()))
    p50, p95 = np.percentile(np.array(times) * 1e3, [50, 95])
    return {"recall@10": round(hits / (10 * len(queries)), 4), "p50_ms": round(float(p50), 2),
            "p95_ms": round(float(p95), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backends", default="annoy", help="index backends to measure, comma-separated")
    parser.add_argument("--search-k", default="",
                        help="more Annoy search_k values to measure recall and latency at, comma-separated")
    parser.add_argument("--skip-map", action="store_true", help="leave out the map fit (the slowest part)")
    parser.add_argument("--json", action="store_true", help="one JSON line only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {"n": args.n, "dim": DIM}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        data = Path(tmp)
        settings = Settings(data_dir=data, index_backend="annoy", detector="whole-image")
        service = LogoService(settings)
        store = service._parts.store
        started = time.perf_counter()
        batch = 50_000
        for start in range(0, args.n, batch):
            vectors = clustered(min(batch, args.n - start), rng)
            logos = [NewLogo(label=f"brand{(start + i) // 60}" if (start + i) % 3 == 0 else None,
                             label_source=LabelSource.HUMAN) for i in range(len(vectors))]
            store.add(logos, vectors, MODEL)
        figures["add_s"] = round(time.perf_counter() - started, 1)

        picked = rng.choice(args.n, args.queries, replace=False) + 1  # ids start at 1
        queries = store.vectors(picked.tolist()) + rng.normal(scale=0.05, size=(args.queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = np.full((args.queries, 10), -np.inf, np.float32)
        exact_ids = np.zeros((args.queries, 10), np.int64)
        for ids, vectors in store.iter_vectors(batch=100_000):
            sims = queries @ vectors.T
            merged = np.concatenate([exact, sims], axis=1)
            merged_ids = np.concatenate([exact_ids, np.broadcast_to(ids, sims.shape)], axis=1)
            top = np.argsort(-merged, axis=1)[:, :10]
            exact, exact_ids = np.take_along_axis(merged, top, 1), np.take_along_axis(merged_ids, top, 1)

        backends: dict[str, dict[str, float]] = {}
        for backend in args.backends.split(","):
            index = LogoIndex(store, data / f"index-{backend}", IndexConfig(backend, settings.n_trees,
                                                                            settings.search_k))
            started = time.perf_counter()
            index.rebuild()
            measured = {"build_s": round(time.perf_counter() - started, 1), **searched(index, queries, exact_ids)}
            if backend == "annoy" and args.search_k:  # the same trees, searched deeper
                measured["search_k"] = {
                    str(k): searched(LogoIndex(store, data / "index-annoy", IndexConfig("annoy", settings.n_trees, k)),
                                     queries, exact_ids) for k in map(int, args.search_k.split(","))}
            backends[backend] = measured
            if len(backends) == 1:
                service._parts.index = index  # cluster health searches the first backend, as the app would
        figures.update(next(iter(backends.values())))
        figures["backends"] = backends

        started = time.perf_counter()
        table = service.insight.neighbour_table()
        figures["health_s"] = round(time.perf_counter() - started, 1)
        figures["health_logos_searched"] = len(table.table)

        if not args.skip_map:
            from dashboard.figures import figure_bytes, map_figure, map_frame

            started = time.perf_counter()
            service._parts.map.fit()
            figures["map_fit_s"] = round(time.perf_counter() - started, 1)
            points = service._parts.map.points()
            frame = map_frame(points.ids, points.xy, store.label_frame(), settings.map_points)
            figures["map_payload_mb"] = round(figure_bytes(map_figure(frame)) / 1e6, 2)
            # a zoom as the map's callback serves it (labels read, points in view kept, figure built and
            # serialised) onto a box a tenth of the map's width around a stored logo
            centre, size = points.xy[len(points) // 2], np.ptp(points.xy, axis=0) / 20
            started = time.perf_counter()
            view = (centre[0] - size[0], centre[0] + size[0], centre[1] - size[1], centre[1] + size[1])
            zoomed = map_frame(points.ids, points.xy, store.label_frame(), settings.map_points, view=view)
            zoom_bytes = figure_bytes(map_figure(zoomed))
            figures["map_zoom_s"] = round(time.perf_counter() - started, 2)
            figures["map_zoom_points"] = len(zoomed.data)
            figures["map_zoom_payload_mb"] = round(zoom_bytes / 1e6, 2)
        started = time.perf_counter()
        service.insight.cluster_health()  # the report: purity, suspects, unlabelled clusters on the map
        figures["health_report_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        service.insight.cluster_health(wait=False)  # what every later visitor pays until something changes
        figures["health_read_ms"] = round((time.perf_counter() - started) * 1e3, 1)
        figures["rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        figures["disk_gb"] = round(folder_gb(data), 2)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

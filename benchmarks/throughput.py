"""Embedding throughput: crops/s from encoded files to vectors (decode + preprocess + network).

    python benchmarks/throughput.py [--crops 1000] [--runtimes onnxruntime,torch]

Uses the retrieval set's photographed crops (generated if missing). Target: >= 60
crops/s on 2 CPU cores with the default embedder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.make_retrieval_set import ROOT, generate  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.embedders import create_embedder  # noqa: E402
from pipeline.images import load_image  # noqa: E402
from pipeline.importing import image_files  # noqa: E402
from pipeline.util import chunked  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=1000)
    parser.add_argument("--embedder", default=Settings().embedder)
    parser.add_argument("--runtimes", default="onnxruntime,torch")
    parser.add_argument("--batch-size", type=int, default=Settings().batch_size)
    args = parser.parse_args()
    data = generate(ROOT / "benchmarks" / "out" / "retrieval", 200, 3, 2, 0, ROOT / ".cache")
    files = list(image_files(data))
    files = (files * (args.crops // len(files) + 1))[: args.crops]
    print(f"{len(files)} crops, embedder {args.embedder}, batch {args.batch_size}, {os.cpu_count()} cpu cores")
    for runtime in args.runtimes.split(","):
        embedder = create_embedder(args.embedder, runtime=runtime, batch_size=args.batch_size)
        embedder.embed([load_image(f) for f in files[:16]])  # warm-up
        started = time.perf_counter()
        for chunk in chunked(files, 64):
            embedder.embed([load_image(path) for path in chunk])
        seconds = time.perf_counter() - started
        print(f"{runtime:<12} {len(files) / seconds:7.1f} crops/s  ({seconds:.1f} s)")


if __name__ == "__main__":
    main()

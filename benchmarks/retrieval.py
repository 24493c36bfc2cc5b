"""Retrieval benchmark: top-1 and recall@5 of kNN labels, through the CLI's ``evaluate``.

    python benchmarks/retrieval.py [--embedders efficientnet-lite0-avg,efficientnet-lite0-logo]

Generates the set first if needed (benchmarks/make_retrieval_set.py), then runs
``python -m pipeline evaluate GALLERY QUERY --json`` once per embedder and
prints the figures side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.make_retrieval_set import COLLECTIONS, ROOT, default_out, generate  # noqa: E402


# average pooling, GeM, the ImageNet multi-stage variant and the fine-tuned default, side by side
COMPARED = ("efficientnet-lite0-avg", "efficientnet-lite0", "efficientnet-lite0-ms", "efficientnet-lite0-logo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", default=",".join(COMPARED))
    parser.add_argument("--collection", choices=COLLECTIONS, default="simple-icons",
                        help="fontawesome-brands: an independent logo collection, never used in training")
    parser.add_argument("--out", type=Path, help="default: benchmarks/out/retrieval[-COLLECTION]")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--gallery", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = generate(args.out or default_out(args.collection), args.classes, args.gallery, args.queries, args.seed,
                    ROOT / ".cache", args.collection)
    print(f"set: {args.collection}, {args.classes} classes x ({args.gallery} gallery, {args.queries} queries),"
          f" seed {args.seed}")
    print(f"{'embedder':<28} {'top1':>6} {'recall@5':>9} {'nn_top1':>8} {'seconds':>8}")
    for name in args.embedders.split(","):
        done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "--embedder", name, "evaluate",
                               str(data / "gallery"), str(data / "query"), "--json"],
                              cwd=ROOT, capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:<28} {figures['top1']:>6.3f} {figures['recall@5']:>9.3f} {figures['nn_top1']:>8.3f}"
              f" {figures['seconds']:>8.1f}")


if __name__ == "__main__":
    main()

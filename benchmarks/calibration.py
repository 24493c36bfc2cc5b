"""Calibration benchmark: is the confidence a probability, and are unseen brands "unknown"?

    python benchmarks/calibration.py [--collections simple-icons,devicon] [--picture reliability.png]

For each collection, the retrieval set of ``benchmarks/make_retrieval_set.py``
(200 brands x 3 gallery + 2 query crops, generated if missing) is split by brand:
half the brands go into a store (their gallery crops, human-labelled), the other
half is held out of it. The store calibrates itself on its own labels
(``LogoService.calibrate``: leave-one-out), then every query crop of both halves
is searched and named. Printed per collection:

- ECE: expected calibration error of P(right) for the kNN winner of every query
  (10 bins; a held-out brand's winner is always wrong);
- precision: share of the labels the system gives (not "unknown") that are right;
- held-out unknown: share of held-out-brand queries answered "unknown";
- known named right: share of known-brand queries given their own label.

Targets (issue: a confidence people can trust): ECE <= 0.05, precision >= 0.95,
held-out unknown >= 0.9. simple-icons test brands are of the embedder's training
style (glyphs, never the same brands); devicon is another collection and style
(multi-colour marks and wordmarks).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.make_retrieval_set import ROOT, default_out, generate  # noqa: E402
from pipeline.calibration import expected_calibration_error, reliability_curve, vote_features  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.embedders import create_embedder  # noqa: E402
from pipeline.importing import import_folder, labelled_files  # noqa: E402
from pipeline.service import LogoService  # noqa: E402


def known(brand: str) -> bool:
    """Half the brands, fixed by a hash of the name: these go into the store; the rest are held out of it.

    (SHA-1, not CRC-32: CRC is linear in the bits, so its parity splits similar names far from half and half.)
    """
    return hashlib.sha1(brand.encode()).digest()[0] % 2 == 0


def run(collection: str, settings: Settings, embedder, seed: int) -> dict[str, object]:
    data = generate(default_out(collection), 200, 3, 2, seed, ROOT / ".cache", collection)
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        gallery = Path(tmp) / "gallery"
        for brand_dir in sorted((data / "gallery").iterdir()):
            if known(brand_dir.name):
                shutil.copytree(brand_dir, gallery / brand_dir.name)
        service = LogoService(settings.replace(data_dir=Path(tmp) / "store"), embedder=embedder)
        import_folder(service, gallery, progress=False)
        service.build_index()
        calibrator = service.calibrate()
        stored = service.count()
        queries = labelled_files(data / "query")
        crops = [service.load(path) for path, _ in queries]
        sizes = service.store.label_counts()
        name = service.namer()
        probabilities, right, given, given_right, held_unknown, known_right = [], [], 0, 0, [], []
        for (_, brand), neighbours in zip(queries, service.search_crops(crops, settings.k), strict=True):
            winner, features = vote_features(neighbours, sizes, settings.machine_label_weight)
            probabilities.append(calibrator.probability(features) if winner else 0.0)
            right.append(winner == brand)
            label = name(neighbours).label
            given += label is not None
            given_right += label is not None and label == brand
            if known(brand):
                known_right.append(label == brand)
            else:
                held_unknown.append(label is None)
    probs, correct = np.array(probabilities), np.array(right, dtype=float)
    return {"collection": collection, "queries": len(queries), "store": stored,
            "ece": expected_calibration_error(probs, correct), "precision": given_right / max(given, 1),
            "held_out_unknown": float(np.mean(held_unknown)), "known_named_right": float(np.mean(known_right)),
            "threshold": calibrator.min_probability, "max_distance": calibrator.max_distance,
            "curve": reliability_curve(probs, correct)}


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.2), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        mean_prob, share_right, counts = result["curve"]
        axis.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
        axis.plot(mean_prob, share_right, marker="o", color="#d62728", label="this store")
        for x, y, n in zip(mean_prob, share_right, counts, strict=True):
            axis.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (calibrated P(right))", ylabel="share right",
                 title=f"{result['collection']}: ECE {result['ece']:.3f}")
        axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", default="simple-icons,devicon")
    parser.add_argument("--embedder", help="default: the app's (LOGOS_EMBEDDER)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture", type=Path, help="save the reliability diagrams to this PNG")
    args = parser.parse_args()
    settings = Settings.from_env(embedder=args.embedder, detector="whole-image", index_backend="exact")
    embedder = create_embedder(settings.embedder)
    results = [run(name, settings, embedder, args.seed) for name in args.collections.split(",")]
    print(f"embedder {settings.embedder}; half the brands of each set held out of the store")
    print(f"{'set':<14} {'store':>6} {'queries':>8} {'ECE':>6} {'precision':>10} {'held-out unknown':>17} "
          f"{'known named right':>18} {'threshold':>10} {'max dist':>9}")
    for r in results:
        print(f"{r['collection']:<14} {r['store']:>6} {r['queries']:>8} {r['ece']:>6.3f} {r['precision']:>10.3f} "
              f"{r['held_out_unknown']:>17.3f} {r['known_named_right']:>18.3f} {r['threshold']:>10.2f} "
              f"{r['max_distance']:>9.3f}")
    if args.picture:
        plot(results, args.picture)
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()

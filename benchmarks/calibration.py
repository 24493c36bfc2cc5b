"""Calibration benchmark: is the confidence a probability, and are unseen brands "unknown"?

    python benchmarks/calibration.py [--collections simple-icons,devicon] [--queries 10] [--picture reliability.png]

For each collection, a set of ``benchmarks/make_retrieval_set.py`` (200 brands x
3 gallery + ``--queries`` query crops, generated if missing under
``benchmarks/out/calibration-COLLECTION``) is split by brand: half the brands go
into a store (their gallery crops, human-labelled), the other half is held out
of it. The store calibrates itself on its own labels
(``LogoService.calibrate``: leave-one-out), then every query crop of both halves
is searched and named. Printed per collection:

- ECE: expected calibration error of P(right) for the kNN winner of every query
  (10 bins; a held-out brand's winner is always wrong);
- precision: share of the labels the system gives (not "unknown") that are right;
- held-out unknown: share of held-out-brand queries answered "unknown";
- known named right: share of known-brand queries given their own label;
- each with its 95 % interval over sets of brands drawn again (bootstrap by brand,
  as a brand's queries are not independent of each other).

Why 10 queries per brand, not the retrieval protocol's 2: ECE sums per-bin gaps,
each measured on the queries in its bin, so sampling noise alone makes it
positive, and with 400 queries the noise is the size of the target. A logistic
calibrator fitted on the queries of half the brands measured ECE 0.06-0.09 on
the other half's 200 devicon queries (2 per brand), and 0.02-0.05 on 1,000 (10
per brand). For the same reason ECE's bootstrap interval lies above the
estimate (each redrawn set adds its own noise): read it as an upper bound.

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

from benchmarks.make_retrieval_set import ROOT, generate  # noqa: E402
from benchmarks.risk_coverage import aurc, cut_at, risk_coverage  # noqa: E402
from pipeline.calibration import expected_calibration_error, reliability_curve, vote_features  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.datasets import load_yolo  # noqa: E402
from pipeline.images import image_sha256  # noqa: E402
from pipeline.store import NewLogo  # noqa: E402
from pipeline.types import LabelSource  # noqa: E402
from pipeline.embedders import create_embedder  # noqa: E402
from pipeline.importing import import_folder, labelled_files  # noqa: E402
from pipeline.service import LogoService  # noqa: E402


def known(brand: str) -> bool:
    """Half the brands, fixed by a hash of the name: these go into the store; the rest are held out of it.

    (SHA-1, not CRC-32: CRC is linear in the bits, so its parity splits similar names far from half and half.)
    """
    return hashlib.sha1(brand.encode()).digest()[0] % 2 == 0


def set_dir(collection: str) -> Path:
    """Not the retrieval set's folder: that one has 2 queries per brand, and a set of other parameters replaces it."""
    return ROOT / "benchmarks" / "out" / f"calibration-{collection}"


def figures(probs: np.ndarray, right: np.ndarray, given: np.ndarray, given_right: np.ndarray,
            known_brand: np.ndarray) -> np.ndarray:
    """ECE, precision, held-out unknown and known named right of a set of queries (see the module docstring)."""
    return np.array([expected_calibration_error(probs, right), given_right.sum() / max(given.sum(), 1),
                     float(np.mean(~given[~known_brand])), float(np.mean(given_right[known_brand]))])


def bootstrap(brands: list[str], columns: tuple[np.ndarray, ...], resamples: int = 1000,
              seed: int = 0) -> np.ndarray:
    """95 % intervals of :func:`figures`, ``(2, 4)``, over ``resamples`` sets of brands drawn with replacement."""
    codes = {brand: code for code, brand in enumerate(sorted(set(brands)))}
    by_brand = [[] for _ in codes]
    for row, brand in enumerate(brands):
        by_brand[codes[brand]].append(row)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([by_brand[b] for b in rng.integers(len(by_brand), size=len(by_brand))])
        draws.append(figures(*(column[rows] for column in columns)))
    return np.quantile(np.array(draws), [0.025, 0.975], axis=0)


def run(collection: str, settings: Settings, embedder, seed: int, queries_per_brand: int) -> dict[str, object]:
    data = generate(set_dir(collection), 200, 3, queries_per_brand, seed, ROOT / ".cache", collection)
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
        name = service.namer()
        probabilities, right, labels, scores = [], [], [], []
        for (_, brand), neighbours in zip(queries, service.search_crops(crops, settings.k), strict=True):
            winner, features = vote_features(neighbours, settings.machine_label_weight)
            probabilities.append(calibrator.probability(features) if winner else 0.0)
            right.append(winner == brand)
            labels.append(name(neighbours).label)
            # what the app can answer: past the distance limit a logo is unknown whatever its probability
            scores.append(probabilities[-1] if features[0] <= calibrator.max_distance else 0.0)
    brands = [brand for _, brand in queries]
    known_brand = np.array([known(b) for b in brands])
    trade_off = {}
    for precision in (0.95, 0.90):
        cut = np.array(scores) >= cut_at(scores, right, precision)
        trade_off[f"coverage@{precision:.2f}"] = float(cut.mean())
        trade_off[f"known named@{precision:.2f}"] = float(np.mean((cut & np.array(right))[known_brand]))
    trade_off["aurc"] = aurc(scores, right)
    columns = (np.array(probabilities), np.array(right, dtype=float), np.array([label is not None for label in labels]),
               np.array([label == brand for label, brand in zip(labels, brands)]), np.array([known(b) for b in brands]))
    ece, precision, held_out_unknown, known_named_right = figures(*columns)
    return {"collection": collection, "queries": len(queries), "store": stored, "ece": ece, "precision": precision,
            "held_out_unknown": held_out_unknown, "known_named_right": known_named_right,
            "interval": bootstrap(brands, columns),
            "threshold": calibrator.min_probability, "max_distance": calibrator.max_distance,
            "curve": reliability_curve(columns[0], columns[1]), "risk_coverage": risk_coverage(scores, right),
            "answered": float(columns[2].mean()), **trade_off}


def run_real_drinks(dataset: Path, settings: Settings, embedder) -> dict[str, object]:
    """Brand-held-out on real photos: each of real-drinks' five brands held out in turn; the store holds the
    train-split crops of the other four (calibrated on them), and the test-split crops of all five are named.

    The true boxes are cut as the app cuts them (its padding). The shipped embedder was trained on the train
    split of these five brands, so this measures the calibration and its open set on real photos, not the
    embedder on new brands.
    """
    photos = load_yolo(dataset, skip_empty_boxes=True)
    service = LogoService(settings.replace(data_dir=Path(tempfile.mkdtemp(prefix="real-drinks-"))), embedder=embedder)
    crops: dict[str, list[tuple[str, str, object]]] = {"train": [], "test": []}  # (label, photo hash, crop)
    for split in crops:
        for photo in photos.split(split).photos:
            image = service.load(photo.path)
            digest = image_sha256(image)
            crops[split] += [(a.label, digest, service.logo_crop(image, a.box)) for a in photo.annotations]
    vectors = {split: embedder.embed([crop for _, _, crop in rows]) for split, rows in crops.items()}
    brands = sorted({label for label, _, _ in crops["train"]})
    columns: list[list] = [[] for _ in range(6)]  # probabilities, right, given, given right, known, scores
    thresholds, limits, stored = [], [], []
    for held_out in brands:
        with tempfile.TemporaryDirectory(prefix="real-drinks-fold-") as tmp:
            fold = LogoService(settings.replace(data_dir=Path(tmp)), embedder=embedder)
            keep = [n for n, (label, _, _) in enumerate(crops["train"]) if label != held_out]
            fold.store.add([NewLogo(label=crops["train"][n][0], label_source=LabelSource.HUMAN,
                                    image_hash=crops["train"][n][1]) for n in keep],
                           vectors["train"][keep], embedder.model_id)
            fold.build_index()
            calibrator = fold.calibrate()
            name = fold.namer()
            for (label, _, _), vector in zip(crops["test"], vectors["test"], strict=True):
                neighbours = fold.search_embedding(vector, settings.k)
                winner, features = vote_features(neighbours, settings.machine_label_weight)
                probability = calibrator.probability(features) if winner else 0.0
                given = name(neighbours).label
                for column, value in zip(columns, (probability, winner == label, given is not None, given == label,
                                                   label != held_out,
                                                   probability if features[0] <= calibrator.max_distance else 0.0)):
                    column.append(value)
            thresholds.append(calibrator.min_probability)
            limits.append(calibrator.max_distance)
            stored.append(fold.count())
    probabilities, right, given, given_right, known_brand, scores = (np.array(c, dtype=float) for c in columns)
    known_brand = known_brand.astype(bool)
    ece, precision, held_out_unknown, known_named_right = figures(probabilities, right, given.astype(bool),
                                                                  given_right.astype(bool), known_brand)
    trade_off = {}
    for target in (0.95, 0.90):
        cut = scores >= cut_at(scores, right, target)
        trade_off[f"coverage@{target:.2f}"] = float(cut.mean())
        trade_off[f"known named@{target:.2f}"] = float(np.mean((cut & (right == 1))[known_brand]))
    trade_off["aurc"] = aurc(scores, right)
    return {"collection": "real-drinks", "queries": len(probabilities), "store": int(np.mean(stored)), "ece": ece,
            "precision": precision, "held_out_unknown": held_out_unknown, "known_named_right": known_named_right,
            "interval": np.full((2, 4), np.nan), "threshold": float(np.mean(thresholds)),
            "max_distance": float(np.mean(limits)), "curve": reliability_curve(probabilities, right),
            "risk_coverage": risk_coverage(scores, right), "answered": float(given.mean()), **trade_off}


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 8.4), squeeze=False)
    for axis, result in zip(axes[1], results, strict=True):
        coverage, risk = result["risk_coverage"]
        axis.plot(coverage, 1 - risk, color="#1f77b4", label="every cut of P(right)")
        axis.axhline(0.95, color="#999", linestyle="--", linewidth=1, label="precision 0.95")
        axis.scatter([result["answered"]], [result["precision"]], color="#d62728", zorder=3,
                     label=f"the store's threshold {result['threshold']:.2f}")
        axis.set(xlim=(0, 1), ylim=(0.5, 1.01), xlabel="coverage (share of queries answered)",
                 ylabel="precision of the answers",
                 title=f"{result['collection']}: coverage {result['coverage@0.95']:.2f} at 0.95, "
                       f"AURC {result['aurc']:.3f}")
        axis.legend(loc="lower left", fontsize=8)
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
    parser.add_argument("--queries", type=int, default=10, help="query crops per brand (default 10)")
    parser.add_argument("--picture", type=Path, help="save the reliability diagrams and risk-coverage curves")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "real-drinks",
                        help="real-drinks, for the collection 'real-drinks' (brand-held-out on real photos)")
    args = parser.parse_args()
    settings = Settings.from_env(embedder=args.embedder, detector="whole-image", index_backend="exact")
    embedder = create_embedder(settings.embedder)
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    results = [run(name, settings, embedder, args.seed, args.queries) for name in args.collections.split(",")
               if name != "real-drinks"]
    if "real-drinks" in args.collections.split(","):
        if not (args.dataset / "labels").is_dir():
            raise SystemExit(f"real-drinks not found at {args.dataset} (the public GitHub repository "
                             "hxtruong6/brand-detection, YOLO layout; see benchmarks/real_photos.py)")
        results.append(run_real_drinks(args.dataset, settings, embedder))
    print(f"embedder {settings.embedder}; half the brands of each set held out of the store; "
          f"[95 % interval, brands drawn again]")
    names = ("ECE", "precision", "held-out unknown", "known named right")
    print(f"{'set':<14} {'store':>6} {'queries':>8} " + " ".join(f"{n:>24}" for n in names)
          + f" {'threshold':>10} {'max dist':>9}")
    for r in results:
        values = (r["ece"], r["precision"], r["held_out_unknown"], r["known_named_right"])
        cells = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(values, *r["interval"], strict=True)]
        print(f"{r['collection']:<14} {r['store']:>6} {r['queries']:>8} " + " ".join(f"{c:>24}" for c in cells)
              + f" {r['threshold']:>10.2f} {r['max_distance']:>9.3f}")
    print("\nrisk-coverage of the calibrated P(right) (0 past the distance limit), every cut: the most queries a "
          "cut answers at precision 0.95 / 0.90, held-out brands' queries included (never right), and the share "
          "of known brands' queries named right there; AURC (lower is better)")
    print(f"{'set':<14} {'coverage@0.95':>14} {'known@0.95':>11} {'coverage@0.90':>14} {'known@0.90':>11} {'AURC':>7}"
          f" {'answered at its threshold':>26}")
    for r in results:
        print(f"{r['collection']:<14} {r['coverage@0.95']:>14.3f} {r['known named@0.95']:>11.3f} "
              f"{r['coverage@0.90']:>14.3f} {r['known named@0.90']:>11.3f} {r['aurc']:>7.3f} {r['answered']:>26.3f}")
    if args.picture:
        plot(results, args.picture)
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()

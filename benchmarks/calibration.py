"""Calibration benchmark: is the confidence a probability, and are unseen brands "unknown"?

    python benchmarks/calibration.py [--collections simple-icons,devicon] [--queries 10] [--picture reliability.png]

For each collection, a set of ``benchmarks/make_retrieval_set.py`` (200 brands x
3 gallery + ``--queries`` query crops, generated if missing under
``benchmarks/out/calibration-COLLECTION``) is split by brand: half the brands go
into a store (their gallery crops, human-labelled), the other half is held out
of it. The store calibrates itself on its own labels
(``service.calibration.fit``: leave-one-out), then every query crop of both halves
is searched and named. Printed per collection:

- ECE: expected calibration error of P(right) for the kNN winner of every query
  (10 bins; a held-out brand's winner is always wrong);
- precision: share of the labels the system gives (not "unknown") that are right;
- held-out unknown: share of held-out-brand queries answered "unknown";
- known named right: share of known-brand queries given their own label;
- each with its 95 % interval over sets of brands drawn again (bootstrap by brand,
  as a brand's queries are not independent of each other).

Then the trade-off over every threshold (``benchmarks/risk_coverage.py``): the most
queries a cut of P(right) answers at precision 0.95 and 0.90 (held-out brands'
queries count: they are never right), the share of known brands' queries named
right there, and AURC. Each store is calibrated twice: with the share of queries
of brands it does not hold assumed (``LOGOS_OPEN_SET_SHARE``), and estimated from
the queries' answers, as a deployment estimates it from the logos it imports
(``pipeline.leave_one_out.open_set_share_of``).

``--read``: each query crop is also read (``pipeline.reading.TextReader``), and
every store answers twice more, with its text heard (``pipeline.text_evidence``:
text that names the vote's guess raises its probability, text that names another
label lowers it, by the likelihood ratios the store measures on a sample of its
own logos' thumbnails): rows "assumed, text" and "estimated, text", to hold
against the vote alone at precision 0.95. The vocabulary is the store's own
labels (real-drinks: with the brand names as printed, ``benchmarks/read.py``),
so held-out brands' text names nothing.

A brand is what a store labels: devicon lists some brands twice, the mark and its wordmark ("Knexjs",
"Knexjs Wordmark", one icon with two layouts in devicon's own catalogue), and here both are the brand
(:func:`benchmarks.read.brand`): its crops go into the store under one label, or both stay out. Counted as
two brands, the store held one layout of a brand that its queries of the other were meant to be unknown
against, and its own leave-one-out answered a brand removed whole with its twin (right by brand, counted
wrong).

``--collections real-drinks`` (with ``--dataset``): brand-held-out on real
photos. Each of the five brands is held out in turn; the store holds the
train-split crops of the other four, and the test-split crops of all five are
named (the shipped embedder was trained on those five brands' train split: this
judges the calibration and its open set on real photos, not the embedder).

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
from benchmarks.read import REAL_DRINKS_NAMES, brand as brand_of  # noqa: E402
from pipeline.reading import TextReader  # noqa: E402
from benchmarks.risk_coverage import aurc, cut_at, risk_coverage  # noqa: E402
from pipeline.thresholds import expected_calibration_error, reliability_curve  # noqa: E402
from pipeline.vote_features import vote_features  # noqa: E402
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


def answers(calibrator, namer, brands: list[str], neighbour_lists: list, k: int,
            machine_weight: float) -> np.ndarray:
    """One row per query: P(right) of the vote's winner, winner right, a label given, the given label right,
    and its score for the risk-coverage curve (P, or 0 past the distance limit: the app cannot answer it)."""
    rows = []
    for brand, neighbours in zip(brands, neighbour_lists, strict=True):
        winner, features = vote_features(neighbours[:k], machine_weight)
        probability = calibrator.probability(features) if winner else 0.0
        label = namer(neighbours).label
        rows.append((probability, winner == brand, label is not None, label == brand,
                     probability if features[0] <= calibrator.max_distance else 0.0))
    return np.array(rows, dtype=float).reshape(-1, 5)


def heard_answers(service, calibrated, brands: list[str], neighbour_lists: list, texts: list[str]) -> np.ndarray:
    """:func:`answers`' rows with each query's text heard, as a search hears it (``Reading.name``): P(right) of
    the winner with its text, whether a label is given, and the score (0 past the distance limit unless the
    text named it)."""
    service.reading.evidence.refresh()  # measured on the store's own logos (a search asks for it in the background)
    namer = service.search.namer(calibrated)
    rows = []
    for brand, neighbours, text in zip(brands, neighbour_lists, texts, strict=True):
        (heard,) = service.reading.name([namer(neighbours)], [text], calibrated)
        inside = neighbours and min((n.distance for n in neighbours if n.label == heard.guess),
                                    default=2.0) <= calibrated.max_distance
        rows.append((heard.guess_probability, heard.guess == brand, heard.label is not None, heard.label == brand,
                     heard.guess_probability if inside or heard.label is not None else 0.0))
    return np.array(rows, dtype=float).reshape(-1, 5)


def summary(rows: np.ndarray, brands: list[str], known_brand: np.ndarray, intervals: bool = True) -> dict[str, object]:
    """Every figure of a set of answered queries (:func:`answers`)."""
    probabilities, right, given, given_right, scores = rows.T
    columns = (probabilities, right, given.astype(bool), given_right.astype(bool), known_brand)
    ece, precision, held_out_unknown, known_named_right = figures(*columns)
    result: dict[str, object] = {"queries": len(brands), "ece": ece, "precision": precision,
                                 "held_out_unknown": held_out_unknown, "known_named_right": known_named_right,
                                 "answered": float(given.mean()), "aurc": aurc(scores, right),
                                 "risk_coverage": risk_coverage(scores, right),
                                 "interval": bootstrap(brands, columns) if intervals else np.full((2, 4), np.nan),
                                 "curve": reliability_curve(probabilities, right)}
    for target in (0.95, 0.90):
        cut = scores >= cut_at(scores, right, target)
        result[f"coverage@{target:.2f}"] = float(cut.mean())
        result[f"known named@{target:.2f}"] = float(np.mean((cut & (right == 1))[known_brand]))
    return result


def _calibration(calibrator) -> dict[str, object]:
    return {"threshold": calibrator.min_probability, "max_distance": calibrator.max_distance,
            "open_set_share": calibrator.stats.get("open_set_share_used", calibrator.stats.get("open_set_share"))}


def traffic_of(neighbour_lists: list, machine_weight: float) -> np.ndarray:
    """The features of the queries' answers: the traffic a store estimates its open-set share from (as
    :func:`pipeline.leave_one_out.traffic_answers` makes it from a store's own unlabelled logos)."""
    return np.array([vote_features(neighbours, machine_weight)[1] for neighbours in neighbour_lists])


def run(collection: str, settings: Settings, embedder, seed: int, queries_per_brand: int,
        read: bool = False) -> list[dict[str, object]]:
    """The set's store calibrated twice: with the open-set share assumed (the setting), and estimated from the
    queries' answers (the traffic a deployment would see: half of them of held-out brands here); with ``read``,
    each answered again with the queries' text heard."""
    data = generate(set_dir(collection), 200, 3, queries_per_brand, seed, ROOT / ".cache", collection)
    results = []
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        gallery = Path(tmp) / "gallery"
        for entry in sorted((data / "gallery").iterdir()):
            folder = gallery / brand_of(entry.name)  # devicon's mark and wordmark: one brand's folder
            if known(folder.name):
                folder.mkdir(parents=True, exist_ok=True)
                for crop in entry.iterdir():
                    shutil.copyfile(crop, folder / f"{entry.name}-{crop.name}")
        service = LogoService(settings.replace(data_dir=Path(tmp) / "store"), embedder=embedder)
        import_folder(service, gallery, progress=False)
        service.maintenance.build_index()
        queries = labelled_files(data / "query")
        crops = [service.search.load(path) for path, _ in queries]
        neighbour_lists = service.search.crops(crops, settings.k)
        texts = TextReader().read(crops) if read else []
        brands = [brand_of(label) for _, label in queries]
        known_brand = np.array([known(b) for b in brands])
        estimated = traffic_of(neighbour_lists, settings.machine_label_weight)
        for how, traffic in (("assumed", None), ("estimated", estimated)):
            calibrator = service.calibration.fit(traffic=traffic)
            rows = answers(calibrator, service.search.namer(), brands, neighbour_lists, settings.k,
                           settings.machine_label_weight)
            results.append({"collection": collection, "open set": how, "store": service.insight.count(),
                            **_calibration(calibrator), **summary(rows, brands, known_brand)})
            if read:
                rows = heard_answers(service, service.search.calibrated(), brands, neighbour_lists, texts)
                results.append({"collection": collection, "open set": f"{how}, text", "store": service.insight.count(),
                                **_calibration(calibrator), **summary(rows, brands, known_brand)})
    return results


def run_real_drinks(dataset: Path, settings: Settings, embedder, read: bool = False) -> list[dict[str, object]]:
    """Brand-held-out on real photos: each of real-drinks' five brands held out in turn; the store holds the
    train-split crops of the other four (calibrated on them), and the test-split crops of all five are named.
    The open-set share assumed, then estimated from the test crops' answers (a fifth of them held out).

    The true boxes are cut as the app cuts them (its padding). The shipped embedder was trained on the train
    split of these five brands, so this measures the calibration and its open set on real photos, not the
    embedder on new brands. Folds are pooled: the figures are over the 5 x test crops.
    """
    photos = load_yolo(dataset, skip_empty_boxes=True)
    loader = LogoService(settings.replace(data_dir=Path(tempfile.mkdtemp(prefix="real-drinks-"))), embedder=embedder)
    crops: dict[str, list[tuple[str, str, object]]] = {"train": [], "test": []}  # (label, photo hash, crop)
    for split in crops:
        for photo in photos.split(split).photos:
            image = loader.search.load(photo.path)
            digest = image_sha256(image)
            crops[split] += [(a.label, digest, loader.ingest.logo_crop(image, a.box)) for a in photo.annotations]
    vectors = {split: embedder.embed([crop for _, _, crop in rows]) for split, rows in crops.items()}
    texts = TextReader().read([crop for _, _, crop in crops["test"]]) if read else []
    brands = sorted({label for label, _, _ in crops["train"]})
    truth = [label for label, _, _ in crops["test"]]
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray, dict[str, object]]]] = {
        how: [] for how in ("assumed", "estimated", *(("assumed, text", "estimated, text") if read else ()))}
    for held_out in brands:
        with tempfile.TemporaryDirectory(prefix="real-drinks-fold-") as tmp:
            fold = LogoService(settings.replace(data_dir=Path(tmp)), embedder=embedder)
            keep = [n for n, (label, _, _) in enumerate(crops["train"]) if label != held_out]
            fold.ingest.crops([NewLogo(crop=crops["train"][n][2], label=crops["train"][n][0],
                                       label_source=LabelSource.HUMAN, image_hash=crops["train"][n][1])
                               for n in keep], compact=False, vectors=vectors["train"][keep])
            if read:  # the brand names as printed; the held-out brand's is not in the store's vocabulary
                fold.labels.import_vocabulary("".join(f"{label}\t{'|'.join(REAL_DRINKS_NAMES[label])}\n"
                                                      for label in REAL_DRINKS_NAMES if label != held_out))
            fold.maintenance.build_index()
            neighbour_lists = [fold.search.embedding(vector, settings.k) for vector in vectors["test"]]
            known_brand = np.array([label != held_out for label in truth])
            for how, traffic in (("assumed", None),
                                 ("estimated", traffic_of(neighbour_lists, settings.machine_label_weight))):
                calibrator = fold.calibration.fit(traffic=traffic)
                rows = answers(calibrator, fold.search.namer(), truth, neighbour_lists, settings.k,
                               settings.machine_label_weight)
                pooled[how].append((rows, known_brand, {**_calibration(calibrator), "store": fold.insight.count()}))
                if read:
                    rows = heard_answers(fold, fold.search.calibrated(), truth, neighbour_lists, texts)
                    pooled[f"{how}, text"].append((rows, known_brand,
                                                   {**_calibration(calibrator), "store": fold.insight.count()}))
    results = []
    for how, folds in pooled.items():  # every fold's answers, each named by its own store's calibration
        means = {key: float(np.mean([meta[key] for _, _, meta in folds])) for key in folds[0][2]}
        results.append({"collection": "real-drinks", "open set": how, **means, "store": int(means["store"]),
                        **summary(np.concatenate([rows for rows, _, _ in folds]), truth * len(folds),
                                  np.concatenate([known for _, known, _ in folds]), intervals=False)})
    return results


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
                 title=f"{result['collection']}, open set {result['open set']} {result['open_set_share']:.2f}\n"
                       f"coverage {result['coverage@0.95']:.2f} at 0.95, AURC {result['aurc']:.3f}")
        axis.legend(loc="lower left", fontsize=8)
    for axis, result in zip(axes[0], results, strict=True):
        mean_prob, share_right, counts = result["curve"]
        axis.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect calibration")
        axis.plot(mean_prob, share_right, marker="o", color="#d62728", label="this store")
        for x, y, n in zip(mean_prob, share_right, counts, strict=True):
            axis.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (calibrated P(right))", ylabel="share right",
                 title=f"{result['collection']}, open set {result['open set']} {result['open_set_share']:.2f}\n"
                       f"ECE {result['ece']:.3f}")
        axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", default="simple-icons,devicon")
    parser.add_argument("--embedder", help="default: the app's (LOGOS_EMBEDDER)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=10, help="query crops per brand (default 10)")
    parser.add_argument("--read", action="store_true", help="also answer with each query's text heard")
    parser.add_argument("--picture", type=Path, help="save the reliability diagrams and risk-coverage curves "
                                                     "(each set's store with the open-set share assumed)")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "real-drinks",
                        help="real-drinks, for the collection 'real-drinks' (brand-held-out on real photos)")
    args = parser.parse_args()
    settings = Settings.from_env(embedder=args.embedder, detector="whole-image", index_backend="exact")
    embedder = create_embedder(settings.embedder)
    if args.queries < 1:
        parser.error("--queries must be at least 1")
    results = [result for name in args.collections.split(",") if name != "real-drinks"
               for result in run(name, settings, embedder, args.seed, args.queries, args.read)]
    if "real-drinks" in args.collections.split(","):
        if not (args.dataset / "labels").is_dir():
            raise SystemExit(f"real-drinks not found at {args.dataset} (the public GitHub repository "
                             "hxtruong6/brand-detection, YOLO layout; see benchmarks/real_photos.py)")
        results += run_real_drinks(args.dataset, settings, embedder, args.read)
    print(f"embedder {settings.embedder}; half the brands of each set held out of the store (real-drinks: one "
          "of five, in turn); [95 % interval, brands drawn again]; open set: the share of queries of brands the "
          "store does not hold, assumed (LOGOS_OPEN_SET_SHARE) or estimated from the queries' answers")
    names = ("ECE", "precision", "held-out unknown", "known named right")
    print(f"{'set':<14} {'open set':<21} {'store':>6} {'queries':>8} " + " ".join(f"{n:>24}" for n in names)
          + f" {'threshold':>10} {'max dist':>9}")
    for r in results:
        values = (r["ece"], r["precision"], r["held_out_unknown"], r["known_named_right"])
        cells = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(values, *r["interval"], strict=True)]
        share = f"{r['open set']} {r['open_set_share']:.2f}"
        print(f"{r['collection']:<14} {share:<21} {r['store']:>6} {r['queries']:>8} "
              + " ".join(f"{c:>24}" for c in cells) + f" {r['threshold']:>10.2f} {r['max_distance']:>9.3f}")
    print("\nrisk-coverage of the calibrated P(right) (0 past the distance limit), every cut: the most queries a "
          "cut answers at precision 0.95 / 0.90, held-out brands' queries included (never right), and the share "
          "of known brands' queries named right there; AURC (lower is better)")
    print(f"{'set':<14} {'open set':<21} {'coverage@0.95':>14} {'known@0.95':>11} {'coverage@0.90':>14} "
          f"{'known@0.90':>11} {'AURC':>7} {'answered at its threshold':>26}")
    for r in results:
        share = f"{r['open set']} {r['open_set_share']:.2f}"
        print(f"{r['collection']:<14} {share:<21} {r['coverage@0.95']:>14.3f} {r['known named@0.95']:>11.3f} "
              f"{r['coverage@0.90']:>14.3f} {r['known named@0.90']:>11.3f} {r['aurc']:>7.3f} {r['answered']:>26.3f}")
    if args.picture:
        plot([r for r in results if r["open set"] == "assumed"], args.picture)  # one column a set
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()

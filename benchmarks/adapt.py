"""Adapters fitted on a store's own labels, measured before one is built into the app (issue 30).

    python benchmarks/adapt.py [--collections devicon,fontawesome-brands,real-drinks]
                               [--dataset ../shared/datasets/real-drinks]

An adapter here is a linear map fitted on the stored logos' vectors and their labels, applied to the stored
vectors and to every query alike, then renormalised: one small matrix product per search, and nothing to
decode again when it is refitted. Two kinds, each at a few strengths:

- **within-class whitening** (WCCN): the inverse square root of the labels' pooled within-label covariance,
  shrunk towards a multiple of the identity by ``alpha``. It shrinks the directions in which one brand's logos
  vary (print, light, colourway) and keeps every dimension, so a brand the store does not hold is not folded
  onto the known ones;
- **LDA** (scikit-learn, eigen solver, ``shrinkage``): the directions that best separate the store's labels,
  at most one fewer than there are labels.

Protocols, on data of another kind than the embedder trained on (except real-drinks' five brands):

- devicon and Font Awesome brands: the calibration benchmark's sets (``benchmarks/calibration.py``: 200
  brands, 3 gallery and 10 query crops each); the store holds the gallery of half the brands (``known``);
- real-drinks, brand-held-out: each brand in turn is left out of the store, which holds the ``train``-split
  crops of the other four; the queries are every ``test``-split crop.

Figures per adapter (the mean over real-drinks' five folds):

- **top-1**: the nearest stored logo's label, for the queries of brands the store holds;
- **coverage@0.95**: the most queries a cut of the nearest distance answers with 95 % of them right (queries of
  brands the store does not hold count, never right; ``benchmarks/risk_coverage.py``);
- **AUROC**: how well the nearest distance tells the queries of held brands from the others, at any threshold;
- **kept right / unknown rejected**: at the store's own distance limit (the 95th percentile of each stored
  logo's distance to its nearest other logo of its label, as the calibration sets it), the known brands'
  queries kept and right, and the other brands' queries turned away;
- **fit ms**: the adapter's fit time on the store's vectors.

The set folders are made once under ``benchmarks/out/`` (``benchmarks/make_retrieval_set.py``); real-drinks is
the public GitHub repository hxtruong6/brand-detection (MIT), prepared as ``../shared/datasets/real-drinks``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.calibration import known, set_dir  # noqa: E402
from benchmarks.make_retrieval_set import ROOT, generate  # noqa: E402
from benchmarks.risk_coverage import coverage_at  # noqa: E402
from pipeline.calibration import distance_limit  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.datasets import load_yolo  # noqa: E402
from pipeline.embedders import Embedder, create_embedder  # noqa: E402
from pipeline.images import crop  # noqa: E402
from pipeline.importing import labelled_files  # noqa: E402
from pipeline.vector_backends import angular_from_cosine  # noqa: E402

# (store vectors, store labels, query vectors, query labels, query's brand held by the store)
Fold = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Fit = Callable[[np.ndarray, np.ndarray], np.ndarray | None]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def within_class_whitening(vectors: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """The WCCN map ``(dim, dim)``: the pooled within-label covariance, shrunk by ``alpha``, to the power -1/2.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.r_[rng.normal([1, 0], [0.01, 0.3], (20, 2)), rng.normal([-1, 0], [0.01, 0.3], (20, 2))]
        >>> m = within_class_whitening(x, np.repeat(["a", "b"], 20), alpha=0.0)
        >>> bool(abs(m[0, 0]) > 10 * abs(m[1, 1]))  # the direction a label varies in is shrunk, the other grown
        True
    """
    centred = np.concatenate([vectors[labels == label] - vectors[labels == label].mean(axis=0)
                              for label in np.unique(labels)])
    covariance = centred.T @ centred / len(centred)
    dim = covariance.shape[0]
    covariance = (1 - alpha) * covariance + alpha * np.trace(covariance) / dim * np.eye(dim)
    values, vectors_ = np.linalg.eigh(covariance)
    return vectors_ @ np.diag(values ** -0.5) @ vectors_.T


def lda(vectors: np.ndarray, labels: np.ndarray, shrinkage: float) -> np.ndarray:
    """scikit-learn's LDA scalings ``(dim, min(labels - 1, dim))``."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    model = LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrinkage).fit(vectors, labels)
    return model.scalings_[:, :min(len(np.unique(labels)) - 1, vectors.shape[1])]


ADAPTERS: dict[str, Fit] = {
    "none": lambda vectors, labels: None,
    "WCCN alpha 0.3": lambda vectors, labels: within_class_whitening(vectors, labels, 0.3),
    "WCCN alpha 0.6": lambda vectors, labels: within_class_whitening(vectors, labels, 0.6),
    "LDA shrinkage 0.5": lambda vectors, labels: lda(vectors, labels, 0.5),
}


def judge(fold: Fold, fit: Fit) -> dict[str, float]:
    """The module docstring's figures of one adapter on one store and its queries."""
    from sklearn.metrics import roc_auc_score

    stored, stored_labels, queries, query_labels, held = fold
    started = time.perf_counter()
    matrix = fit(stored, stored_labels)
    fit_ms = 1000 * (time.perf_counter() - started)
    if matrix is not None:
        stored, queries = unit(stored @ matrix), unit(queries @ matrix)
    cosines = queries @ stored.T
    nearest = cosines.argmax(axis=1)
    distance = angular_from_cosine(cosines.max(axis=1))
    right = held & (stored_labels[nearest] == query_labels)
    own = stored @ stored.T
    np.fill_diagonal(own, -2.0)
    same = np.where(stored_labels[:, None] == stored_labels[None, :], own, -2.0).max(axis=1)
    limit = distance_limit(angular_from_cosine(same[same > -2.0]), 0.95)
    return {"top-1": float(right[held].mean()), "coverage@0.95": coverage_at(-distance, right, 0.95),
            "AUROC": float(roc_auc_score(held, -distance)) if (~held).any() else float("nan"),
            "kept right": float(np.mean((distance[held] <= limit) & right[held])),
            "unknown rejected": float(np.mean(distance[~held] > limit)) if (~held).any() else float("nan"),
            "fit ms": fit_ms}


def collection_fold(embedder: Embedder, collection: str) -> list[Fold]:
    """The calibration benchmark's set of ``collection``: the known half's gallery stored, every query asked."""
    data = generate(set_dir(collection), 200, 3, 10, 0, ROOT / ".cache", collection)

    def vectors(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        files = labelled_files(folder)
        return (embedder.embed([Image.open(path).convert("RGB") for path, _ in files]),
                np.array([label for _, label in files]))

    gallery, gallery_labels = vectors(data / "gallery")
    queries, query_labels = vectors(data / "query")
    stored = np.array([known(label) for label in gallery_labels])
    return [(gallery[stored], gallery_labels[stored], queries, query_labels,
             np.array([known(label) for label in query_labels]))]


def real_drinks_folds(embedder: Embedder, dataset: Path, padding: float) -> list[Fold]:
    """Brand-held-out on real photos: each brand in turn out of a store of the others' ``train`` crops."""
    data = load_yolo(dataset, skip_empty_boxes=True)

    def crops(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for photo in data.split(split).photos:
            with Image.open(photo.path) as image:
                image = image.convert("RGB")
                images += [crop(image, a.box, padding) for a in photo.annotations]
                labels += [a.label for a in photo.annotations]
        return embedder.embed(images), np.array(labels)

    train, train_labels = crops("train")
    test, test_labels = crops("test")
    return [(train[train_labels != brand], train_labels[train_labels != brand], test, test_labels,
             test_labels != brand) for brand in data.classes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", default="devicon,fontawesome-brands,real-drinks")
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "real-drinks")
    args = parser.parse_args()
    collections = [c for c in args.collections.split(",") if c]
    if "real-drinks" in collections and not (args.dataset / "labels").is_dir():
        parser.error(f"{args.dataset}: no YOLO dataset there (real-drinks: the public GitHub repository "
                     "hxtruong6/brand-detection, prepared as ../shared/datasets/real-drinks/README.md says)")
    settings = Settings.from_env()
    embedder = create_embedder(settings.embedder)
    print(f"embedder {settings.embedder}; nearest-neighbour answers; real-drinks: the mean of 5 folds")
    columns = ("top-1", "coverage@0.95", "AUROC", "kept right", "unknown rejected", "fit ms")
    print(f"{'set':<20} {'adapter':<18} " + " ".join(f"{c:>16}" for c in columns))
    for collection in collections:
        folds = (real_drinks_folds(embedder, args.dataset, settings.crop_padding) if collection == "real-drinks"
                 else collection_fold(embedder, collection))
        for name, fit in ADAPTERS.items():
            rows = [judge(fold, fit) for fold in folds]
            means = {c: float(np.nanmean([row[c] for row in rows])) for c in columns}
            print(f"{collection:<20} {name:<18} " + " ".join(f"{means[c]:>16.3f}" for c in columns))


if __name__ == "__main__":
    main()

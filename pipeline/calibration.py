"""Turning the kNN vote into the probability that its label is right, and saying *unknown* for logos not in the store.

Why: the vote share of :mod:`pipeline.knn` is not a probability. It depends on
how many logos a brand has (with four logos per brand and ten voters it can stay
near 0.5 even for a perfect match), and no distance ever rejects a logo that the
store has never seen. Here the store
calibrates itself on its own human labels:

* **Leave-one-out** (:func:`pipeline.leave_one_out.leave_one_out`): every human-labelled logo is
  searched among the other logos, itself and the rest of its photo left out; the
  answer is right when the winner is its label. Each logo is also searched with
  its whole label removed from the gallery: these *open-set* answers can never
  be right, and without them the calibrator would never see a logo from outside
  the index.
* **Calibrator**: logistic regression on a few standardised features of the
  vote (:func:`pipeline.vote_features.vote_features`). Chosen over isotonic regression on one score
  because the features carry complementary evidence (how close the label is,
  how clear of the runner-up, how much of the brand lies nearby); over ``CalibratedClassifierCV`` because a plain
  logistic model *is* a calibrated probability model and needs no second layer.
  Its few coefficients are stored as plain JSON (no pickle, safe to load) and
  evaluated with numpy alone at query time.
* **Open set**: a query is unknown when it is farther from the label it would
  get than labelled logos normally sit from their nearest same-label neighbour
  (:func:`distance_limit`).
* **Thresholds**: as Robotoff does, one probability threshold per label where
  that label has enough leave-one-out answers (:mod:`pipeline.thresholds`), a
  global one elsewhere: the lowest at which the answers given are right the
  target share of the time, as counted or as their calibrated probabilities
  expect,
  and never above the target itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.errors import StoreError
from pipeline.leave_one_out import MIN_SAMPLES, leave_one_out, open_set_share_of
from pipeline.thresholds import (expected_calibration_error, expected_precision_threshold, precision_threshold,
                                 suggest_thresholds)
from pipeline.types import LabelSource, Neighbour, Prediction
from pipeline.util import atomic_write_json
from pipeline.vote_features import FEATURES, NEAREST_SAME, NO_NEIGHBOUR, plain_vote

log = logging.getLogger(__name__)

FORMAT = 1
MIN_TRAFFIC = 100  # answers to its own unlabelled logos a store needs before it estimates its open-set share
MAX_OPEN_SET_SHARE = 0.99  # an estimate of all open set still leaves the closed-set answers some weight
MAX_ECE = 0.05  # a calibration this close to its answers may set the threshold from its own probabilities


def distance_limit(nearest_same: np.ndarray, quantile: float = 0.99) -> float:
    """The open-set rule: farther than this from its label, a query is unknown.

    Args:
        nearest_same: Distance from each labelled logo to its nearest same-label logo (leave-one-out).
        quantile: Share of labelled logos that sit within the limit of their nearest same-label logo.

    Returns:
        The ``quantile`` of ``nearest_same``; 2.0 (rejects nothing) when no label has two logos.
    """
    nearest_same = np.asarray(nearest_same, dtype=np.float64)
    if nearest_same.size == 0:
        return NO_NEIGHBOUR
    return float(min(np.quantile(nearest_same, quantile), NO_NEIGHBOUR))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


@dataclass(frozen=True)
class Calibrator:
    """Features of a vote -> probability that its label is right, for one embedding model.

    Attributes:
        model_id: Embedding model whose distances it was fitted on; another model's are never calibrated by it.
        k: Neighbours per query it was fitted for.
        machine_weight: Weight of machine labels in the vote it was fitted for.
        mean: Per-feature mean used to standardise the features.
        scale: Per-feature standard deviation used to standardise the features.
        coef: Logistic-regression coefficients on the standardised features.
        intercept: Logistic-regression intercept.
        n_samples: Leave-one-out answers it was fitted on.
        max_distance: A query farther than this from its label is unknown (:func:`distance_limit`).
        min_probability: Probability a label needs when it has no own threshold.
        thresholds: Per-label probability needed, overriding ``min_probability``.
        stats: Fit-time numbers (log-loss, Brier score, ECE, counts, time) for reports.
        labels_version: The store's labels when it was fitted (see ``LogoStore.labels_version``), to tell
            when a new fit is due.
    """

    model_id: str
    k: int
    machine_weight: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    n_samples: int
    max_distance: float = NO_NEIGHBOUR
    min_probability: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    stats: Mapping[str, float] = field(default_factory=dict)
    labels_version: str = ""

    @classmethod
    def fit(cls, features: np.ndarray, correct: np.ndarray, *, model_id: str, k: int, machine_weight: float,
            max_distance: float = NO_NEIGHBOUR, weights: np.ndarray | None = None) -> Calibrator:
        """Fit logistic regression (L2, C=1) on standardised features.

        Args:
            features: ``(n, len(FEATURES))`` features of :func:`pipeline.vote_features.vote_features`.
            correct: ``(n,)`` 1 where the answer was right, else 0.
            weights: ``(n,)`` weight of each answer (:meth:`LeaveOneOut.weights`); all 1 when None.
            model_id: Embedding model the features come from.
            k: Neighbours per query the features were computed with.
            machine_weight: Weight of machine labels in the vote.
            max_distance: The open-set limit to store with it.

        Raises:
            StoreError: Fewer than ``MIN_SAMPLES`` answers, or all right or all wrong.
        """
        features = np.asarray(features, dtype=np.float64)
        correct = np.asarray(correct, dtype=np.int64)
        if features.ndim != 2 or features.shape[1] != len(FEATURES) or len(features) != len(correct):
            raise ValueError(f"features must be (n, {len(FEATURES)}) with one correct flag per row")
        n_right = int(correct.sum())
        if len(correct) < MIN_SAMPLES or n_right in (0, len(correct)):
            raise StoreError(f"need at least {MIN_SAMPLES} leave-one-out answers, some right and some wrong, to "
                             f"calibrate; got {len(correct)} with {n_right} right (label more logos, of 2+ labels)")
        weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(features), correct,
                                                              sample_weight=weights)
        calibrator = cls(model_id=model_id, k=k, machine_weight=machine_weight,
                         mean=tuple(scaler.mean_.tolist()), scale=tuple(scaler.scale_.tolist()),
                         coef=tuple(model.coef_[0].tolist()), intercept=float(model.intercept_[0]),
                         n_samples=len(correct), max_distance=max_distance)
        probs = calibrator.probabilities(features)
        clipped = np.clip(probs, 1e-7, 1 - 1e-7)
        stats = {
            "fitted_at": time.time(),
            "right": n_right,
            "wrong": len(correct) - n_right,
            "log_loss": float(-np.average(correct * np.log(clipped) + (1 - correct) * np.log(1 - clipped),
                                          weights=weights)),
            "brier": float(np.average((probs - correct) ** 2, weights=weights)),
            "ece": expected_calibration_error(probs, correct, weights=weights),
        }
        return replace(calibrator, stats=stats)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Probability that each answer is right, in [0, 1]; 0 where no neighbour was labelled.

        Args:
            features: ``(n, len(FEATURES))`` features of :func:`pipeline.vote_features.vote_features`.
        """
        features = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES))
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale) @ np.asarray(self.coef) + self.intercept
        return np.where(features[:, NEAREST_SAME] < NO_NEIGHBOUR, _sigmoid(z), 0.0)

    def probability(self, features: np.ndarray) -> float:
        """Probability that one answer is right (see :meth:`probabilities`)."""
        return float(self.probabilities(features)[0])

    def threshold(self, label: str) -> float:
        """The probability ``label`` needs to be given: its own threshold, else the default."""
        return self.thresholds.get(label, self.min_probability)

    def predict(self, neighbours: Sequence[Neighbour]) -> Prediction:
        """The calibrated answer for a query: like :func:`pipeline.knn.predict_label`, confidence = P(right).

        Unknown (``label=None``, confidence 0) when no neighbour is labelled or the winner's nearest logo is
        farther than ``max_distance``; unknown with its probability when below the label's threshold.
        ``scores`` keeps the vote shares; ``guess`` the winner with its probability, whether given or not.

        Args:
            neighbours: The query's ``k`` nearest logos, labelled or not.
        """
        vote, features = plain_vote(neighbours, self.machine_weight)
        if vote.label is None:
            return Prediction(None, 0.0)
        probability = self.probability(features)
        if features[NEAREST_SAME] > self.max_distance:
            return Prediction(None, 0.0, guess=vote.label, guess_probability=probability)
        if probability < self.threshold(vote.label):
            return Prediction(None, probability, vote.scores, vote.label, probability)
        return Prediction(vote.label, probability, vote.scores, vote.label, probability)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: numbers and names only, safe to load."""
        return {"format": FORMAT, "features": list(FEATURES), **asdict(self),
                "mean": list(self.mean), "scale": list(self.scale), "coef": list(self.coef)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Calibrator:
        """Read :meth:`to_json`'s output.

        Raises:
            StoreError: Another format or feature set, or a malformed value.
        """
        if value.get("format") != FORMAT or tuple(value.get("features", ())) != FEATURES:
            raise StoreError(f"calibration of format {value.get('format')!r} with features {value.get('features')!r}"
                             f" cannot be used; calibrate again")
        try:
            return cls(model_id=str(value["model_id"]), k=int(value["k"]),
                       machine_weight=float(value["machine_weight"]),
                       mean=tuple(float(v) for v in value["mean"]), scale=tuple(float(v) for v in value["scale"]),
                       coef=tuple(float(v) for v in value["coef"]), intercept=float(value["intercept"]),
                       n_samples=int(value["n_samples"]), max_distance=float(value["max_distance"]),
                       min_probability=float(value["min_probability"]),
                       thresholds={str(label): float(t) for label, t in value["thresholds"].items()},
                       stats={str(key): float(v) for key, v in value["stats"].items()},
                       labels_version=str(value.get("labels_version", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"malformed calibration ({exc!r}); calibrate again") from None

    def save(self, path: Path) -> None:
        """Write the calibrator atomically (readers see the old file or the new one)."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path, model_id: str) -> Calibrator | None:
        """The calibrator saved at ``path`` for ``model_id``; None (and a warning) when fitted for another model.

        Raises:
            StoreError: The file is not a calibrator this code can use.
        """
        try:
            value = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"calibration file {path} is not JSON ({exc}); calibrate again") from None
        calibrator = cls.from_json(value)
        if calibrator.model_id != model_id:
            log.warning("ignoring the calibration in %s: fitted for model %s, not %s", path, calibrator.model_id,
                        model_id)
            return None
        return calibrator


def calibrate(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
              sources: Sequence[LabelSource | None], *, model_id: str, k: int = 10, machine_weight: float = 0.5,
              target_precision: float = 0.95, open_set_share: float = 0.5, distance_quantile: float = 0.99,
              photos: Sequence[str | None] | None = None, traffic: np.ndarray | None = None) -> Calibrator:
    """Fit everything from a store's logos: leave-one-out answers, distance limit, calibrator, thresholds.

    Args:
        ids, vectors, labels, sources, k, machine_weight, photos: As for :func:`leave_one_out`.
        model_id: Embedding model of ``vectors``.
        target_precision: Precision the global and per-label thresholds aim at.
        open_set_share: Share of searched logos assumed to be of brands the store does not hold
            (:meth:`LeaveOneOut.weights`): the higher, the more a label must stand out to be given. The
            assumption until the store has traffic to estimate it from.
        distance_quantile: Share of labelled logos within the open-set distance limit (:func:`distance_limit`).
        traffic: Features of answers the store gives to the logos it is asked to name
            (:func:`traffic_answers`); with :data:`MIN_TRAFFIC` or more, their open-set share is estimated
            (:func:`open_set_share_of`) and used instead of ``open_set_share``.

    Raises:
        StoreError: Too few human labels, or answers all right or all wrong.
    """
    data = leave_one_out(ids, vectors, labels, sources, k, machine_weight, photos)
    traffic = np.zeros((0, len(FEATURES))) if traffic is None else np.asarray(traffic, dtype=np.float64)
    share = open_set_share_of(traffic, data) if len(traffic) >= MIN_TRAFFIC else open_set_share
    weights = data.weights(min(share, MAX_OPEN_SET_SHARE))
    max_distance = distance_limit(data.nearest_same, distance_quantile)
    calibrator = Calibrator.fit(data.features, data.correct, model_id=model_id, k=k, machine_weight=machine_weight,
                                max_distance=max_distance, weights=weights)
    kept = data.features[:, NEAREST_SAME] <= max_distance  # answers beyond the limit are never given
    probs = calibrator.probabilities(data.features[kept])
    correct = data.correct[kept]
    # the lowest threshold that the store's answers show reaches the target: counted (with a margin for few
    # answers), or expected from calibrated probabilities; never above the target (answers a calibrated model
    # gives at P >= target are right that often on average)
    shown = precision_threshold(probs, correct, target_precision, weights[kept])
    if shown is None:  # too few answers to show the target with confidence: the best estimate
        shown = precision_threshold(probs, correct, target_precision, weights[kept], z=0.0)
    expected = (expected_precision_threshold(probs, target_precision, weights[kept])
                if calibrator.stats.get("ece", 1.0) <= MAX_ECE else None)
    global_threshold = min(t for t in (shown, expected, target_precision) if t is not None)
    thresholds = suggest_thresholds(probs, correct, [w for w, keep in zip(data.winners, kept) if keep],
                                    target_precision, weights=weights[kept])
    stats = {**calibrator.stats, "open_set": int(data.open_set.sum()), "open_set_share": open_set_share,
             "open_set_share_used": round(float(share), 4), "traffic": len(traffic),
             "target_precision": target_precision, "distance_quantile": distance_quantile}
    return replace(calibrator, min_probability=global_threshold, thresholds=thresholds, stats=stats)

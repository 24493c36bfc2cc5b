"""How a confidence threshold is chosen from calibrated answers, and how calibrated they are.

The global threshold is the lowest at which the answers given are right the target share of the time, as
counted with confidence (:func:`precision_threshold`, a Wilson bound) or as their calibrated probabilities
expect (:func:`expected_precision_threshold`); per-label thresholds where a label has enough answers
(:func:`suggest_thresholds`); the reliability curve and its expected calibration error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

_Z = 1.645  # one-sided 95 % normal quantile


def precision_threshold(probabilities: np.ndarray, correct: np.ndarray, target_precision: float,
                        weights: np.ndarray | None = None, z: float = _Z) -> float | None:
    """A probability threshold as low as the answers allow whose answers are right ``target_precision`` of the
    time, with 95 % confidence; None when no threshold gets there.

    The precision of the answers at or above each threshold (counted by ``weights``) is judged by its Wilson
    score lower bound (one-sided 95 %) over the number of those answers, not by the point estimate: taking
    the lowest threshold where a noisy estimate touches the target picks the threshold where the noise was
    kindest, and a small store's threshold then falls short on new photos. With many answers the bound
    meets the estimate; with few it asks for a margin (20 answers all right bound the precision at 0.88, 60 at
    0.957). ``z=0`` judges by the point estimate instead.

    Every threshold between the lowest answer that keeps the precision and the next answer down gives the
    same answers. When the target itself lies in that gap, it is the threshold: a calibrated probability at
    the target is right that often, and no answer of the store says otherwise. Without this, a store whose
    answers all sit far from one another (right ones near 1, open-set ones near 0: big brands, few of them)
    got the probability of its farthest right answer as threshold, 0.98-0.99 on real photos, and turned
    away new logos at 0.98.

    Example:
        >>> right = np.r_[np.full(40, 0.99), 0.2]  # 40 answers at 0.99, all right; then a wrong one at 0.2
        >>> precision_threshold(right, np.r_[np.ones(40), 0], 0.9)
        0.9
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    sorted_probs = probabilities[order]
    precision = np.cumsum(correct[order] * weights[order]) / np.cumsum(weights[order])
    lower = wilson_lower_bound(precision, np.arange(1, len(order) + 1), z)
    last_of_tie = np.append(sorted_probs[1:] != sorted_probs[:-1], True)  # a threshold takes all equal probs
    good = np.flatnonzero(last_of_tie & (lower >= target_precision))
    if not good.size:
        return None
    lowest_kept = float(sorted_probs[good[-1]])
    next_down = float(sorted_probs[good[-1] + 1]) if good[-1] + 1 < len(sorted_probs) else -math.inf
    return float(target_precision) if next_down < target_precision <= lowest_kept else lowest_kept


def expected_precision_threshold(probabilities: np.ndarray, target_precision: float,
                                 weights: np.ndarray | None = None) -> float | None:
    """The lowest probability threshold at which the answers given are expected to be right
    ``target_precision`` of the time, judged by their calibrated probabilities; None when no answer reaches it.

    Answers given at a threshold t are right, on average, as often as the mean probability of the answers
    at or above t: when the probabilities are calibrated, that mean is the precision the store's answers
    get, without the noise of counting right and wrong ones (which :func:`precision_threshold` must bound,
    and which lifts a small store's threshold towards 1). It is never above ``target_precision`` itself:
    every answer there is at least that likely.

    Example:
        >>> expected_precision_threshold(np.r_[np.full(9, 0.99), 0.6, 0.1], 0.95)  # (9 x 0.99 + 0.6) / 10
        0.6
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    sorted_probs = probabilities[order]
    expected = np.cumsum(sorted_probs * weights[order]) / np.maximum(np.cumsum(weights[order]), 1e-12)
    last_of_tie = np.append(sorted_probs[1:] != sorted_probs[:-1], True)
    good = np.flatnonzero(last_of_tie & (expected >= target_precision))
    return float(sorted_probs[good[-1]]) if good.size else None


def wilson_lower_bound(share: np.ndarray, count: np.ndarray, z: float = _Z) -> np.ndarray:
    """Wilson score lower bound of a proportion ``share`` observed over ``count`` trials (one-sided, ``z``)."""
    share, count = np.asarray(share, dtype=np.float64), np.asarray(count, dtype=np.float64)
    z2 = z * z
    centre = share + z2 / (2 * count)
    spread = z * np.sqrt(np.clip(share * (1 - share), 0, None) / count + z2 / (4 * count * count))
    return (centre - spread) / (1 + z2 / count)


def suggest_thresholds(probabilities: np.ndarray, correct: np.ndarray, winners: Sequence[str],
                       target_precision: float = 0.95, min_samples: int = 10,
                       weights: np.ndarray | None = None) -> dict[str, float]:
    """Per-label probability thresholds, as Robotoff keeps them.

    For each label given as an answer at least ``min_samples`` times, the lowest threshold at which its
    answers are right at least ``target_precision`` of the time. Labels with fewer answers, or that never
    reach the precision, are left out: the global default applies to them.

    Args:
        probabilities: Calibrated probability of each leave-one-out answer.
        correct: 1 where that answer was right.
        winners: The label each answer gave.
        target_precision: Share of a label's given answers that must be right.
        min_samples: Answers a label needs to get its own threshold.
        weights: Weight of each answer in the precision (all 1 when None).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    winners_array = np.asarray(winners, dtype=object)
    thresholds = {}
    for label, count in Counter(winners).items():
        if count < min_samples:
            continue
        given = winners_array == label
        threshold = precision_threshold(probabilities[given], correct[given], target_precision, weights[given])
        if threshold is not None:
            thresholds[label] = threshold
    return thresholds


def reliability_curve(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10,
                      weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, share right, and count (summed weight), of each non-empty equal-width bin.

    A calibrated model has share right == mean probability in every bin (the diagonal of a reliability plot).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    which = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, weights=weights, minlength=bins)
    filled = counts > 0
    mean_prob = np.bincount(which, weights=probabilities * weights, minlength=bins)[filled] / counts[filled]
    share_right = np.bincount(which, weights=correct * weights, minlength=bins)[filled] / counts[filled]
    return mean_prob, share_right, counts[filled]


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10,
                               weights: np.ndarray | None = None) -> float:
    """Count-weighted mean gap between predicted probability and share right over the bins (0 = calibrated)."""
    mean_prob, share_right, counts = reliability_curve(probabilities, correct, bins, weights)
    if counts.sum() == 0:
        return 0.0
    return float(np.sum(counts * np.abs(mean_prob - share_right)) / counts.sum())

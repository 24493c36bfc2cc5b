"""Risk-coverage: what a confidence buys at every cut, not at one threshold.

A threshold that makes answers precise by making them rare is no gain: naming
fewer logos always raises precision. So the benchmarks report the whole
trade-off of a score that ranks answers (the calibrated P(right) of the vote's
winner): answering only the queries whose score is at least t, for every t,
*coverage* is the share of queries answered and *risk* the share of those
answers that are wrong. Read from that curve:

- coverage at precision p: the most queries a cut can answer while at least p
  of its answers are right (the best any threshold on this score could do);
- AURC: the area under the risk-coverage curve (the mean risk over coverages;
  lower is better; 0 when every right answer outranks every wrong one).

Selective classification's usual figures (Geifman & El-Yaniv, 2017).
"""

from __future__ import annotations

import numpy as np


def risk_coverage(scores: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, risk)`` of every cut of ``scores``, highest scores answered first (ties answered together).

    Example:
        >>> coverage, risk = risk_coverage(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 1]))
        >>> coverage.round(2).tolist(), risk.round(2).tolist()
        ([0.33, 0.67, 1.0], [0.0, 0.5, 0.33])
    """
    scores, right = np.asarray(scores, dtype=np.float64), np.asarray(right, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    answered = np.arange(1, len(order) + 1)
    risk = 1.0 - np.cumsum(right[order]) / answered
    last_of_tie = np.append(scores[order][1:] != scores[order][:-1], True)
    return answered[last_of_tie] / len(order), risk[last_of_tie]


def cut_at(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The score threshold of the cut that answers most queries with at least ``precision`` of them right
    (``inf`` when no cut gets there): the threshold an oracle would pick for this score.

    Example:
        >>> cut_at(np.array([0.9, 0.8, 0.7, 0.3]), np.array([1, 1, 0, 1]), 0.95)
        0.8
    """
    scores, right = np.asarray(scores, dtype=np.float64), np.asarray(right, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    precision_so_far = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    good = np.flatnonzero(last_of_tie & (precision_so_far >= precision - 1e-12))
    return float(sorted_scores[good[-1]]) if good.size else float("inf")


def coverage_at(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The largest share of queries a cut of ``scores`` answers with at least ``precision`` of them right.

    Example:
        >>> coverage_at(np.array([0.9, 0.8, 0.7, 0.3]), np.array([1, 1, 0, 1]), 0.95)
        0.5
    """
    return float(np.mean(np.asarray(scores) >= cut_at(scores, right, precision)))


def aurc(scores: np.ndarray, right: np.ndarray) -> float:
    """Area under the risk-coverage curve: the mean risk of the answers over every coverage.

    Example:
        >>> round(aurc(np.array([0.9, 0.8, 0.3]), np.array([1, 0, 1])), 3)  # risks 0, 1/2, 1/3
        0.278
    """
    scores, right = np.asarray(scores, dtype=np.float64), np.asarray(right, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    risk = 1.0 - np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    return float(risk.mean())

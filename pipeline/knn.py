"""Naming a logo from its neighbours: a distance-weighted vote, as Robotoff does.

Each labelled neighbour votes for its label with weight ``1 / distance`` (closer
neighbours count more), multiplied by ``machine_weight`` when the label was set
by a machine, so human labels outrank machine ones. The winner's share of the
vote is the confidence. The answer is *unknown* (``label=None``) when even the
nearest labelled neighbour is too far away, or when the winner's share is below
the threshold of that label (Robotoff keeps one threshold per label).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.types import LabelSource, Neighbour, Prediction

_EPS = 1e-3  # an exact duplicate (distance 0) gets a large but finite weight


@dataclass(frozen=True)
class VoteConfig:
    """Parameters of the vote.

    Attributes:
        max_distance: Nearest labelled neighbour farther than this -> unknown.
        min_confidence: Share of the vote a label needs when it has no own threshold.
        machine_weight: Weight of a machine label relative to a human one.
        thresholds: Per-label share of the vote needed, overriding ``min_confidence``.
    """

    max_distance: float = 0.9
    min_confidence: float = 0.3
    machine_weight: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)


def predict_label(neighbours: Sequence[Neighbour], config: VoteConfig) -> Prediction:
    """The kNN label of a query from its neighbours (any order).

    Example:
        >>> from pipeline.types import Neighbour, LabelSource
        >>> near = [Neighbour(1, "acme", LabelSource.HUMAN, 0.2), Neighbour(2, "zeta", LabelSource.HUMAN, 0.6)]
        >>> p = predict_label(near, VoteConfig())
        >>> p.label, round(p.confidence, 2)
        ('acme', 0.75)
    """
    voters = [n for n in neighbours if n.label]
    if not voters or min(n.distance for n in voters) > config.max_distance:
        return Prediction(None, 0.0)
    scores: dict[str, float] = {}
    for neighbour in voters:
        weight = 1.0 / (neighbour.distance + _EPS)
        if neighbour.label_source is LabelSource.MACHINE:
            weight *= config.machine_weight
        scores[neighbour.label] = scores.get(neighbour.label, 0.0) + weight
    total = sum(scores.values())
    shares = {label: score / total for label, score in sorted(scores.items(), key=lambda kv: -kv[1])}
    best, confidence = next(iter(shares.items()))
    if confidence < config.thresholds.get(best, config.min_confidence):
        return Prediction(None, confidence, shares)
    return Prediction(best, confidence, shares)

"""The distance-weighted kNN vote, including unknown and human-over-machine."""

from __future__ import annotations

import pytest

from pipeline.knn import VoteConfig, predict_label
from pipeline.types import LabelSource, Neighbour

H, M = LabelSource.HUMAN, LabelSource.MACHINE


def n(i: int, label: str | None, distance: float, source: LabelSource | None = H) -> Neighbour:
    return Neighbour(i, label, source if label else None, distance)


def test_closer_neighbours_weigh_more():
    votes = [n(1, "lidl", 0.1), n(2, "aldi", 0.5), n(3, "aldi", 0.5)]
    prediction = predict_label(votes, VoteConfig())
    assert prediction.label == "lidl"
    assert prediction.confidence == pytest.approx((1 / 0.101) / (1 / 0.101 + 2 / 0.501), rel=1e-6)
    assert sum(prediction.scores.values()) == pytest.approx(1.0)


def test_unknown_when_nearest_labelled_is_too_far():
    prediction = predict_label([n(1, None, 0.05), n(2, "lidl", 0.95)], VoteConfig(max_distance=0.9))
    assert prediction.label is None and prediction.confidence == 0.0


def test_unknown_without_labelled_neighbours():
    assert predict_label([n(1, None, 0.1)], VoteConfig()).label is None
    assert predict_label([], VoteConfig()).label is None


def test_per_label_threshold_makes_a_weak_winner_unknown():
    votes = [n(1, "lidl", 0.3), n(2, "aldi", 0.35), n(3, "rewe", 0.4)]
    assert predict_label(votes, VoteConfig()).label == "lidl"
    strict = predict_label(votes, VoteConfig(thresholds={"lidl": 0.9}))
    assert strict.label is None and 0.3 < strict.confidence < 0.5


def test_human_labels_outrank_machine_labels():
    votes = [n(1, "aldi", 0.30, M), n(2, "lidl", 0.32, H)]
    assert predict_label(votes, VoteConfig(machine_weight=0.5)).label == "lidl"
    assert predict_label(votes, VoteConfig(machine_weight=1.0)).label == "aldi"

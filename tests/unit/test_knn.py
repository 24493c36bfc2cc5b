"""The distance-weighted kNN vote, including unknown and human-over-machine."""

from __future__ import annotations

import math

import pytest

from pipeline import shapes
from pipeline.knn import VoteConfig, predict_label
from pipeline.types import LabelSource, Neighbour

H, M = LabelSource.HUMAN, LabelSource.MACHINE


def n(i: int, label: str | None, distance: float, source: LabelSource | None = H) -> Neighbour:
    return Neighbour(i, label, source if label else None, distance)


def test_closer_neighbours_weigh_more():
    close_call = [n(1, "lidl", 0.30), n(2, "aldi", 0.32), n(3, "aldi", 0.32)]
    prediction = predict_label(close_call, VoteConfig(temperature=0.05))
    assert prediction.label == "aldi"  # two logos a hair farther outweigh one
    lidl, aldi = 1.0, 2 * math.exp(-0.02 / 0.05)
    assert prediction.confidence == pytest.approx(aldi / (lidl + aldi), rel=1e-6)
    assert sum(prediction.scores.values()) == pytest.approx(1.0)
    clear = [n(1, "lidl", 0.20), n(2, "aldi", 0.32), n(3, "aldi", 0.32)]
    assert predict_label(clear, VoteConfig(temperature=0.05)).label == "lidl"


def test_a_label_with_many_logos_does_not_outvote_a_much_nearer_one():
    # one nearer logo of a brand with few logos against a crowd of a big brand: with weights 1/distance
    # the crowd (9 x 1/0.45 = 20) beats the match (1/0.25 = 4); the softmax keeps the match
    votes = [n(1, "small", 0.25)] + [n(i, "big", 0.45) for i in range(2, 11)]
    prediction = predict_label(votes, VoteConfig())
    assert prediction.label == "small"
    assert prediction.confidence > 0.8


def test_unknown_when_nearest_labelled_is_too_far():
    prediction = predict_label([n(1, None, 0.05), n(2, "lidl", 0.95)], VoteConfig(max_distance=0.9))
    assert prediction.label is None and prediction.confidence == 0.0


def test_unknown_without_labelled_neighbours():
    assert predict_label([n(1, None, 0.1)], VoteConfig()).label is None
    assert predict_label([], VoteConfig()).label is None


def test_per_label_threshold_makes_a_weak_winner_unknown():
    votes = [n(1, "lidl", 0.3), n(2, "aldi", 0.32), n(3, "rewe", 0.34)]
    assert predict_label(votes, VoteConfig()).label == "lidl"
    strict = predict_label(votes, VoteConfig(thresholds={"lidl": 0.9}))
    assert strict.label is None and 0.4 < strict.confidence < 0.6


def test_human_labels_outrank_machine_labels():
    votes = [n(1, "aldi", 0.30, M), n(2, "lidl", 0.31, H)]
    assert predict_label(votes, VoteConfig(machine_weight=0.5)).label == "lidl"
    assert predict_label(votes, VoteConfig(machine_weight=1.0)).label == "aldi"


def test_an_unknown_logo_keeps_its_best_guess_apart_from_its_label():
    far = predict_label([n(1, None, 0.05), n(2, "lidl", 0.95)], VoteConfig(max_distance=0.9))
    assert (far.label, far.confidence, far.guess) == (None, 0.0, "lidl") and far.guess_probability == 1.0
    votes = [n(1, "lidl", 0.3), n(2, "aldi", 0.32), n(3, "rewe", 0.34)]
    weak = predict_label(votes, VoteConfig(thresholds={"lidl": 0.9}))
    assert weak.label is None and weak.guess == "lidl" and weak.guess_probability == weak.confidence
    named = predict_label(votes, VoteConfig())
    assert named.label == named.guess == "lidl"
    assert predict_label([n(1, None, 0.1)], VoteConfig()).guess is None  # nothing labelled: no guess


def test_the_search_json_adds_a_guess_only_when_the_logo_is_unknown():
    from pipeline.usecases.ingest import proposal
    from pipeline.types import Box, LogoMatch, Prediction

    unknown = LogoMatch(Box(0, 0, 9, 9), Prediction(None, 0.45, {"acme": 0.6}, "acme", 0.45), [])
    assert shapes.logo(unknown)["label"] is None and shapes.logo(unknown)["confidence"] == 0.45
    assert shapes.logo(unknown)["guess"] == {"label": "acme", "probability": 0.45}
    named = LogoMatch(Box(0, 0, 9, 9), Prediction("acme", 0.97, {"acme": 1.0}, "acme", 0.97), [])
    assert "guess" not in shapes.logo(named) and "guess" not in shapes.logo(LogoMatch(Box(0, 0, 9, 9),
                                                                                        Prediction(None, 0.0), []))
    # import-photos proposes the guess when it is likely enough, named or not
    assert proposal(unknown.prediction, 0.4) == ("acme", 0.45, "vote") and proposal(unknown.prediction, 0.5) is None
    assert proposal(Prediction(None, 0.0), 0.0) is None
    # a label its text named (one the vote did not guess: a brand with no stored logo) is proposed as named
    by_text = Prediction("Lavie", 0.96, guess="acme", guess_probability=0.2, named_by="text")
    assert proposal(by_text, 0.5) == ("Lavie", 0.96, "text")


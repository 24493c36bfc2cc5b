"""Calibrated confidence and open-set rejection, on synthetic clusters of unit vectors (no network)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from pipeline import calibration
from pipeline import leave_one_out as loo
from pipeline.calibration import Calibrator, calibrate, distance_limit
from pipeline.leave_one_out import leave_one_out
from pipeline.thresholds import expected_calibration_error, precision_threshold, reliability_curve, suggest_thresholds
from pipeline.vote_features import FEATURES, vote_features
from pipeline.errors import StoreError
from pipeline.vector_backends import angular_from_cosine
from pipeline.knn import VoteConfig, predict_label
from pipeline.types import LabelSource, Neighbour

H, M = LabelSource.HUMAN, LabelSource.MACHINE
DIM, LABELS, K = 64, 40, 10
TIGHT, NOISY = 0.35, 0.9


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def brand_centres(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Brand centres (pairs 0/1 .. 14/15 look alike) and each brand's spread (every 4th is noisy)."""
    centres = unit(rng.normal(size=(LABELS, DIM)))
    for i in range(0, 16, 2):
        centres[i + 1] = unit(centres[i] + 0.9 * unit(rng.normal(size=DIM)))
    return centres, np.where(np.arange(LABELS) % 4 == 3, NOISY, TIGHT)


def photos(rng: np.random.Generator, centres: np.ndarray, spread: np.ndarray, brands: np.ndarray) -> np.ndarray:
    noise = rng.normal(size=(len(brands), DIM)) / np.sqrt(DIM)
    return unit(centres[brands] + spread[brands, None] * noise)


def store(seed: int, per_label: int = 5):
    """A store of LABELS brands x ``per_label`` human-labelled logos: (ids, vectors, labels, sources, centres)."""
    rng = np.random.default_rng(seed)
    centres, spread = brand_centres(rng)
    brands = np.repeat(np.arange(LABELS), per_label)
    labels = [f"brand{b}" for b in brands]
    return np.arange(len(brands)) + 1, photos(rng, centres, spread, brands), labels, [H] * len(brands), centres


def search(vectors: np.ndarray, labels: list, query: np.ndarray, k: int = K) -> list[Neighbour]:
    distances = angular_from_cosine(vectors @ query)
    return [Neighbour(int(i) + 1, labels[i], H, float(distances[i])) for i in np.argsort(distances)[:k]]


@pytest.fixture(scope="module")
def world():
    ids, vectors, labels, sources, centres = store(seed=0)
    calibrator = calibrate(ids, vectors, labels, sources, model_id="test-model", k=K)
    return vectors, labels, centres, calibrator


def test_vote_features_follow_the_weighted_vote():
    near = [Neighbour(1, None, None, 0.1), Neighbour(2, "acme", H, 0.2), Neighbour(3, "acme", M, 0.3),
            Neighbour(4, "zeta", H, 0.5)]
    winner, features = vote_features(near, machine_weight=0.5)
    assert winner == predict_label(near, VoteConfig(machine_weight=0.5)).label == "acme"
    assert dict(zip(FEATURES, features)) == pytest.approx({"nearest_same": 0.2, "margin": 0.3})
    # a human label at 0.27 outweighs two machine labels at 0.25 when machine labels weigh little
    near = [Neighbour(1, "acme", M, 0.25), Neighbour(2, "acme", M, 0.25), Neighbour(3, "zeta", H, 0.27)]
    assert vote_features(near, machine_weight=0.2)[0] == "zeta"


def test_no_labelled_neighbour_is_unknown_with_probability_zero(world):
    calibrator = world[3]
    winner, features = vote_features([Neighbour(1, None, None, 0.01)], machine_weight=0.5)
    assert winner is None and calibrator.probability(features) == 0.0
    prediction = calibrator.predict([Neighbour(1, None, None, 0.01)])
    assert prediction.label is None and prediction.confidence == 0.0


def test_a_logo_at_its_brand_centre_is_named_with_high_probability(world):
    vectors, labels, centres, calibrator = world
    near = search(vectors, labels, centres[20])  # a tight brand with no look-alike
    prediction = calibrator.predict(near)
    assert prediction.label == "brand20" and prediction.confidence > 0.9


def test_a_brand_absent_from_the_store_is_unknown(world):
    vectors, labels, _, calibrator = world
    newcomers = unit(np.random.default_rng(7).normal(size=(20, DIM)))
    for query in newcomers:
        near = search(vectors, labels, query)
        _, features = vote_features(near, calibrator.machine_weight)
        assert calibrator.probability(features) < 0.5
        assert features[0] > calibrator.max_distance  # the distance limit alone rejects it
        assert calibrator.predict(near).label is None


def test_leave_one_out_uses_human_labels_only_as_truth(monkeypatch):
    ids, vectors, labels, sources, _ = store(seed=3)
    sources = list(sources)
    for i in range(0, 25):  # brands 0-4 labelled by a machine: voters, never queries
        sources[i] = M
    labels[-5:] = [None] * 5  # brand 39 unlabelled: takes neighbour slots, never votes
    data = leave_one_out(ids, vectors, labels, sources, k=K, machine_weight=0.5)
    human = [label for label, source in zip(labels, sources) if label and source is H]
    # every human-labelled logo is asked twice: itself left out, and its whole label left out
    assert len(data.correct) == 2 * len(human) == len(data.winners) == len(data.open_set)
    assert data.open_set.sum() == len(human)
    assert data.correct[data.open_set].sum() == 0  # an absent label can never be right
    assert not {w for w, is_open in zip(data.winners, data.open_set) if is_open} & {"brand39"}  # unlabelled
    assert 0.5 < data.correct[~data.open_set].mean() < 1.0
    assert len(data.nearest_same) == len(human) and np.all((data.nearest_same >= 0) & (data.nearest_same <= 2))
    weights = data.weights(0.8)
    assert weights[data.open_set].sum() / weights.sum() == pytest.approx(0.8)
    assert weights.sum() == pytest.approx(len(weights))

    monkeypatch.setattr(loo, "_CHUNK_ENTRIES", 7 * len(ids))  # 7 queries per chunk: same answers
    chunked = leave_one_out(ids, vectors, labels, sources, k=K, machine_weight=0.5)
    np.testing.assert_allclose(chunked.features, data.features, atol=1e-6)
    assert chunked.winners == data.winners and np.array_equal(chunked.correct, data.correct)


def test_leave_one_out_leaves_the_whole_photo_out():
    ids, vectors, labels, sources, _ = store(seed=6)
    rng = np.random.default_rng(6)
    # every logo photographed twice on the same shelf: a near copy of it in the same photo
    twins = unit(vectors + 0.02 / np.sqrt(DIM) * rng.normal(size=vectors.shape).astype(np.float32))
    ids2, vectors2 = np.r_[ids, ids + len(ids)], np.r_[vectors, twins]
    labels2, sources2 = labels + labels, sources + sources
    shelf = [f"photo{i}" for i in range(len(ids))] * 2
    by_logo = leave_one_out(ids2, vectors2, labels2, sources2, k=K, machine_weight=0.5)
    by_photo = leave_one_out(ids2, vectors2, labels2, sources2, k=K, machine_weight=0.5, photos=shelf)
    alone = leave_one_out(ids, vectors, labels, sources, k=K, machine_weight=0.5)
    # logo by logo, each finds its twin: every answer right and at a distance no new photo meets
    assert np.median(by_logo.nearest_same) < 0.1 and by_logo.correct[~by_logo.open_set].mean() == 1.0
    # photo by photo, the answers are those of the store without the twins
    assert np.median(by_photo.nearest_same) == pytest.approx(np.median(alone.nearest_same), abs=0.02)
    assert by_photo.correct[~by_photo.open_set].mean() == pytest.approx(alone.correct[~alone.open_set].mean(),
                                                                         abs=0.05)
    # a photo per logo, or photos unknown, is leave-one-out as before
    unknown = leave_one_out(ids, vectors, labels, sources, k=K, machine_weight=0.5, photos=[None] * len(ids))
    own = leave_one_out(ids, vectors, labels, sources, k=K, machine_weight=0.5, photos=[str(i) for i in ids])
    for data in (unknown, own):
        np.testing.assert_allclose(data.features, alone.features, atol=1e-6)
        assert data.winners == alone.winners


def test_save_and_load_round_trip(world, tmp_path, caplog):
    calibrator = world[3]
    path = tmp_path / "calibration.json"
    calibrator.save(path)
    assert json.loads(path.read_text())["model_id"] == "test-model"  # plain JSON, no pickle
    loaded = Calibrator.load(path, "test-model")
    assert loaded == calibrator
    features = leave_one_out(*store(seed=5)[:4], k=K, machine_weight=0.5).features
    assert np.array_equal(loaded.probabilities(features), calibrator.probabilities(features))
    with caplog.at_level(logging.WARNING):
        assert Calibrator.load(path, "another-model") is None
    assert "another-model" in caplog.text


def test_calibrator_file_of_another_feature_set_is_refused(world, tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({**world[3].to_json(), "features": ["share"]}))
    with pytest.raises(StoreError, match="calibrate again"):
        Calibrator.load(path, "test-model")


def test_probabilities_are_calibrated_on_a_held_out_store(world):
    calibrator = world[3]
    held_out = leave_one_out(*store(seed=1)[:4], k=K, machine_weight=0.5)
    probs = calibrator.probabilities(held_out.features)
    right = held_out.correct.astype(bool)
    assert 0.2 < right.mean() < 0.9  # both kinds of answers are there
    assert expected_calibration_error(probs, held_out.correct) < 0.1
    assert probs[right].mean() > 0.8 and probs[~right].mean() < 0.35  # and it tells them apart
    assert calibrator.stats["ece"] < 0.1
    assert calibrator.n_samples == calibrator.stats["right"] + calibrator.stats["wrong"]


def test_degenerate_stores_raise_a_clear_error():
    ids, vectors, labels, sources, _ = store(seed=2)
    with pytest.raises(StoreError, match="at least 20 human-labelled logos of 2"):
        calibrate(ids[:15], vectors[:15], labels[:15], sources[:15], model_id="m")
    with pytest.raises(StoreError, match="2\\+ labels"):
        calibrate(ids, vectors, ["one"] * len(ids), sources, model_id="m")
    with pytest.raises(StoreError, match="human-labelled"):
        calibrate(ids, vectors, labels, [M] * len(ids), model_id="m")
    features = np.random.default_rng(0).random((50, len(FEATURES)))
    with pytest.raises(StoreError, match="some right and some wrong"):
        Calibrator.fit(features, np.ones(50), model_id="m", k=K, machine_weight=0.5)
    with pytest.raises(StoreError, match="at least 20"):
        Calibrator.fit(features[:10], np.arange(10) % 2, model_id="m", k=K, machine_weight=0.5)


def test_distance_limit_is_a_high_quantile_of_same_label_distances():
    distances = np.linspace(0.0, 1.0, 101)
    assert distance_limit(distances, quantile=0.99) == pytest.approx(0.99)
    assert distance_limit(np.array([])) == 2.0


def test_precision_threshold_takes_the_lowest_threshold_that_keeps_precision_with_confidence():
    probs = np.linspace(0.99, 0.01, 100)
    right = np.ones(100)
    right[59] = 0  # one wrong answer after 59 right ones: precision 0.99 over all 100
    assert precision_threshold(probs, right, 0.95) == probs[-1]  # 99 of 100 is sure enough
    right[[60, 61]] = 0  # 97 of 100: the point estimate clears 0.95, its confidence bound does not
    assert precision_threshold(probs, right, 0.95) == probs[58]  # 59 right ones above the first wrong one
    assert precision_threshold(probs, right, 0.90) == probs[-1]
    few = np.ones(20)
    assert precision_threshold(probs[:20], few, 0.95) is None  # 20 of 20 could be chance at 0.95 (bound 0.88)
    assert precision_threshold(probs[:20], few, 0.85) == probs[19]
    assert precision_threshold(np.array([0.9] * 80), np.r_[0, np.ones(79)], 0.90) == 0.9  # ties go together
    assert precision_threshold(np.r_[np.full(80, 0.9), 0.95], np.r_[0, np.ones(79), 1], 0.99) is None
    # answers right near 1 and wrong far below: the target itself, not the lowest right answer's 0.99
    assert precision_threshold(np.r_[np.full(60, 0.99), 0.2], np.r_[np.ones(60), 0], 0.95) == 0.95
    # but a wrong answer above the target keeps the threshold above it
    assert precision_threshold(np.r_[np.full(60, 0.99), [0.97] * 5], np.r_[np.ones(60), np.zeros(5)], 0.95) == 0.99
    weights = np.where(right == 0, 0.1, 1.0)  # wrong answers that count little let the threshold go lower
    assert precision_threshold(probs, right, 0.95, weights) == probs[-1]
    winners = ["a"] * 100 + ["b"] * 5
    thresholds = suggest_thresholds(np.r_[probs, [0.99] * 5], np.r_[right, [1] * 5], winners, 0.95, min_samples=10)
    assert thresholds == {"a": probs[58]}  # "b" has too few answers: the global default applies


def test_suggested_thresholds_are_probabilities_for_labels_with_enough_answers(world):
    calibrator = world[3]
    data = leave_one_out(*store(seed=4, per_label=30)[:4], k=K, machine_weight=0.5)
    probs = calibrator.probabilities(data.features)
    thresholds = suggest_thresholds(probs, data.correct, data.winners, target_precision=0.9, min_samples=6)
    answers = {label: data.winners.count(label) for label in set(data.winners)}
    assert len(thresholds) >= 10 and all(answers[label] >= 6 for label in thresholds)
    few = leave_one_out(*store(seed=4, per_label=5)[:4], k=K, machine_weight=0.5)
    assert not suggest_thresholds(calibrator.probabilities(few.features), few.correct, few.winners, 0.9, 6)
    for label, threshold in thresholds.items():
        assert 0.0 <= threshold <= 1.0
        given = (np.array(data.winners) == label) & (probs >= threshold)
        assert data.correct[given].mean() >= 0.9
    assert 0.0 < calibrator.min_probability <= 1.0


def test_expected_calibration_error_and_reliability_curve():
    correct = np.array([1] * 9 + [0])
    assert expected_calibration_error(np.full(10, 0.9), correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)
    mean_prob, share_right, counts = reliability_curve(np.array([0.05, 0.15, 0.95, 1.0]), np.array([0, 0, 1, 0]), 10)
    np.testing.assert_allclose(mean_prob, [0.05, 0.15, 0.975])
    np.testing.assert_allclose(share_right, [0.0, 0.0, 0.5])
    assert counts.tolist() == [1, 1, 2]


def test_the_open_set_share_is_estimated_from_the_logos_no_person_labelled():
    """A store's imported logos are the answers it is actually asked for: their share of unknown brands is
    estimated from them (not assumed), and a store asked only about its own brands names more."""
    rng = np.random.default_rng(3)
    centres, spread = brand_centres(rng)
    held = np.arange(30, LABELS)  # brands the store holds no human label of
    known_brands = np.repeat(np.arange(30), 5)
    gallery = photos(rng, centres, spread, known_brands)
    labels = [f"brand{b}" for b in known_brands]

    def with_traffic(brands: np.ndarray):
        vectors = np.concatenate([gallery, photos(rng, centres, spread, brands)])
        sources = [H] * len(gallery) + [None] * len(brands)
        all_labels = labels + [None] * len(brands)
        ids = np.arange(len(vectors)) + 1
        traffic = loo.traffic_answers(ids, vectors, all_labels, sources, K, 0.5)
        assert len(traffic) == len(brands)  # an answer per imported logo, none for the human-labelled ones
        return calibrate(ids, vectors, all_labels, sources, model_id="m", k=K, traffic=traffic)

    own = with_traffic(rng.choice(30, 300))  # every imported logo of a brand the store holds
    mixed = with_traffic(np.r_[rng.choice(30, 150), rng.choice(held, 150)])  # half of them unknown brands
    assert own.stats["open_set_share_used"] < 0.2 < mixed.stats["open_set_share_used"] < 0.8
    assert own.stats["open_set_share"] == mixed.stats["open_set_share"] == 0.5  # the setting, kept for staleness
    assert own.min_probability < mixed.min_probability  # the same target precision names more
    few = calibrate(*store(seed=0)[:4], model_id="m", k=K, traffic=np.zeros((calibration.MIN_TRAFFIC - 1, 2)))
    assert few.stats["open_set_share_used"] == 0.5  # too little traffic: the setting

"""Calibrated confidence on real logos: known brands named with high confidence, unseen brands unknown,
thresholds set from the CLI and the API change the answer, and a calibration of another model is ignored."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import create_app
from pipeline import shapes
from pipeline.calibration import Calibrator
from pipeline.cli import run
from pipeline.demo import DEMO_LOGOS
from pipeline.importing import import_folder
from pipeline.service import LogoService

UNSEEN = ["Shell", "Spotify", "Toyota", "Visa", "Netflix"]  # never in the gallery
TOKEN = "s3cret"


def _files(brand: str) -> list[Path]:
    return sorted((DEMO_LOGOS / brand).iterdir(), key=lambda p: (p.suffix != ".png", p.name))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, embedder) -> LogoService:
    """The demo brands but five, three images each in the gallery (the fourth kept for queries), calibrated.

    Aiming at 90 % precision: 38 brands of 3 logos give too few leave-one-out answers to show 95 % with
    confidence, and the default threshold would then be the target itself.
    """
    from pipeline.config import Settings

    gallery = tmp_path_factory.mktemp("gallery")
    for brand in sorted(p.name for p in DEMO_LOGOS.iterdir() if p.is_dir() and p.name not in UNSEEN):
        (gallery / brand).mkdir()
        for path in _files(brand)[:3]:
            shutil.copy(path, gallery / brand / path.name)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), detector="whole-image", admin_token=TOKEN,
                        target_precision=0.9)
    service = LogoService(settings, embedder=embedder)
    import_folder(service, gallery, progress=False)
    service.maintenance.build_index()
    service.calibration.fit()
    return service


def _answer(service: LogoService, path: Path) -> tuple[str | None, float]:
    prediction = service.search.photo(path).logos[0].prediction
    return prediction.label, prediction.confidence


def test_known_logos_get_a_high_calibrated_confidence(calibrated):
    answers = {brand: _answer(calibrated, _files(brand)[3]) for brand in ["KFC", "Lidl", "Starbucks", "Red Bull"]}
    named = {brand: confidence for brand, (label, confidence) in answers.items() if label is not None}
    assert all(answers[brand][0] == brand for brand in named), answers  # never a wrong name
    # a photo of a brand whose other two gallery photos are in other print colours gets less (Red Bull's: 0.72
    # with the shape-first embedder, over this store's threshold; 0.74 and unknown with the one before): the
    # others are named with confidence, and none under the store's threshold
    calibrator = calibrated.calibration.current()
    assert len(named) >= 3 and sum(confidence >= 0.95 for confidence in named.values()) >= 3, answers
    assert all(confidence >= calibrator.thresholds.get(brand, calibrator.min_probability)
               for brand, confidence in named.items()), (answers, calibrator.min_probability)


def test_unseen_brands_are_unknown_with_their_neighbours_still_listed(calibrated):
    results = [calibrated.search.photo(_files(brand)[0]).logos[0] for brand in UNSEEN]
    unknown = [logo for logo in results if logo.prediction.label is None]
    assert len(unknown) >= 4, [(logo.prediction.label, logo.prediction.confidence) for logo in results]
    assert all(len(logo.neighbours) == calibrated.settings.k for logo in results)
    # each still carries its best guess, with a probability below the naming threshold, for a person to confirm
    assert all(logo.prediction.guess is not None and shapes.logo(logo)["guess"]["label"] == logo.prediction.guess
               for logo in unknown)


def test_thresholds_from_the_cli_and_the_api_change_the_answer(calibrated):
    query = _files("KFC")[3]
    label, confidence = _answer(calibrated, query)
    assert label == "KFC" and confidence < 1.0
    data = str(calibrated.settings.data_dir)
    assert run(["--data-dir", data, "-q", "threshold", "KFC", "1"]) == 0
    assert _answer(calibrated, query)[0] is None  # the label now needs more than it gets
    assert run(["--data-dir", data, "-q", "threshold", "KFC", "none"]) == 0
    assert _answer(calibrated, query)[0] == "KFC"
    client = TestClient(create_app(calibrated))
    put = client.put("/api/v1/labels/KFC/threshold", json={"threshold": 1.0}, headers={"X-Admin-Token": TOKEN})
    assert put.status_code == 200 and client.get("/api/v1/labels/thresholds").json()["set"] == {"KFC": 1.0}
    photo = {"file": (query.name, query.read_bytes(), "image/jpeg")}
    assert client.post("/api/v1/search", files=photo).json()["logos"][0]["label"] is None
    assert client.put("/api/v1/labels/KFC/threshold", json={"threshold": None},
                      headers={"X-Admin-Token": TOKEN}).status_code == 200
    assert client.post("/api/v1/search", files=photo).json()["logos"][0]["label"] == "KFC"
    assert client.put("/api/v1/labels/KFC/threshold", json={"threshold": 0.5}).status_code == 401
    assert client.put("/api/v1/labels/Nobody/threshold", json={"threshold": 0.5},
                      headers={"X-Admin-Token": TOKEN}).status_code == 404
    assert client.put("/api/v1/labels/KFC/threshold", json={"threshold": 2},
                      headers={"X-Admin-Token": TOKEN}).status_code == 422


def test_a_calibration_of_another_model_is_not_used(calibrated, tmp_path):
    query = _files("KFC")[3]
    calibrated_answer = _answer(calibrated, query)
    saved = calibrated.calibration.path.read_text()
    foreign = replace(calibrated.calibration.current(), model_id="another-model", min_probability=1.0)
    try:
        foreign.save(calibrated.calibration.path)
        assert calibrated.calibration.current() is None and calibrated.calibration.is_stale()
        label, confidence = _answer(calibrated, query)  # the plain vote share again
        assert label == "KFC" and confidence != calibrated_answer[1]
    finally:
        calibrated.calibration.path.write_text(saved)
    assert Calibrator.load(calibrated.calibration.path, "another-model") is None
    assert _answer(calibrated, query) == calibrated_answer


def test_calibrate_from_the_cli_and_the_api(calibrated):
    client = TestClient(create_app(calibrated))
    assert client.post("/api/v1/calibrate").status_code == 401
    summary = client.post("/api/v1/calibrate", headers={"X-Admin-Token": TOKEN}).json()
    assert summary["model"] == calibrated._parts.store.model_id and summary["answers"] > 100
    assert 0 < summary["max_distance"] < 2 and not calibrated.calibration.is_stale()
    assert run(["--data-dir", str(calibrated.settings.data_dir), "-q", "calibrate"]) == 0


def test_the_distance_quantile_setting_moves_the_open_set_limit_and_a_change_refits(calibrated):
    known = [_files(brand)[3] for brand in ["KFC", "Lidl", "Starbucks", "Red Bull", "Nike", "Adidas"]]
    default_limit = calibrated.calibration.fit().max_distance  # with its own settings (the CLI's test aims at 0.95)
    named = sum(_answer(calibrated, path)[0] is not None for path in known)
    saved = calibrated.calibration.path.read_text()
    strict = LogoService(replace(calibrated.settings, distance_quantile=0.3), embedder=calibrated._parts.embedder)
    try:
        assert strict.calibration.is_stale() and not calibrated.calibration.is_stale()
        for vote in ({"k": 5}, {"machine_label_weight": 0.25}):  # the vote it was fitted on changed too
            changed = LogoService(replace(calibrated.settings, **vote), embedder=calibrated._parts.embedder)
            assert changed.calibration.is_stale()
        assert strict.calibration.fit().max_distance < default_limit
        assert not strict.calibration.is_stale() and calibrated.calibration.is_stale()  # each refits to its own
        # 70 % of the labelled logos sit farther than the new limit from their nearest same-label logo: new photos
        # of known brands do too, and come back unknown
        assert sum(_answer(strict, path)[0] is not None for path in known) < named
    finally:
        calibrated.calibration.path.write_text(saved)
    assert not calibrated.calibration.is_stale()

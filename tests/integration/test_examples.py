"""The app's own examples on the default (full) demo store, searched as a visitor searches them.

Built once for this module (every simple-icons brand in two colourways plus the 43 bundled brands: 7,020
logos, about two minutes on 2 cores), then calibrated as the app calibrates it.
"""

from __future__ import annotations

import json

import pytest

from pipeline.config import Settings
from pipeline.demo import EXAMPLE_PHOTOS, build_demo
from pipeline.service import LogoService
from pipeline.types import Box


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory, embedder) -> LogoService:
    service = LogoService(Settings(data_dir=tmp_path_factory.mktemp("full-demo")), embedder=embedder)
    build_demo(service, size="full", progress=False)
    service.calibration.fit()
    service.reading.evidence.refresh()  # what text is worth here: measured in the background after the first search
    return service


def _iou(a: Box, b: Box) -> float:
    x0, y0, x1, y1 = max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1)
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter)


def test_every_placed_example_logo_is_found_and_named_right_or_left_unknown(full_demo):
    placed = json.loads((EXAMPLE_PHOTOS / "examples.json").read_text())
    answers = {}
    for name, items in placed.items():
        logos = full_demo.search.photo(EXAMPLE_PHOTOS / name).logos
        for item in items:
            truth = Box.from_sequence(item["box"])
            found = max(logos, key=lambda logo: _iou(logo.box, truth))
            assert _iou(found.box, truth) >= 0.5, f"{name}: {item['label']} not found"
            answers[f"{name}: {item['label']}"] = (item["label"], found.prediction)
    wrong = {key: p.label for key, (label, p) in answers.items() if p.label not in (None, label)}
    assert not wrong, wrong
    # each unknown one still has its brand as the best guess, for a person to confirm
    assert all(p.guess == label for label, p in answers.values()), answers
    named = sum(p.label == label for label, p in answers.values())
    # 6 of 10 before the calibration stopped counting a brand's logos nearby, 7 before the shape-first embedder,
    # 8 before the logos' text could confirm the vote's best guess (the snack box's Coca-Cola reads "CocaCola"),
    # 9 before the shape-first embedder's third run (3c: the coffee bag's Starbucks siren)
    assert named == len(answers) == 10, (answers, full_demo.reading.evidence.current())


def test_the_real_coca_cola_cans_are_named_and_the_lavie_bottle_gets_no_label(full_demo):
    for photo in ("real-CocaCola-0003.jpg", "real-CocaCola-0014.jpg"):
        logos = full_demo.search.photo(EXAMPLE_PHOTOS / photo).logos
        given = [logo.prediction.label for logo in logos if logo.prediction.label]
        # the can's logo: its nearest stored logo is Coca-Cola, well inside the store's same-label distances
        # (0.16-0.19 against a distance limit of 0.75), and the runner-up brands are 0.12-0.16 farther
        assert given and set(given) == {"Coca-Cola"}, [(logo.prediction, logo.neighbours[:3]) for logo in logos]
    lavie = full_demo.search.photo(EXAMPLE_PHOTOS / "real-Lavie-0009.jpg").logos
    assert all(logo.prediction.label is None for logo in lavie)  # Lavie is no demo brand: unknown, never wrong

"""The first start, in process: the build's progress, searches refused only until there is an index, the map and the
calibration started when the store is complete (the live app and its pages: ``tests/e2e/test_first_start_live.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import create_app
from pipeline.demo import DEMO_LOGOS
from pipeline.errors import NotReadyError
from pipeline.importing import import_folder
from tests.conftest import ROOT

PHOTO = ROOT / "assets/logos/Coca-Cola"


def _photo() -> Path:
    return sorted(PHOTO.iterdir())[0]


def test_a_search_waits_for_the_first_index_then_is_answered_while_the_build_goes_on(service, gallery_dir):
    client = TestClient(create_app(service))
    service.build.start(total=200, message="importing the bundled logos")
    health = client.get("/health").json()
    assert (health["store"], health["store_progress"], health["calibration"]) == ("building", 0.0, "none")
    with pytest.raises(NotReadyError, match="Building the store: 0%"):
        service.search.photo(_photo())
    answer = client.post("/api/v1/search", files={"file": ("a.png", _photo().read_bytes(), "image/png")})
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert "try again in a few seconds" in answer.json()["detail"]
    assert client.get("/api/v1/ann/1").status_code == 503

    import_folder(service, gallery_dir, progress=False, advance=service.build.advance)
    assert client.get("/health").json()["store_progress"] == round(service.insight.count() / 200, 3)
    service.maintenance.build_index()  # the bundled logos are indexed: searches are answered, the build goes on
    result = client.post("/api/v1/search", files={"file": ("a.png", _photo().read_bytes(), "image/png")})
    assert result.status_code == 200 and result.json()["logos"][0]["label"] == "Coca-Cola"
    service.build.finish()
    assert client.get("/health").json()["store"] == "ready"


def test_the_map_is_not_fitted_on_half_a_store(service, gallery_dir):
    import_folder(service, gallery_dir, progress=False)
    service.build.start(total=100, message="adding every simple-icons brand")
    service.insight.start_map()
    assert service.insight.map_status().state == "empty"  # the build starts it when it ends
    service.build.finish()
    service.insight.start_map()
    assert service.insight.map_status().state in ("fitting", "ready")
    assert service.insight.wait_for_map(120).state == "ready"


def test_calibration_state_says_none_fitting_then_ready(service):
    import_folder(service, DEMO_LOGOS, progress=False)  # enough labels to calibrate
    service.maintenance.build_index()
    assert service.calibration.state() == "none"
    service.calibration.request()
    assert service.calibration.state() == "fitting"  # from the request on, not only once the fit holds its lock
    deadline = time.time() + 120
    while service.calibration.state() == "fitting":
        assert time.time() < deadline, "the calibration never ended"
        time.sleep(0.2)
    assert service.calibration.state() == "ready" and service.calibration.current() is not None

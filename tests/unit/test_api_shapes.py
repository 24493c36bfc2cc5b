"""The API is built by area and every JSON route declares its answer's shape (what ``/docs`` shows)."""

from __future__ import annotations

import io

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from pipeline import shapes
from web.api import AREAS, build_api
from web.auth import AdminAuth

FILES = {"/api/v1/export", "/api/v1/logos/{logo_id}/thumbnail"}  # a ZIP and a WebP, not JSON


def _client(service) -> TestClient:
    app = FastAPI()
    app.include_router(build_api(service, AdminAuth("t")))
    return TestClient(app)


def test_every_json_route_has_a_response_model_and_each_area_its_tag(service):
    paths = _client(service).get("/openapi.json").json()["paths"]
    operations = [(path, method, spec) for path, methods in paths.items() for method, spec in methods.items()]
    assert {tag for *_, spec in operations for tag in spec["tags"]} == {area.__name__.removesuffix("_router")
                                                                       for area in AREAS}
    untyped = [f"{method.upper()} {path}" for path, method, spec in operations if path not in FILES
               and "$ref" not in str(spec["responses"]["200"]["content"]["application/json"]["schema"])]
    assert not untyped, f"routes without a response model: {untyped}"
    assert len(operations) == 22  # the 20 before the split, and the vocabulary's two


def test_the_answers_keep_their_shapes_optional_keys_included(service):
    client = _client(service)
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"SearchOut", "HistoryOut", "ReviewQueueOut", "StoreEvaluationOut", "ThresholdsOut"} <= set(schemas)
    assert client.get("/api/v1/ann/stored").json() == {"stored": [], "count": 0, "next_after": None}
    assert client.get("/api/v1/history").json() == {"events": [], "next_before": None}
    assert client.post("/api/v1/ann/add", json={"image_url": "https://x.org/a.jpg", "logos": [{
        "id": 1, "bounding_box": [0, 0, 1, 1]}]}, headers={"X-Admin-Token": "nope"}).status_code == 401


def test_answers_are_the_cli_json_to_the_byte(service):
    """Whole-number boxes stay integers, and the evaluation's recall@K keeps its place beside top1."""
    for colour in ("red", "blue"):
        for shade in (0, 40):
            service.ingest.photo(Image.new("RGB", (48, 48), (200 - shade, 30, 30) if colour == "red"
                                           else (30, 30, 200 - shade)), labels=[colour])
    service.maintenance.build_index()
    client = _client(service)
    photo = Image.new("RGB", (48, 48), (190, 30, 30))
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    answer = client.post("/api/v1/search", files={"file": ("a.png", buffer.getvalue(), "image/png")})
    assert '"box":[0,0,48,48]' in answer.text and answer.json()["logos"][0]["label"] == "red"
    expected = shapes.store_evaluation(service.insight.store_evaluation())
    served = client.get("/api/v1/evaluate/store")
    assert list(served.json()) == list(expected) and served.json() == expected

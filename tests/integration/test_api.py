"""Every API route, bad input, and the read-only refusal; served in-process by FastAPI's TestClient."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app import create_app
from pipeline.importing import import_folder
from pipeline.service import LogoService
from tests.conftest import BRANDS

TOKEN = "s3cret"


@pytest.fixture
def make_client(settings, embedder, gallery_dir):
    def make(admin_token: str | None = TOKEN) -> tuple[TestClient, LogoService]:
        service = LogoService(settings.replace(admin_token=admin_token, max_upload_bytes=200_000), embedder=embedder)
        if not service._parts.store.count():
            import_folder(service, gallery_dir, progress=False)
            service.maintenance.build_index()
        return TestClient(create_app(service)), service
    return make


def upload(path) -> dict:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def test_ann_routes(make_client):
    client, service = make_client()
    assert client.get("/api/v1/ann/count").json() == {"count": 3 * len(BRANDS)}
    stored = client.get("/api/v1/ann/stored").json()["stored"]
    assert stored == list(range(1, 3 * len(BRANDS) + 1))
    one = client.get("/api/v1/ann/1?count=2").json()
    assert one["count"] == 2 and [set(r) for r in one["results"]] == [{"logo_id", "distance", "label"}] * 2
    assert 1 not in [r["logo_id"] for r in one["results"]]
    batch = client.post("/api/v1/ann/batch", json={"logo_ids": [1, 2, 999], "count": 3}).json()
    assert batch["count"] == 2 and set(batch["results"]) == {"1", "2"}
    vector = service._parts.store.vectors([4])[0].tolist()
    near = client.post("/api/v1/ann/from_embedding", json={"embedding": vector, "count": 1}).json()
    assert near["results"][0]["logo_id"] == 4 and near["results"][0]["distance"] < 1e-3
    assert client.get("/api/v1/logos/1/thumbnail").headers["content-type"] == "image/webp"
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200


def test_ann_bad_input(make_client):
    client, _ = make_client()
    assert client.get("/api/v1/ann/99999").status_code == 404
    assert client.get("/api/v1/ann/1?count=0").status_code == 422
    assert client.post("/api/v1/ann/batch", json={"logo_ids": []}).status_code == 422
    wrong_dim = client.post("/api/v1/ann/from_embedding", json={"embedding": [0.1, 0.2]})
    assert wrong_dim.status_code == 400 and "dimensions" in wrong_dim.json()["detail"]  # as robotoff-ann
    other_model = client.post("/api/v1/ann/from_embedding", json={"embedding": [0.1] * 432, "model": "clip"})
    assert other_model.status_code == 409


def test_search_matches_cli_shape(make_client, query_images):
    client, _ = make_client()
    answer = client.post("/api/v1/search", files=upload(query_images["Red Bull"]), data={"k": "4"})
    assert answer.status_code == 200
    (logo,) = answer.json()["logos"]
    assert set(logo) == {"box", "label", "confidence", "neighbours", "text"} and len(logo["neighbours"]) == 4
    assert logo["label"] == "Red Bull"
    boxed = client.post("/api/v1/search", files=upload(query_images["Red Bull"]),
                        data={"boxes": json.dumps([[0, 0, 40, 30], [10, 10, 60, 50]])}).json()
    assert [l["box"] for l in boxed["logos"]] == [[0, 0, 40, 30], [10, 10, 60, 50]]


def test_search_bad_files(make_client, query_images):
    client, _ = make_client()
    for content, status, words in [(b"", 400, "empty"), (b"GIF89a broken", 400, "image"),
                                   (b"x" * 210_000, 413, "larger")]:
        answer = client.post("/api/v1/search", files={"file": ("f.jpg", content, "image/jpeg")})
        assert answer.status_code == status and words in answer.json()["detail"], answer.json()
    # far past the cap, the body stops being read where the cap is crossed
    huge = client.post("/api/v1/search", files={"file": ("f.jpg", b"x" * 3_000_000, "image/jpeg")})
    assert huge.status_code == 413 and "Too Large" in huge.text
    bad_boxes = client.post("/api/v1/search", files=upload(query_images["Lidl"]), data={"boxes": "[1, 2"})
    assert bad_boxes.status_code == 400
    assert client.post("/api/v1/search").status_code == 422


def test_add_requires_token_and_is_searchable_at_once(make_client, query_images):
    client, service = make_client()
    photo = upload(query_images["Shell"])
    assert client.post("/api/v1/ann/add", files=photo).status_code == 401
    assert client.post("/api/v1/ann/add", files=photo, headers={"X-Admin-Token": "nope"}).status_code == 401
    added = client.post("/api/v1/ann/add", files=photo, data={"labels": json.dumps(["Shell"])},
                        headers={"X-Admin-Token": TOKEN})
    assert added.status_code == 200 and added.json()["added"] == 1
    new_id = added.json()["ids"][0]
    top = client.post("/api/v1/search", files=photo).json()["logos"][0]["neighbours"][0]
    assert top["id"] == new_id and top["label"] == "Shell"
    mismatch = client.post("/api/v1/ann/add", files=photo, data={"labels": json.dumps(["a", "b"])},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert mismatch.status_code == 400 and "labels" in mismatch.json()["detail"]


def test_read_only_deployment_refuses_writes(make_client, query_images):
    client, service = make_client(admin_token=None)
    before = service._parts.store.count()
    refused = client.post("/api/v1/ann/add", files=upload(query_images["Shell"]), headers={"X-Admin-Token": "x"})
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert service._parts.store.count() == before


def test_gradio_and_dash_are_mounted(make_client):
    client, _ = make_client()
    assert client.get("/").status_code == 200
    assert client.get("/dashboard/").status_code == 200
    layout = client.get("/dashboard/_dash-layout")
    assert layout.status_code == 200 and "Logo space" in layout.text
    assert client.get("/config").status_code == 200  # Gradio's own config route


def test_robotoff_ann_requests_get_robotoff_ann_answers(make_client):
    """robotoff-ann's GET batch with a CSV list, random ann, the ``index`` parameter and CORS."""
    client, service = make_client()
    batch = client.get("/api/v1/ann/batch?logo_ids=1,2,999&count=3")
    assert batch.status_code == 200
    assert batch.json()["count"] == 2 and set(batch.json()["results"]) == {"1", "2"}
    assert all(len(found) == 3 for found in batch.json()["results"].values())
    assert client.get("/api/v1/ann/batch?logo_ids=1,x").status_code == 400
    random_ann = client.get("/api/v1/ann?count=4")
    assert random_ann.status_code == 200 and random_ann.json()["count"] == 4
    assert {"logo_id", "distance"} <= set(random_ann.json()["results"][0])
    index = service.ann.index_names()[0]
    assert client.get(f"/api/v1/ann/1?count=2&index={index}").json()["count"] == 2
    unknown = client.get("/api/v1/ann/1?index=no-such-index")
    assert unknown.status_code == 400 and "unknown index" in unknown.json()["detail"]
    assert client.get("/api/v1/ann/batch?logo_ids=1&index=nope").status_code == 400
    assert client.get("/api/v1/ann?index=nope").status_code == 400
    preflight = client.options("/api/v1/ann/1", headers={"Origin": "https://hunger.example",
                                                         "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] in ("*",
                                                                                                 "https://hunger.example")
    assert client.get("/api/v1/ann/count", headers={"Origin": "https://x.example"}).headers[
        "access-control-allow-origin"] == "*"

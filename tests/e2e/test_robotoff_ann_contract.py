"""robotoff-ann's routes, replayed with its documented parameters and bodies against a live ``app.py``.

Images for ``POST /api/v1/ann/add`` come from a loopback HTTP server started here;
the app is told to allow that host (and loopback addresses) and nothing else.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from pipeline.demo import DEMO_LOGOS
from tests.conftest import free_port, running_app

TOKEN = "robotoff"


def _photo() -> bytes:
    """A product photo with two demo logos side by side (KFC left, Lidl right)."""
    canvas = Image.new("RGB", (800, 400), (240, 236, 228))
    for slot, brand in enumerate(["KFC", "Lidl"]):
        logo = Image.open(next((DEMO_LOGOS / brand).glob("*.png"))).convert("RGB")
        logo.thumbnail((300, 300))
        canvas.paste(logo, (50 + 400 * slot, 50))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class _Images(http.server.BaseHTTPRequestHandler):
    photo = b""
    other_host = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        routes = {
            "/photo.jpg": (200, "image/jpeg", self.photo),
            "/slow.jpg": (200, "image/jpeg", self.photo),
            "/text.jpg": (200, "text/plain", b"not an image at all"),
            "/big.jpg": (200, "image/jpeg", b"\xff" * (3 * 1024 * 1024)),
        }
        if self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", f"http://{self.other_host}/photo.jpg")
            self.end_headers()
            return
        if self.path == "/slow.jpg":
            time.sleep(4)  # the app waits 2 s
        status, kind, body = routes.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def images() -> str:
    port = free_port()
    _Images.photo = _photo()
    _Images.other_host = f"localhost:{port}"  # the same server under a name the app does not allow
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> str:
    env = {"ADMIN_TOKEN": TOKEN, "LOGOS_IMAGE_URL_HOSTS": "127.0.0.1", "LOGOS_IMAGE_URL_ALLOW_PRIVATE": "true",
           "LOGOS_IMAGE_URL_TIMEOUT": "2", "LOGOS_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024)}
    with running_app(tmp_path_factory.mktemp("ann-contract"), env) as url:
        yield url


def _add(app: str, body: dict) -> httpx.Response:
    return httpx.post(app + "/api/v1/ann/add", json=body, headers={"X-Admin-Token": TOKEN}, timeout=60)


def _shape(answer: dict) -> None:
    assert set(answer) >= {"results", "count"} and answer["count"] == len(answer["results"])
    assert all({"logo_id", "distance"} <= set(r) for r in answer["results"])


def test_the_robotoff_ann_routes_answer_in_its_shapes(app, images):
    count = httpx.get(app + "/api/v1/ann/count").json()["count"]
    assert count > 0
    # boxes around each logo as a detector draws them (KFC 208x100 px and Lidl 244x244 px, pasted at y=50)
    boxes = [{"id": 185171, "bounding_box": [0.11, 0.055, 0.39, 0.33]},  # KFC, left
             {"id": 185172, "bounding_box": [0.11, 0.555, 0.75, 0.875]}]  # Lidl, right
    assert _add(app, {"image_url": images + "/photo.jpg", "logos": boxes}).json() == {"added": 2}
    assert _add(app, {"image_url": images + "/photo.jpg", "logos": boxes}).json() == {"added": 0}  # a no-op
    assert httpx.get(app + "/api/v1/ann/count").json()["count"] == count + 2
    stored = httpx.get(app + "/api/v1/ann/stored").json()["stored"]
    assert {185171, 185172} <= set(stored)

    by_id = httpx.get(app + "/api/v1/ann/185171?count=5").json()
    _shape(by_id)
    assert by_id["count"] == 5 and by_id["results"][0]["label"] == "KFC"  # its nearest stored logos are KFC's
    assert httpx.get(app + "/api/v1/ann?count=3").json()["count"] == 3  # a random stored logo
    batch = httpx.get(app + "/api/v1/ann/batch", params={"logo_ids": "185171,185172,999999999", "count": 2})
    assert batch.status_code == 200 and set(batch.json()["results"]) == {"185171", "185172"}
    assert batch.json()["count"] == 2
    near_lidl = {r["logo_id"] for r in batch.json()["results"]["185171"]}
    assert 185171 not in near_lidl  # itself left out, other logos by the ids clients know

    dim = 256
    unknown_dim = httpx.post(app + "/api/v1/ann/from_embedding", json={"embedding": [0.1] * 3, "count": 2})
    assert unknown_dim.status_code == 400 and "dimensions" in unknown_dim.json()["detail"]
    vector = [1.0] + [0.0] * (dim - 1)
    from_embedding = httpx.post(app + "/api/v1/ann/from_embedding", json={"embedding": vector, "count": 4})
    assert from_embedding.status_code == 200
    _shape(from_embedding.json())
    assert from_embedding.json()["count"] == 4
    for route in ("/api/v1/ann/185171?index=no-such", "/api/v1/ann?index=no-such",
                  "/api/v1/ann/batch?logo_ids=1&index=no-such"):
        assert httpx.get(app + route).status_code == 400


@pytest.mark.parametrize(("path", "status", "says"), [
    ("http://localhost:{port}/photo.jpg", 400, "not fetched from localhost"),  # host not allowed
    ("{images}/elsewhere", 400, "not fetched from localhost"),  # a redirect to a host not allowed
    ("{images}/big.jpg", 413, "larger"),
    ("{images}/text.jpg", 400, "not give an image"),
    ("{images}/slow.jpg", 400, "did not answer"),
    ("file:///etc/passwd", 400, "http(s)"),
])
def test_url_fetch_refusals_are_clear_and_store_nothing(app, images, path, status, says):
    port = images.rsplit(":", 1)[1]
    before = httpx.get(app + "/api/v1/ann/count").json()["count"]
    answer = _add(app, {"image_url": path.format(images=images, port=port),
                        "logos": [{"id": 7_000_001, "bounding_box": [0, 0, 1, 1]}]})
    assert answer.status_code == status and says in answer.json()["detail"], answer.text
    assert httpx.get(app + "/api/v1/ann/count").json()["count"] == before
    assert httpx.get(app + "/health").json()["status"] == "ok"


def test_add_by_url_needs_the_admin_token(app, images):
    body = {"image_url": images + "/photo.jpg", "logos": [{"id": 7_000_002, "bounding_box": [0, 0, 1, 1]}]}
    assert httpx.post(app + "/api/v1/ann/add", json=body).status_code == 401
    assert httpx.post(app + "/api/v1/ann/add", content=json.dumps({"image_url": 5}),
                      headers={"X-Admin-Token": TOKEN, "content-type": "application/json"}).status_code == 422


def test_a_host_that_resolves_to_a_private_address_is_refused(images):
    """Allowed by name, but loopback: refused unless private addresses are allowed explicitly."""
    from pipeline.errors import FetchError
    from pipeline.fetch import FetchConfig, fetch_image

    with pytest.raises(FetchError, match="non-public address"):
        fetch_image(images + "/photo.jpg", FetchConfig(frozenset({"127.0.0.1"}), 10**6))
    assert fetch_image(images + "/photo.jpg", FetchConfig(frozenset({"127.0.0.1"}), 10**6,
                                                          allow_private=True)) == _Images.photo


def test_a_private_address_is_refused_by_the_api_and_nothing_is_stored(images, settings, embedder):
    """The same add through an app that allows the host by name but not private addresses (the default)."""
    from fastapi.testclient import TestClient

    from app import create_app
    from pipeline.service import LogoService

    service = LogoService(settings.replace(admin_token=TOKEN, image_url_hosts="127.0.0.1"), embedder=embedder)
    client = TestClient(create_app(service))
    answer = client.post("/api/v1/ann/add", headers={"X-Admin-Token": TOKEN}, json={
        "image_url": images + "/photo.jpg", "logos": [{"id": 7_000_003, "bounding_box": [0, 0, 1, 1]}]})
    assert answer.status_code == 400 and "non-public address" in answer.json()["detail"]
    assert service.insight.count() == 0

"""Back-pressure and body caps: the server says "busy" or "too large" at once instead of choking."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

from app import create_app
from pipeline.importing import import_folder
from pipeline.service import LogoService
from web.limits import OverloadedError, RequestGate


def test_the_gate_admits_a_few_queues_a_few_and_turns_the_rest_away():
    async def scenario() -> list[str]:
        gate = RequestGate(active=1, queued=1, timeout=0.5)
        events: list[str] = []

        async def request(name: str, hold: float) -> None:
            dependency = gate()
            try:
                await dependency.__anext__()
            except OverloadedError as exc:
                events.append(f"{name} refused, retry after {exc.retry_after}")
                return
            events.append(f"{name} runs")
            await asyncio.sleep(hold)
            await dependency.aclose()

        await asyncio.gather(request("a", 0.2), request("b", 0.0), request("c", 0.0))
        # d waits longer than the timeout behind a slow request
        await asyncio.gather(request("slow", 1.0), request("d", 0.0))
        return events

    events = asyncio.run(scenario())
    # c is refused at once (one running, one waiting is the limit); b runs once a is done
    assert events[:3] == ["c refused, retry after 1", "a runs", "b runs"]
    assert events[3] == "slow runs" and events[4].startswith("d refused")


@pytest.fixture
def busy_service(settings, embedder, gallery_dir) -> LogoService:
    service = LogoService(settings.replace(max_active=1, max_queued=0, queue_timeout=5.0,
                                           max_upload_bytes=200_000), embedder=embedder)
    import_folder(service, gallery_dir, progress=False)
    service.maintenance.build_index()
    return service


def test_a_search_beyond_the_queue_gets_503_with_retry_after_and_health_stays_quick(busy_service, query_images,
                                                                                  monkeypatch):
    release = threading.Event()
    original = busy_service.search.photo

    def slow(*args, **kwargs):
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(busy_service.search, "photo", slow)
    client = TestClient(create_app(busy_service))
    photo = {"file": ("a.jpg", query_images["Shell"].read_bytes(), "image/jpeg")}
    first: dict[str, int] = {}
    worker = threading.Thread(target=lambda: first.update(status=client.post("/api/v1/search", files=photo).status_code))
    worker.start()
    time.sleep(1.0)  # the first search holds the only slot
    refused = client.post("/api/v1/search", files=photo)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "busy" in refused.json()["detail"]
    started = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - started < 2.0
    release.set()
    worker.join(20)
    assert first["status"] == 200
    assert client.post("/api/v1/search", files=photo).status_code == 200  # the slot is free again


def test_bodies_over_the_cap_are_refused_while_they_stream(busy_service):
    client = TestClient(create_app(busy_service))
    declared = client.post("/api/v1/search", content=b"x" * 10,
                           headers={"content-type": "multipart/form-data; boundary=b", "content-length": "900000"})
    assert declared.status_code == 413
    sent = []

    def chunks():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 65536

    streamed = client.post("/api/v1/search", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413
    big_json = client.post("/api/v1/ann/from_embedding", content=b"[" + b"0.1," * 400_000 + b"0.1]",
                           headers={"content-type": "application/json"})
    assert big_json.status_code == 413
    assert client.get("/health").status_code == 200

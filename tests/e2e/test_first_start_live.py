"""The first start, live: ``python app.py`` answers within seconds while the full demo store is built, and the
pages show the build and answer a search during it with the build's progress."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from app import create_app
from pipeline.importing import import_folder
from pipeline.service import LogoService
from tests.conftest import ROOT, free_port, running_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHOTO = ROOT / "assets/logos/Coca-Cola"


def _photo() -> Path:
    return sorted(PHOTO.iterdir())[0]


def test_the_app_answers_within_seconds_while_the_full_demo_store_is_built(tmp_path):
    started = time.perf_counter()
    with running_app(tmp_path / "data", {"LOGOS_DEMO": "full"}, ready=lambda health: True, timeout=30) as url:
        answered = time.perf_counter() - started
        first = json.load(urllib.request.urlopen(url + "/health", timeout=5))
        assert urllib.request.urlopen(url + "/", timeout=10).status == 200
        assert first["store"] == "building" and first["map"] == "empty"
        deadline = time.time() + 60
        while (health := json.load(urllib.request.urlopen(url + "/health", timeout=5)))["store_progress"] <= \
                first["store_progress"]:
            assert time.time() < deadline, "the build made no progress"
            time.sleep(1)
        assert health["store"] == "building" and health["logos"] > 0
    assert answered < 30


# -- the pages during a build, in Debian's Chromium -------------------------------------------------------------------

@contextmanager
def serving(service: LogoService) -> Iterator[str]:
    """The app of ``service`` on a free loopback port, in this process (so the test can move its build along)."""
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_the_pages_show_the_build_and_a_search_during_it_gets_the_message(service, gallery_dir):
    playwright = pytest.importorskip("playwright.sync_api")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    service.build.start(total=200, message="importing the bundled logos")
    service.build.advance(50)
    with serving(service) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url + "/", wait_until="load")
        status = page.locator("#build-status")
        playwright.expect(status).to_contain_text("Building the store: 25% (50 of 200 logos)", timeout=30_000)
        page.set_input_files("input[type=file]", str(_photo()))
        page.locator("canvas.canvas-annotator").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Search", exact=True).click()
        playwright.expect(page.get_by_text("Searches are answered as soon as there is an index").first) \
            .to_be_visible(timeout=30_000)
        page.screenshot(path=str(artifacts / "first-start-search.png"), full_page=True)

        import_folder(service, gallery_dir, progress=False, advance=service.build.advance)
        service.maintenance.build_index()
        playwright.expect(status).to_contain_text(f"{(50 + service.insight.count()) / 200:.0%}", timeout=30_000)
        page.get_by_role("button", name="Search", exact=True).click()
        playwright.expect(page.get_by_text("Logo 1: Coca-Cola").first).to_be_visible(timeout=60_000)

        dash = browser.new_page(viewport={"width": 1300, "height": 900})
        dash.goto(url + "/dashboard/", wait_until="load")
        playwright.expect(dash.locator("#map-status")).to_contain_text("The map is fitted once the store is ready",
                                                                       timeout=30_000)
        dash.screenshot(path=str(artifacts / "first-start-map.png"))
        service.build.finish()
        playwright.expect(status).to_be_empty(timeout=30_000)
        browser.close()

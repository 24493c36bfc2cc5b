"""The app as a person uses it: headless Chromium (Debian's, driven by Playwright) against ``python app.py``.

Screenshots are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "ADMIN_TOKEN": "t",
           "LOGOS_DATA_DIR": str(tmp_path_factory.mktemp("appdata"))}
    log = tmp_path_factory.mktemp("log") / "app.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("the app did not start in 240 s:\n" + log.read_text())
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1300, "height": 1000})
        browser.close()


def _open(page, server):
    page.goto(server + "/", wait_until="load")
    page.get_by_role("button", name="Search", exact=True).wait_for(timeout=30_000)


def test_example_photo_shows_boxes_labels_and_neighbours(server, page):
    _open(page, server)
    truth = json.loads((ROOT / "assets/examples/examples.json").read_text())["snack-box.jpg"]
    page.locator("button.gallery-item").first.click()  # the first example photo, boxes already drawn
    page.get_by_role("button", name="Search", exact=True).click()
    for number, item in enumerate(truth, 1):
        playwright.expect(page.get_by_text(f"Logo {number}: {item['label']}").first).to_be_visible(timeout=60_000)
    top = truth[0]["label"]
    playwright.expect(page.get_by_text(f"1: {top} (").first).to_be_visible()  # the box's label on the photo
    assert page.get_by_text(f"{top} · d=").count() >= 2  # neighbour thumbnails with labels and distances
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


def test_drag_a_box_and_search(server, page):
    _open(page, server)
    (item,) = json.loads((ROOT / "assets/examples/examples.json").read_text())["close-up.jpg"]
    page.set_input_files("input[type=file]", str(ROOT / "assets/examples/close-up.jpg"))
    canvas = page.locator("canvas.canvas-annotator").first
    canvas.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    frame = canvas.bounding_box()
    scale = frame["width"] / 1024  # the photo is 1024 px wide and fills the canvas width
    x0, y0, x1, y1 = (v * scale for v in item["box"])
    page.mouse.move(frame["x"] + x0, frame["y"] + y0)
    page.mouse.down()
    page.mouse.move(frame["x"] + (x0 + x1) / 2, frame["y"] + (y0 + y1) / 2, steps=5)
    page.mouse.move(frame["x"] + x1, frame["y"] + y1, steps=5)
    page.mouse.up()
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(page.get_by_text(f"Logo 1: {item['label']}").first).to_be_visible(timeout=60_000)
    assert page.get_by_text("Logo 2:").count() == 0  # one box drawn, one logo searched
    page.screenshot(path=str(ARTIFACTS / "drag.png"), full_page=True)


def test_search_without_a_photo_says_what_to_do(server, page):
    _open(page, server)
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(page.get_by_text("Drop, paste or pick a photo first.").first).to_be_visible(timeout=30_000)


def test_a_corrupt_photo_gets_a_clear_message(server, page, tmp_path):
    _open(page, server)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("input[type=file]", str(bad))
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(page.get_by_text("This file cannot be used").first).to_be_visible(timeout=30_000)


def test_dashboard_renders(server, page):
    page.goto(server + "/dashboard/", wait_until="load")
    playwright.expect(page.get_by_text("Logo space")).to_be_visible(timeout=30_000)
    playwright.expect(page.locator("#labels .main-svg").first).to_be_visible(timeout=30_000)
    assert "172 logos, 43 labels" in page.locator("#summary").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))


def test_gradio_client_search_by_api_name(server):
    from gradio_client import Client, handle_file

    (item,) = json.loads((ROOT / "assets/examples/examples.json").read_text())["close-up.jpg"]
    x0, y0, x1, y1 = item["box"]
    client = Client(server + "/", verbose=False)
    value = {"image": handle_file(str(ROOT / "assets/examples/close-up.jpg")),
             "boxes": [{"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}]}
    *_, result = client.predict(value, 5, api_name="/search")
    (logo,) = result["logos"]
    assert logo["label"] == item["label"] and len(logo["neighbours"]) == 5

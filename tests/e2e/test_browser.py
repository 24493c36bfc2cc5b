"""The app as a person uses it: headless Chromium (Debian's, driven by Playwright) against ``python app.py``.

Screenshots are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, running_app

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def app_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("appdata")


@pytest.fixture(scope="module")
def server(app_data):
    # up, and the background map fit done (so that it does not slow the first tests)
    with running_app(app_data, {"ADMIN_TOKEN": "t"}, ready=lambda health: health["map"] == "ready") as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    return browser.new_page(viewport={"width": 1300, "height": 1000})


def _open(page, server):
    page.goto(server + "/", wait_until="load")
    page.get_by_role("button", name="Search", exact=True).wait_for(timeout=30_000)


def _pick_example(page, number: int) -> None:
    page.locator("button.gallery-item").nth(number).click()
    page.locator("canvas.canvas-annotator").first.wait_for(timeout=30_000)  # the photo is in the annotator
    page.wait_for_timeout(300)


def test_example_photo_shows_boxes_labels_and_neighbours(server, page):
    _open(page, server)
    truth = json.loads((ROOT / "assets/examples/examples.json").read_text())["snack-box.jpg"]
    _pick_example(page, 0)  # the snack box; the bundled detector finds its logos
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(page.get_by_text("Logo 1:").first).to_be_visible(timeout=60_000)
    # each logo is named, or "unknown" where the small demo store's calibration is not sure enough; either way
    # its nearest logos carry its brand
    named = 0
    for item in truth:
        named += page.get_by_text(re.compile(rf"Logo \d: {item['label']}")).count() > 0
        named_or_guessed = re.compile(rf"\d: ({re.escape(item['label'])}\??|unknown) \(")  # "?": a best guess
        playwright.expect(page.get_by_text(named_or_guessed).first).to_be_visible()
        # at least two neighbour thumbnails with this label and their distances (the galleries render last)
        playwright.expect(page.get_by_text(f"{item['label']} · d=").nth(1)).to_be_visible(timeout=30_000)
    assert named >= 1
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


def test_unnamed_proposals_are_out_of_the_answer_and_listed_on_request(browser, tmp_path_factory):
    data = tmp_path_factory.mktemp("proposals")
    with running_app(data, {"LOGOS_PROPOSAL_THRESHOLD": "0.1"}) as url:  # proposals down to 0.1 (0.25 by default)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        _open(page, url)
        _pick_example(page, 0)
        page.get_by_role("button", name="Search", exact=True).click()
        playwright.expect(page.get_by_text("the detector was unsure of and nothing named")).to_be_visible(
            timeout=60_000)
        assert page.get_by_text("left out: the detector was unsure").count() == 0
        page.get_by_role("checkbox", name=re.compile("Show unnamed proposals")).check()
        playwright.expect(page.get_by_text("left out: the detector was unsure").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "search-proposals.png"), full_page=True)
        page.close()


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


POINTS_JS = """() => {
    const gd = document.querySelector('#map .js-plotly-plot');
    const layout = gd._fullLayout, rect = gd.getBoundingClientRect(), out = [];
    gd._fullData.forEach((trace) => {
        if (!trace.customdata || trace.name.startsWith('highlighted') || trace.name.startsWith('last search')) return;
        for (let i = 0; i < trace.x.length; i++) {
            out.push({name: trace.name, id: Number(trace.customdata[i]),
                      x: rect.left + layout._size.l + layout.xaxis.l2p(trace.x[i]),
                      y: rect.top + layout._size.t + layout.yaxis.l2p(trace.y[i])});
        }
    });
    return out;
}"""


def _open_map(page, server) -> list[dict]:
    page.goto(server + "/dashboard/", wait_until="load")
    playwright.expect(page.locator("#map-status")).to_contain_text("Map of 172 logos", timeout=180_000)
    page.wait_for_function("() => { const gd = document.querySelector('#map .js-plotly-plot');"
                           " return gd && gd._fullData && gd._fullData.length > 3; }", timeout=60_000)
    page.wait_for_timeout(500)
    return page.evaluate(POINTS_JS)


def test_map_renders_every_logo_by_label(server, page):
    points = _open_map(page, server)
    assert len(points) == 172 and len({p["id"] for p in points}) == 172
    assert "172 logos, 43 labels" in page.locator("#summary").inner_text()
    playwright.expect(page.locator("#map .legend")).to_contain_text("Coca-Cola (4)")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))


def _most_isolated(points: list[dict]) -> dict:
    """The point farthest from any other: a click on it cannot land on a neighbour (logos of a brand overlap)."""
    return max(points, key=lambda p: min((p["x"] - q["x"]) ** 2 + (p["y"] - q["y"]) ** 2
                                         for q in points if q is not p))


def test_hover_shows_the_thumbnail(server, page):
    point = _most_isolated(_open_map(page, server))
    label = point["name"].split(" (")[0]
    page.mouse.move(point["x"] - 30, point["y"] - 30)
    page.mouse.move(point["x"], point["y"], steps=4)
    card = page.locator("#hover-card")
    playwright.expect(card).to_contain_text(f"#{point['id']}: {label}", timeout=15_000)
    image = card.locator("img")
    playwright.expect(image).to_have_attribute("src", f"/api/v1/logos/{point['id']}/thumbnail")
    page.wait_for_function("() => { const i = document.querySelector('#hover-card img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-hover.png"))


def test_click_shows_the_logo_and_its_neighbours(server, page):
    point = _most_isolated(_open_map(page, server))
    label = point["name"].split(" (")[0]
    page.mouse.click(point["x"], point["y"])
    playwright.expect(page.locator("#selected-logo")).to_contain_text(f"#{point['id']}: {label}", timeout=15_000)
    playwright.expect(page.locator("#neighbours img")).to_have_count(8)
    assert page.locator("#logo-panel a").get_attribute("href") == f"/?logo={point['id']}"


def _clear_box(points: list[dict], band: float = 4.0) -> tuple[float, float, float, float]:
    """A box around one brand's logos whose edges pass no point closer than ``band`` px.

    (A point on the edge may or may not be selected, depending on rounding; the
    layout changes with every UMAP fit, so the brand is whichever fits first.)
    """
    for brand in sorted({p["name"].split(" (")[0] for p in points}):
        group = [p for p in points if p["name"].split(" (")[0] == brand]
        for margin in range(6, 40, 2):
            x0, y0 = min(p["x"] for p in group) - margin, min(p["y"] for p in group) - margin
            x1, y1 = max(p["x"] for p in group) + margin, max(p["y"] for p in group) + margin
            if not any(x0 - band <= p["x"] <= x1 + band and y0 - band <= p["y"] <= y1 + band
                       and not (x0 + band < p["x"] < x1 - band and y0 + band < p["y"] < y1 - band) for p in points):
                return x0, y0, x1, y1
    raise AssertionError("no brand's logos can be boxed clear of other points")


def test_lasso_labels_the_selection_in_the_store_and_undo_restores(server, page, app_data):
    from pipeline.store import LogoStore
    from pipeline.types import LabelSource

    points = _open_map(page, server)
    x0, y0, x1, y1 = _clear_box(points)
    inside = {p["id"] for p in points if x0 <= p["x"] <= x1 and y0 <= p["y"] <= y1}
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    playwright.expect(page.locator("#selection-count")).to_contain_text(f"{len(inside)} logos selected",
                                                                        timeout=15_000)
    store = LogoStore(app_data)
    before = store.labels(sorted(inside))
    page.fill("#bulk-label", "Lasso label")
    page.fill("#token", "t")
    page.click("#apply")
    playwright.expect(page.locator("#bulk-message")).to_contain_text(f"Labelled {len(inside)} logos",
                                                                     timeout=15_000)
    after = store.labels(sorted(inside))
    assert set(after.values()) == {("Lasso label", LabelSource.HUMAN)}
    playwright.expect(page.locator("#map .legend")).to_contain_text(f"Lasso label ({len(inside)})", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "dashboard-lasso.png"))
    page.click("#undo")
    playwright.expect(page.locator("#bulk-message")).to_contain_text("Undone", timeout=15_000)
    assert store.labels(sorted(inside)) == before


def test_my_search_is_marked_on_my_map_and_on_nobody_elses(server, browser, page):
    _open(page, server)
    _pick_example(page, 1)
    page.get_by_role("button", name="Search", exact=True).click()
    playwright.expect(page.get_by_text("Logo 1:").first).to_be_visible(timeout=60_000)
    link = page.get_by_role("link", name="See them on the map").get_attribute("href")
    assert link.startswith("/dashboard/?search=")
    page.goto(server + link, wait_until="load")
    page.wait_for_function("() => document.querySelector('#map .js-plotly-plot')?._fullData?.length > 2",
                           timeout=60_000)
    page.click("#show-last")
    playwright.expect(page.locator("#highlight-note")).to_contain_text("Stars: the 2 logo(s)", timeout=30_000)
    stars = page.evaluate("() => document.querySelector('#map .js-plotly-plot')._fullData.at(-1).x.length")
    assert stars == 2
    visitor = browser.new_context(viewport={"width": 1300, "height": 1000})  # another visitor: own cookies, storage
    other = visitor.new_page()
    _open_map(other, server)
    other.click("#show-last")
    playwright.expect(other.locator("#highlight-note")).to_contain_text("Search a photo in the Search tab first",
                                                                        timeout=30_000)
    assert other.evaluate("() => document.querySelector('#map .js-plotly-plot')._fullData.at(-1).x.length") == 0
    visitor.close()


def test_the_map_finds_logos_by_their_text(server, page):
    _open_map(page, server)
    note = page.locator("#highlight-note")
    for word in ("coca", "coca", "coca", "coca", "coca", "coca"):  # the store's logos are read in the background
        page.locator("#text-search").fill("")
        page.locator("#text-search").fill(word)
        page.locator("#text-search").press("Enter")
        playwright.expect(note).to_contain_text("logos reading 'coca'", timeout=30_000)
        if not note.inner_text().startswith("0 "):
            break
        page.wait_for_timeout(5_000)
    found = int(note.inner_text().split()[0])
    assert 1 <= found <= 8, note.inner_text()  # Coca-Cola's logos that carry its name, no other brand's
    page.screenshot(path=str(ARTIFACTS / "map-text-search.png"))


def test_cluster_health_lists_labels_and_highlights_one(server, page):
    _open_map(page, server)
    entries = page.locator("#purity .health-entry")
    playwright.expect(entries.first).to_be_visible(timeout=30_000)
    assert entries.count() >= 10
    label = entries.first.inner_text().split(":")[0]
    entries.first.click()
    playwright.expect(page.locator("#highlight-note")).to_contain_text(f"4 logos labelled '{label}'",
                                                                       timeout=15_000)
    circled = page.evaluate("() => document.querySelector('#map .js-plotly-plot')._fullData.at(-2).x.length")
    assert circled == 4


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


def test_gradio_refuses_a_non_ascii_admin_token(server):
    from gradio_client import Client, handle_file

    client = Client(server + "/", verbose=False)
    value = {"image": handle_file(str(ROOT / "assets/logos/Lidl/lidl-photo2.jpg")), "boxes": []}
    with pytest.raises(Exception, match="valid admin token"):
        client.predict(value, "Lidl", "tökén", api_name="/add_logo")
    assert json.load(urllib.request.urlopen(server + "/health", timeout=5))["status"] == "ok"


def test_an_empty_review_queue_says_how_machine_labels_get_there(server, page):
    progress = json.load(urllib.request.urlopen(server + "/api/v1/review", timeout=10))["progress"]
    assert progress["machine"] == 0  # the small demo store: every label set by people
    page.goto(server + "/review/", wait_until="load")
    empty = page.locator("#review-empty")
    playwright.expect(empty).to_be_visible(timeout=30_000)
    playwright.expect(empty).to_contain_text("python -m pipeline import-photos FOLDER")
    playwright.expect(empty).to_contain_text("Annotate tab")
    playwright.expect(empty).to_contain_text("admin token")
    page.screenshot(path=str(ARTIFACTS / "review-empty.png"))


def test_add_tab_takes_the_whole_upload_as_one_logo_when_no_box_is_drawn(server, app_data):
    """Last in this file: it adds a logo to the store the other tests look at."""
    from gradio_client import Client, handle_file

    from pipeline.store import LogoStore

    store = LogoStore(app_data)
    before = store.count()
    client = Client(server + "/", verbose=False)
    crop = ROOT / "assets/logos/Lidl/lidl-photo2.jpg"
    message, _ = client.predict({"image": handle_file(str(crop)), "boxes": []}, "Lidl", "t", api_name="/add_logo")
    assert "Added logo(s) #" in message and store.count() == before + 1
    (record,) = store.get([store.max_id()])
    width, height = Image.open(crop).size
    assert record.label == "Lidl" and record.box.to_list() == [0, 0, width, height]


def _machine_proposals(app_data: Path) -> dict[str, list[int]]:
    """Copies of stored demo logos added as machine proposals (two brands, three each, known confidences)."""
    import io

    from pipeline.store import LogoStore, NewLogo
    from pipeline.types import LabelSource

    store = LogoStore(app_data)
    added: dict[str, list[int]] = {}
    for brand in ("Lidl", "Starbucks"):
        ids = store.ids_with_label(brand)[:3]
        logos = [NewLogo(crop=Image.open(io.BytesIO(store.thumbnail(i))).convert("RGB"), label=brand,
                         label_source=LabelSource.MACHINE, confidence=0.3 + 0.2 * n) for n, i in enumerate(ids)]
        added[brand] = store.add(logos, store.vectors(ids), store.model_id)
    return added


def test_review_queue_multi_select_reject_confirm_and_keys(server, browser, app_data):
    from pipeline.store import LogoStore
    from pipeline.types import LabelSource

    added = _machine_proposals(app_data)
    store = LogoStore(app_data)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(server + "/review/?label=Lidl", wait_until="load")
    cards = page.locator("#review-queue label")
    playwright.expect(cards).to_have_count(3, timeout=30_000)
    playwright.expect(page.locator("#review-progress")).to_contain_text("machine labels wait for review")
    page.fill("#review-token", "t")
    lidl = added["Lidl"]  # least confident first: the screen shows them in this order
    cards.nth(0).click()
    cards.nth(1).click()  # two selected at once
    playwright.expect(cards.nth(1).locator("input")).to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)
    page.keyboard.press("r")  # keyboard shortcut: reject the selected
    playwright.expect(page.locator("#review-message")).to_contain_text("2 rejected", timeout=15_000)
    labels = store.labels(lidl)
    assert labels[lidl[0]] == labels[lidl[1]] == (None, None) and labels[lidl[2]] == ("Lidl", LabelSource.MACHINE)
    assert store.rejected(lidl[:2]) == {lidl[0]: {"Lidl"}, lidl[1]: {"Lidl"}}
    playwright.expect(cards).to_have_count(1, timeout=15_000)  # rejected logos leave the queue
    page.click("#confirm-rest")  # nothing selected: accept the rest of the screen
    playwright.expect(page.locator("#review-message")).to_contain_text("1 accepted", timeout=15_000)
    assert store.labels([lidl[2]])[lidl[2]] == ("Lidl", LabelSource.HUMAN)

    page.goto(server + "/review/?label=Starbucks", wait_until="load")
    cards = page.locator("#review-queue label")
    playwright.expect(cards).to_have_count(3, timeout=30_000)
    page.fill("#review-token", "t")
    starbucks = added["Starbucks"]
    cards.nth(2).click()  # the most confident one is the wrong one here
    playwright.expect(cards.nth(2).locator("input")).to_be_checked()
    page.keyboard.press("Enter")  # reject the selected, accept the others
    playwright.expect(page.locator("#review-message")).to_contain_text("2 accepted, 1 rejected", timeout=15_000)
    labels = store.labels(starbucks)
    assert [labels[i] for i in starbucks] == [("Starbucks", LabelSource.HUMAN)] * 2 + [(None, None)]
    page.keyboard.press("u")  # undo the whole screen
    playwright.expect(page.locator("#review-message")).to_contain_text("Undone: 3 logos", timeout=15_000)
    assert set(store.labels(starbucks).values()) == {("Starbucks", LabelSource.MACHINE)}
    page.close()


ZOOM_JS = """() => {  // zoom onto a drawn logo, a twentieth of the map wide, as a scroll or a drawn box does
    // (around a logo rather than the middle: the layout is UMAP's, and the middle may hold more than the limit)
    const gd = document.querySelector('#map .js-plotly-plot');
    const x = gd._fullLayout.xaxis.range, y = gd._fullLayout.yaxis.range;
    const logo = gd._fullData.find(t => t.type === 'scattergl' && t.x && t.x.length);  // decoded arrays
    const cx = logo.x[0], cy = logo.y[0], w = (x[1] - x[0]) / 40, h = (y[1] - y[0]) / 40;
    return Plotly.relayout(gd, {'xaxis.range': [cx - w, cx + w], 'yaxis.range': [cy - h, cy + h]})
        .then(() => [cx - w, cx + w, cy - h, cy + h]);
}"""
DRAWN_JS = """() => {
    const gd = document.querySelector('#map .js-plotly-plot');
    return {types: gd.data.map(t => t.type), title: gd.layout.title.text,
            ids: gd.data.filter(t => t.type === 'scattergl' && !['highlighted', 'last search'].includes(t.name))
                        .flatMap(t => (t.customdata || []).map(Number))};
}"""


def test_a_map_past_its_point_limit_shades_every_logo_and_draws_all_in_view_on_zoom(browser, tmp_path_factory):
    data = tmp_path_factory.mktemp("sampled")
    with running_app(data, {"LOGOS_MAP_POINTS": "60"}, ready=lambda health: health["map"] == "ready") as url:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(url + "/dashboard/", wait_until="load")
        page.wait_for_function("() => document.querySelector('#map .js-plotly-plot')?.data?.[0]?.type === 'heatmap'",
                               timeout=120_000)
        whole = page.evaluate(DRAWN_JS)
        assert len(whole["ids"]) == 60 and "zoom in to see every logo" in whole["title"]
        page.screenshot(path=str(ARTIFACTS / "dashboard-sampled.png"))
        page.evaluate(ZOOM_JS)
        page.wait_for_function("() => document.querySelector('#map .js-plotly-plot').layout.title.text"
                               ".includes('in and around the view')", timeout=60_000)
        zoomed = page.evaluate(DRAWN_JS)
        assert "heatmap" not in zoomed["types"] and zoomed["ids"]
        assert f"all {len(zoomed['ids'])} logos" in zoomed["title"]  # every logo in view is a point
        page.screenshot(path=str(ARTIFACTS / "dashboard-zoomed.png"))
        page.close()

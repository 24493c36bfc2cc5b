"""One token check and one error table for every front end; per-visitor state stays per visitor."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app import create_app
from pipeline.importing import import_folder
from pipeline.service import LogoService
from web.auth import MAX_TOKEN_BYTES, Access, AdminAuth
from tests.conftest import ROOT, dash_callback as _dash

TOKEN = "s3cret"
MALFORMED = ["tökén".encode(), "é" * 10, "", " ", "x" * (MAX_TOKEN_BYTES + 1), "\ud800", b"\xff\xfe", None]


@pytest.fixture
def filled(settings, embedder, gallery_dir) -> LogoService:
    service = LogoService(settings.replace(admin_token=TOKEN), embedder=embedder)
    import_folder(service, gallery_dir, progress=False)
    service.maintenance.build_index()
    return service


@pytest.mark.parametrize("token", MALFORMED)
def test_a_malformed_token_is_denied_never_an_error(token):
    assert AdminAuth(TOKEN).check(token) is Access.DENIED
    assert AdminAuth(TOKEN).check(TOKEN) is Access.GRANTED and AdminAuth(TOKEN).check(TOKEN.encode()) is Access.GRANTED


def test_api_answers_401_to_a_non_ascii_token(filled, query_images):
    client = TestClient(create_app(filled))
    photo = {"file": ("a.jpg", query_images["Shell"].read_bytes(), "image/jpeg")}
    before = filled.insight.count()
    for header in ({"X-Admin-Token": "tökén".encode()}, {"Authorization": "Bearer ünïcode".encode()},
                   {"X-Admin-Token": "x" * 10_000}):
        answer = client.post("/api/v1/ann/add", files=photo, headers=header)
        assert answer.status_code == 401 and "admin token" in answer.json()["detail"]
    assert filled.insight.count() == before


def test_an_internal_error_is_a_500_with_a_short_detail_and_a_logged_traceback(filled, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(filled.search, "logo", broken)
    client = TestClient(create_app(filled), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="web.errors"):
        answer = client.get("/api/v1/ann/1")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error; the server log has the details"}
    assert "disk on fire" not in answer.text  # internals stay in the log
    assert any(r.exc_info and "disk on fire" in str(r.exc_info[1]) for r in caplog.records)
    assert client.get("/api/v1/logos/99999/thumbnail").status_code == 404  # a caller's mistake stays a 4xx


def _bulk(client: TestClient, token: str, ids: list[int], session: str = "tab-1", trigger: str = "apply") -> str:
    selected = {"points": [{"customdata": i} for i in ids]}
    response = _dash(
        client, [("bulk-message", "children"), ("labels-version", "data"), ("label-options", "children")],
        [{"id": "apply", "property": "n_clicks", "value": 1}, {"id": "clear", "property": "n_clicks", "value": None},
         {"id": "undo", "property": "n_clicks", "value": 1 if trigger == "undo" else None}],
        [{"id": "map", "property": "selectedData", "value": selected},
         {"id": "bulk-label", "property": "value", "value": "Relabelled"},
         {"id": "token", "property": "value", "value": token},
         {"id": "labels-version", "property": "data", "value": 0},
         {"id": "session", "property": "data", "value": session}],
        f"{trigger}.n_clicks")
    return response["bulk-message"]["children"]


def test_dash_refuses_a_non_ascii_token_and_undo_is_per_session(filled):
    client = TestClient(create_app(filled))
    ids = filled.ann.stored_ids()[0][:2]
    before = {i: filled.labels.of(i) for i in ids}
    assert "valid admin token" in _bulk(client, "tökén", ids)
    assert {i: filled.labels.of(i) for i in ids} == before
    assert _bulk(client, TOKEN, ids, session="tab-1").startswith("Labelled 2 logos")
    assert _bulk(client, TOKEN, ids, session="tab-2", trigger="undo") == "Nothing to undo."  # another visitor
    assert filled.labels.of(ids[0])[0] == "Relabelled"
    assert _bulk(client, TOKEN, ids, session="tab-1", trigger="undo").startswith("Undone: 2 logos")
    assert {i: filled.labels.of(i) for i in ids} == before


def _show_search(client: TestClient, query: str) -> str:
    response = _dash(
        client, [("map", "figure"), ("highlight-note", "children"), ("highlighted", "data")],
        [{"id": "label-search", "property": "value", "value": None},
         {"id": "text-search", "property": "value", "value": None},
         {"id": "show-last", "property": "n_clicks", "value": 1}],
        [{"id": "map-meta", "property": "data", "value": {"traces": 4}},
         {"id": "url", "property": "search", "value": query}], "show-last.n_clicks")
    return response["highlight-note"]["children"]


def test_one_visitors_search_is_not_shown_to_another(filled, query_images):
    """Visitor A searches; visitor B's map (no link, or a guessed one) shows nothing of it."""
    client = TestClient(create_app(filled))
    result = filled.search.photo(query_images["KFC"])
    link_a = filled.search.share(result)
    assert filled._parts.search_links.get(link_a) is result
    assert "Search a photo in the Search tab first" in _show_search(client, "")
    assert "expired" in _show_search(client, "?search=" + link_a[:-2] + "xx")


def test_ids_beyond_64_bits_and_degenerate_embeddings_are_the_callers_mistake(filled):
    client = TestClient(create_app(filled), raise_server_exceptions=False)
    huge = 99999999999999999999
    assert client.get(f"/api/v1/ann/{huge}").status_code == 404
    assert client.get(f"/api/v1/logos/{huge}/thumbnail").status_code == 404
    batch = client.post("/api/v1/ann/batch", json={"logo_ids": [huge, 1], "count": 2})
    assert batch.status_code == 200 and list(batch.json()["results"]) == ["1"]
    dim = len(filled._parts.store.vectors([1])[0])
    for vector in ([0.0] * dim, [float("nan")] * dim):
        answer = client.post("/api/v1/ann/from_embedding", content=json.dumps({"embedding": vector}),
                             headers={"content-type": "application/json"})
        assert answer.status_code in (400, 422), answer.text


@pytest.mark.parametrize(("variable", "value"), [("LOGOS_EMBEDDER", "nope"), ("LOGOS_DETECTOR", "onnx"),
                                                 ("LOGOS_DATA_DIR", "/dev/null/data"), ("LOGOS_K", "ten"),
                                                 ("LOGOS_DEMO", "huge")])
def test_a_bad_setting_stops_the_app_with_one_line_naming_it(variable, value, tmp_path):
    env = {**os.environ, "LOGOS_DATA_DIR": str(tmp_path / "data"), variable: value}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert variable in line


def test_stored_ids_and_the_batch_walk_come_in_pages(filled):
    from fastapi.testclient import TestClient

    from app import create_app

    client = TestClient(create_app(filled))
    every = client.get("/api/v1/ann/stored").json()
    assert every["count"] == filled.insight.count() == len(every["stored"]) and every["next_after"] is None
    pages, after = [], 0
    while True:
        page = client.get("/api/v1/ann/stored", params={"limit": 5, "after": after}).json()
        pages.append(page["stored"])
        assert len(page["stored"]) <= 5
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert [i for page in pages for i in page] == every["stored"] and len(pages) == -(-filled.insight.count() // 5)
    assert client.get("/api/v1/ann/stored", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/ann/stored", params={"limit": 100_001}).status_code == 422

    walked, after = {}, 0
    while True:
        page = client.get("/api/v1/ann/batch", params={"limit": 4, "after": after, "count": 2}).json()
        assert page["count"] == len(page["results"]) <= 4
        walked.update(page["results"])
        if "next_after" not in page:
            break
        after = page["next_after"]
    assert sorted(int(i) for i in walked) == sorted(every["stored"])
    assert all(len(neighbours) == 2 for neighbours in walked.values())
    classic = client.get("/api/v1/ann/batch", params={"logo_ids": f"{every['stored'][0]}", "count": 2}).json()
    assert set(classic) == {"results", "count"}  # robotoff-ann's shape, unchanged


def _map_figure(client: TestClient, relayout: dict | None, meta: dict | None, trigger: str,
                highlighted: dict | None = None):
    """The map figure callback, as the page calls it on a map change or on a zoom; None when nothing is redrawn."""
    response = _dash(client, [("map", "figure"), ("map-meta", "data")],
                     [{"id": "map-key", "property": "data", "value": "ready"},
                      {"id": "labels-version", "property": "data", "value": 0},
                      {"id": "map-zoom", "property": "data", "value": relayout}],
                     [{"id": "map-meta", "property": "data", "value": meta},
                      {"id": "highlighted", "property": "data", "value": highlighted}], trigger)
    return (response["map"]["figure"], response["map-meta"]["data"]) if response else None


def _drawn_ids(figure: dict) -> set[int]:
    return {int(i) for trace in figure["data"] if trace["type"] == "scattergl" for i in trace.get("customdata", [])}


def test_a_map_past_its_point_limit_shows_density_and_every_logo_in_view_on_zoom(settings, embedder, gallery_dir):
    from dashboard.figures import _widened

    service = LogoService(settings.replace(map_points=10), embedder=embedder)
    import_folder(service, gallery_dir, progress=False)
    service.insight.start_map()
    assert service._parts.map.wait(300).state == "ready"
    points = service.insight.map_points()
    client = TestClient(create_app(service))

    whole, meta = _map_figure(client, None, None, "map-key.data")
    assert whole["data"][0]["type"] == "heatmap"  # every logo as density...
    assert len(_drawn_ids(whole)) == 10 and meta["complete"] is False  # ...under a sample of points
    assert "zoom in to see every logo" in whole["layout"]["title"]["text"]

    # zoom to a box whose logos (with the margin drawn around it) fit under the limit
    centre = points.xy[0]
    for half in np.geomspace(np.ptp(points.xy, axis=0).max(), 1e-4, 60):
        view = (centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half)
        x0, x1, y0, y1 = _widened(view)
        inside = (points.xy[:, 0] >= x0) & (points.xy[:, 0] <= x1) & (points.xy[:, 1] >= y0) & (points.xy[:, 1] <= y1)
        if inside.sum() <= 10:
            break
    zoom = {"xaxis.range": [view[0], view[1]], "yaxis.range[0]": view[2], "yaxis.range[1]": view[3]}
    marked = int(points.ids[inside][0])
    zoomed, zoomed_meta = _map_figure(client, zoom, meta, "map-zoom.data", {"ids": [marked], "stars": [[0, 0]]})
    assert all(trace["type"] != "heatmap" for trace in zoomed["data"])
    assert _drawn_ids({"data": zoomed["data"][:-2]}) == set(points.ids[inside].tolist())  # every logo in view
    assert zoomed["data"][-2]["customdata"] == [marked] and len(zoomed["data"][-1]["x"]) == 1  # highlights kept
    assert zoomed_meta["covers"] is not None

    # a zoom inside what is drawn, or a relayout that is not a zoom, redraws nothing
    inner = {"xaxis.range[0]": view[0] / 2 + centre[0] / 2, "xaxis.range[1]": view[1] / 2 + centre[0] / 2,
             "yaxis.range[0]": view[2] / 2 + centre[1] / 2, "yaxis.range[1]": view[3] / 2 + centre[1] / 2}
    assert _map_figure(client, inner, zoomed_meta, "map-zoom.data") is None
    assert _map_figure(client, {"dragmode": "pan"}, zoomed_meta, "map-zoom.data") is None

    # a zoom along x only keeps y's last range (the whole map's here)
    x_only, _ = _map_figure(client, {"xaxis.range": [view[0], view[1]]}, meta, "map-zoom.data")
    wide_x0, wide_x1, _, _ = _widened((view[0], view[1], 0.0, 0.0))
    in_band = (points.xy[:, 0] >= wide_x0) & (points.xy[:, 0] <= wide_x1)
    assert _drawn_ids(x_only) <= set(points.ids[in_band].tolist()) and _drawn_ids(x_only)

    # zooming back out draws the whole map again
    back, back_meta = _map_figure(client, {"xaxis.autorange": True, "yaxis.autorange": True}, zoomed_meta,
                                  "map-zoom.data")
    assert back["data"][0]["type"] == "heatmap" and _drawn_ids(back) == _drawn_ids(whole) and back_meta["view"] is None


def test_a_page_export_leaves_no_folder_behind_and_is_served_from_the_swept_cache(filled, tmp_path, monkeypatch):
    """The page's export left its temporary folder (the archive, and for COCO a copy of every photo) in /tmp."""
    from web.search_ui import served_archive

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-cache"))
    archive, _ = filled.insight.export("csv")
    built = archive.parent
    kept = served_archive(archive)
    assert not built.exists()  # the temporary folder is gone at once
    assert kept.is_file() and kept.is_relative_to(tmp_path / "gradio-cache")  # Gradio sweeps its cache by age


def test_the_map_summary_says_what_to_do_with_an_empty_or_unlabelled_store(service, gallery_dir):
    from dashboard.layout import summary_text

    assert "The store is empty" in summary_text(service) and "import-folder" in summary_text(service)
    import_folder(service, gallery_dir, progress=False)
    assert "No labels yet" not in summary_text(service)
    service.labels.set(service._parts.store.ids(), None)  # every label cleared
    summary = summary_text(service)
    assert summary.startswith("18 logos, 0 labels") and "No labels yet: lasso a group" in summary

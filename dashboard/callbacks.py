"""What the map page does: progress, the figure, hover, click, bulk labels, cluster health, highlights."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import dash
import numpy as np
import plotly.graph_objects as go
from dash import ALL, Input, Output, Patch, State, ctx, html, no_update

from dashboard.figures import View, map_figure, map_frame, view_contains
from dashboard.layout import summary_text
from dashboard.review import review_link
from pipeline.health import MIN_JUDGED_LOGOS
from pipeline.errors import LogoError
from pipeline.projection import MapPoints
from pipeline.service import LogoService
from pipeline.usecases.calibration import calibration_summary
from web.auth import AdminAuth

THUMB = "/api/v1/logos/{}/thumbnail"
LIST_LIMIT = 30


def _empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font=dict(size=16))
    figure.update_layout(height=720, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return figure


def _logo_line(service: LogoService, logo_id: int) -> str:
    label, source = service.labels.of(logo_id)
    return f"#{logo_id}: {label or 'unlabelled'}" + (f" ({source.value})" if source else "")


def _neighbour_tile(logo_id: int, distance: float, label: str | None) -> html.Div:
    return html.Div([html.Img(src=THUMB.format(logo_id), style={"width": "64px", "height": "64px",
                                                               "objectFit": "contain", "background": "#fff"}),
                     html.Div(f"{label or 'unlabelled'}", style={"fontSize": "0.75rem"}),
                     html.Div(f"d={distance:.2f} #{logo_id}", style={"fontSize": "0.7rem", "color": "#666"})],
                    style={"width": "76px", "textAlign": "center"})


def _review_anchor(ids: list[int], text: str) -> html.A:
    """A link that opens the review queue on these logos (their proposals, accepted or fixed many at a time)."""
    return html.A(text, href=review_link([int(i) for i in ids]), target="_blank", className="review-link",
                  style={"fontSize": "0.8rem", "marginLeft": "0.3rem"})


def _entry(kind: str, index: Any, text: str) -> html.Button:
    return html.Button(text, id={"type": kind, "index": index}, className="health-entry",
                       style={"display": "block", "width": "100%", "textAlign": "left", "margin": "2px 0",
                              "background": "#fff", "border": "1px solid #eee", "cursor": "pointer"})


def _text_search_note(service: LogoService, text: str) -> tuple[np.ndarray, str]:
    """The logos reading ``text`` and what to say of them: how many, and how much of the store is read yet."""
    if not text.strip():
        return np.zeros(0, np.int64), ""
    found = service.reading.find_text(text)
    note = f"{len(found.ids)} logos reading '{text.strip()}'"
    if service.settings.read_text == 0:
        return np.asarray(found.ids, np.int64), note + " (reading is off: LOGOS_READ_TEXT=0)."
    if found.read < found.readable:
        note += f" among the {found.read:,} of {found.readable:,} logos read so far (the rest are being read)"
    return np.asarray(found.ids, np.int64), note + "."


def register_callbacks(app: dash.Dash, service: LogoService,  # noqa: C901 - one closure per callback
                       auth: AdminAuth) -> None:
    settings = service.settings

    @app.callback(Output("map-status", "children"), Output("map-progress", "value"), Output("map-key", "data"),
                  Output("summary", "children"), Input("tick", "n_intervals"), State("map-key", "data"))
    def progress(_: int | None, key: str | None):
        build = service.build.status()
        if build.building:  # the map is fitted once the store is complete
            return (f"{build.sentence()} The map is fitted once the store is ready.", str(build.progress),
                    no_update, summary_text(service))
        status = service.insight.map_status()
        if status.state == "empty":
            service.insight.start_map()  # the first visit starts the fit; later starts reuse the cached one
            status = service.insight.map_status()
        count = service.insight.count()
        if status.state == "ready":
            text = f"Map of {status.fitted + status.placed} logos"
            if status.placed:
                text += f" ({status.placed} placed since the fit without refitting)"
            if count > status.fitted + status.placed:
                text += f"; {count - status.fitted - status.placed} new logos being placed"
        else:
            text = f"Map: {status.state}, {status.message}"
        new_key = f"{status.state}:{status.fitted}:{count}:{status.seconds}"
        return text, str(status.progress), new_key if new_key != key else no_update, summary_text(service)

    @app.callback(Output("recompute-message", "children"), Input("recompute", "n_clicks"), State("token", "value"),
                  prevent_initial_call=True)
    def recompute(_: int | None, token: str | None):
        """A refit takes both cores for minutes at scale: only with the admin token."""
        if refusal := auth.refusal(token):
            return refusal
        service.insight.start_map(refit=True)
        return "Refitting the map on every logo."

    # Plotly reports every relayout (resize, drag mode, selection...); only zooms and pans reach the server
    app.clientside_callback(
        """function (relayout) {
            const zoom = Object.keys(relayout || {}).some(
                key => key.startsWith("xaxis.range") || key.startsWith("yaxis.range") || key.endsWith("autorange"));
            return zoom ? relayout : window.dash_clientside.no_update;
        }""",
        Output("map-zoom", "data"), Input("map", "relayoutData"), prevent_initial_call=True)

    @app.callback(Output("map", "figure"), Output("map-meta", "data"), Input("map-key", "data"),
                  Input("labels-version", "data"), Input("map-zoom", "data"), State("map-meta", "data"),
                  State("highlighted", "data"))
    def figure(_: str | None, __: int, relayout: dict | None, meta: dict | None, highlighted: dict | None):
        view = (meta or {}).get("view")
        points = None
        if ctx.triggered_id == "map-zoom":
            zoom = zoomed_view(relayout)
            if zoom is None:
                return no_update, no_update
            if zoom != "reset" and None in zoom:  # one axis zoomed: the other keeps its last range
                points = service.insight.map_points()
                if points is None:
                    return no_update, no_update
                known = view or (float(points.xy[:, 0].min()), float(points.xy[:, 0].max()),
                                 float(points.xy[:, 1].min()), float(points.xy[:, 1].max()))
                zoom = tuple(known[n] if value is None else value for n, value in enumerate(zoom))
            if not redraw_needed(meta, zoom):
                return no_update, no_update
            view = None if zoom == "reset" else zoom
        points = points or service.insight.map_points()
        if points is None:
            return _empty_figure(service.insight.map_status().message), {"traces": 0}
        frame = map_frame(points.ids, points.xy, service.labels.frame(), settings.map_points, view=view)
        if frame.sampled:
            title = (f"{len(frame.data):,} of {frame.in_view:,} logos as points, shade: where they all are"
                     + (" (in view)" if frame.view else "") + " · zoom in to see every logo")
        elif frame.complete:
            title = f"{frame.total:,} logos · lasso to select · scroll to zoom"
        else:
            title = f"all {frame.in_view:,} logos in and around the view, of {frame.total:,} · double-click: whole map"
        drawn = map_figure(frame, title)
        if highlighted:  # a redraw keeps what was highlighted (circled logos, the stars of a search)
            marked, xy = _on_map(points, highlighted["ids"])
            stars = np.asarray(highlighted["stars"], dtype=np.float32).reshape(-1, 2)
            drawn.data[-2].update(x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), customdata=marked.tolist())
            drawn.data[-1].update(x=stars[:, 0].tolist(), y=stars[:, 1].tolist())
        return drawn, {"traces": len(drawn.data), "view": view, "complete": frame.complete,
                       "covers": None if frame.sampled else frame.view}

    @app.callback(Output("tooltip", "show"), Output("tooltip", "bbox"), Output("tooltip", "children"),
                  Input("map", "hoverData"))
    def hover(data: dict | None):
        if not data or not data.get("points") or data["points"][0].get("customdata") is None:
            return False, no_update, no_update
        point = data["points"][0]
        logo_id = int(point["customdata"])
        return True, point["bbox"], html.Div([
            html.Img(src=THUMB.format(logo_id), style={"width": "96px", "height": "96px", "objectFit": "contain",
                                                       "background": "#fff"}),
            html.Div(_logo_line(service, logo_id), style={"fontSize": "0.8rem", "maxWidth": "140px"}),
        ], id="hover-card")

    @app.callback(Output("logo-panel", "children"), Input("map", "clickData"), prevent_initial_call=True)
    def click(data: dict | None):
        if not data or not data.get("points") or data["points"][0].get("customdata") is None:
            return no_update
        logo_id = int(data["points"][0]["customdata"])
        neighbours = service.search.logo(logo_id, 8)
        return html.Div([
            html.Div([html.Img(src=THUMB.format(logo_id), style={"width": "120px", "height": "120px",
                                                                 "objectFit": "contain", "background": "#fff"}),
                      html.Div([html.Div(_logo_line(service, logo_id), id="selected-logo"),
                                html.A("Search with this logo", href=f"/?logo={logo_id}", target="_top")],
                               style={"display": "flex", "flexDirection": "column", "gap": "0.4rem"})],
                     style={"display": "flex", "gap": "0.6rem"}),
            html.Div("Nearest logos", style={"margin": "0.5rem 0 0.2rem", "fontWeight": "bold"}),
            html.Div([_neighbour_tile(n.id, n.distance, n.label) for n in neighbours], id="neighbours",
                     style={"display": "flex", "flexWrap": "wrap", "gap": "0.3rem"}),
        ])

    @app.callback(Output("selection-count", "children"), Input("map", "selectedData"), prevent_initial_call=True)
    def selection(data: dict | None):
        ids = _selected(data)
        return f"{len(ids)} logos selected." if ids else "Nothing selected: lasso or box-select logos on the map."

    @app.callback(Output("bulk-message", "children"), Output("labels-version", "data"),
                  Output("label-options", "children"),
                  Input("apply", "n_clicks"), Input("clear", "n_clicks"), Input("undo", "n_clicks"),
                  State("map", "selectedData"), State("bulk-label", "value"), State("token", "value"),
                  State("labels-version", "data"), State("session", "data"), prevent_initial_call=True)
    def bulk(_: int | None, __: int | None, ___: int | None, selected: dict | None, label: str | None,
             token: str | None, version: int, session: str | None):
        if refusal := auth.refusal(token):
            return refusal, no_update, no_update
        try:
            if ctx.triggered_id == "undo":
                action = service.labels.undo(session, who=auth.who) if session else None
                if action is None:
                    return "Nothing to undo.", no_update, no_update
                message = f"Undone: {len(action.ids)} logos have their previous labels back."
            else:
                ids = _selected(selected)
                if not ids:
                    return "Select logos on the map first (lasso or box).", no_update, no_update
                new_label = None if ctx.triggered_id == "clear" else (label or "").strip()
                if ctx.triggered_id == "apply" and not new_label:
                    return "Type a label first.", no_update, no_update
                action = service.labels.bulk(ids, new_label, who=auth.who, session=session)
                message = (f"Labelled {len(action.ids)} logos as '{new_label}'." if new_label
                           else f"Cleared the labels of {len(action.ids)} logos.")
        except LogoError as exc:
            return f"Not done: {exc}", no_update, no_update
        options = [html.Option(value=name) for name in service.labels.in_use()]
        return message, (version or 0) + 1, options

    @app.callback(Output("threshold-message", "children"), Input("set-threshold", "n_clicks"),
                  Input("recalibrate", "n_clicks"), State("bulk-label", "value"), State("threshold", "value"),
                  State("token", "value"), prevent_initial_call=True)
    def confidence(_: int | None, __: int | None, label: str | None, value: float | None, token: str | None):
        if refusal := auth.refusal(token):
            return refusal
        try:
            if ctx.triggered_id == "recalibrate":
                summary = calibration_summary(service.calibration.fit())
                return (f"Calibrated on {summary['answers']} answers: calibration error {summary['ece']:.3f}, "
                        f"default threshold {summary['default_threshold']:.2f}.")
            label = (label or "").strip()
            if not label:
                return "Type the label above first."
            service.labels.set_threshold(label, value)
        except LogoError as exc:
            return f"Not done: {exc}"
        return (f"'{label}' is now given at confidence {value:.2f} or more." if value is not None
                else f"'{label}' uses the default threshold again.")

    @app.callback(Output("purity", "children"), Output("suspects", "children"), Output("clusters", "children"),
                  Output("cluster-ids", "data"), Output("health-tick", "disabled"), Output("health-note", "children"),
                  Output("store-accuracy", "children"),
                  Input("labels-version", "data"), Input("map-key", "data"), Input("refresh-health", "n_clicks"),
                  Input("health-tick", "n_intervals"))
    def health(_: int, key: str | None, refresh: int | None, __: int | None):
        if service.insight.count() == 0:
            return "No logos yet.", "", "", [], True, "", "No logos yet."
        if ctx.triggered_id == "refresh-health" and refresh:
            service.insight.request_health()  # coalesced into the one background run; computes only what changed
        # never computed by a page load: both are made by the background worker and read here
        report = service.insight.cluster_health(wait=False)
        accuracy = _accuracy(service)
        waiting = html.Div("Computing in the background after the last change; it appears here when done.",
                           style={"fontSize": "0.85rem"})
        if report is None:  # the logos changed: the run their change asked for has not finished yet
            return waiting, waiting, waiting, [], False, "", accuracy or waiting
        note = (f"Neighbours of a random sample of {report.sampled:,} of {report.logos:,} logos."
                if report.sampled < report.logos else f"Neighbours of all {report.logos:,} logos.")
        purity = [html.Div("Least pure first: the share of each logo's nearest logos that carry its label."
                           + (f" {report.too_few:,} labels with fewer than {MIN_JUDGED_LOGOS} logos are not judged."
                              if report.too_few else ""), style={"fontSize": "0.8rem", "color": "#555"})]
        purity += [_entry("health-label", h.label, f"{h.label}: purity {h.purity:.0%} · {h.logos} logos"
                          + (f" · {h.suspects} suspect" if h.suspects else "")) for h in report.labels[:LIST_LIMIT]]
        suspects = [_entry("health-logo", s.logo_id,
                           f"#{s.logo_id} '{s.label}' ({s.source.value if s.source else '?'}): neighbours say "
                           f"'{s.neighbours_say}' ({s.disagreement:.0%} vs {s.agreement:.0%})")
                    for s in report.suspects[:LIST_LIMIT]] or [html.Div("No suspect labels.")]
        suspects.insert(0, html.Div("Labelled logos whose nearest labelled logos (3 or more) carry one other label "
                                    "two times in three: maybe mislabelled.",
                                    style={"fontSize": "0.8rem", "color": "#555"}))
        if report.suspects:
            suspects.insert(0, _review_anchor([s.logo_id for s in report.suspects], "Review these suspects"))
        if key is None or not key.startswith("ready"):
            clusters: list[Any] = [html.Div("Clusters appear once the map is fitted.")]
        else:
            clusters = [html.Div([_entry("health-cluster", n, f"Cluster {n + 1}: {c.size} unlabelled logos "
                                         f"(spread {c.spread:.2f})"),
                                  _review_anchor(c.ids, "Review this cluster")])
                        for n, c in enumerate(report.clusters[:LIST_LIMIT])]
            clusters = clusters or [html.Div("No dense unlabelled clusters.")]
            clusters.insert(0, html.Div("Dense groups of unlabelled logos on the map: lasso one to label it.",
                                        style={"fontSize": "0.8rem", "color": "#555"}))
        return (purity, suspects, clusters, [c.ids for c in report.clusters[:LIST_LIMIT]], accuracy is not None,
                note, accuracy or waiting)

    def show(meta: dict | None, ids: np.ndarray, note: str, stars: np.ndarray | None = None):
        """Circle ``ids`` (and star ``stars``) on the drawn map with a small patch; remember them for redraws."""
        traces = (meta or {}).get("traces", 0)
        stars = np.zeros((0, 2), np.float32) if stars is None else np.asarray(stars, np.float32).reshape(-1, 2)
        marked, xy = _on_map(service.insight.map_points(), ids)
        patch = Patch()
        patch["data"][traces - 2]["x"] = xy[:, 0].tolist()
        patch["data"][traces - 2]["y"] = xy[:, 1].tolist()
        patch["data"][traces - 2]["customdata"] = marked.tolist()
        patch["data"][traces - 1]["x"] = stars[:, 0].tolist()
        patch["data"][traces - 1]["y"] = stars[:, 1].tolist()
        return patch, note, {"ids": marked.tolist(), "stars": stars.tolist()}

    # Two callbacks, not one: Dash applies only the latest answer of a callback, and the health lists are
    # rebuilt whenever the background report lands; as inputs of the same callback, their rebuild would
    # discard the answer to a click on "Show my search" still being computed.
    @app.callback(Output("map", "figure", allow_duplicate=True), Output("highlight-note", "children"),
                  Output("highlighted", "data"),
                  Input("label-search", "value"), Input("text-search", "value"), Input("show-last", "n_clicks"),
                  State("map-meta", "data"), State("url", "search"), prevent_initial_call=True)
    def highlight(label: str | None, text: str | None, _: int | None, meta: dict | None, query: str | None):
        if (meta or {}).get("traces", 0) < 2:
            return no_update, no_update, no_update  # no map yet
        if ctx.triggered_id == "label-search":
            ids = service.labels.ids_with(label)
            return show(meta, ids, f"{len(ids)} logos labelled '{label}'." if label else "")
        if ctx.triggered_id == "text-search":
            return show(meta, *_text_search_note(service, text or ""))
        search_id = parse_qs((query or "").lstrip("?")).get("search", [None])[0]
        if search_id is None:
            return no_update, "Search a photo in the Search tab first, then open the map from its link.", no_update
        shown = service.search.on_map(search_id)
        if shown is None:
            return no_update, "That search has expired: search the photo again.", no_update
        return show(meta, shown.neighbour_ids, f"Stars: the {len(shown.stars)} logo(s) of your search; circled: "
                    f"their {len(shown.neighbour_ids)} nearest stored logos.", shown.stars)

    @app.callback(Output("map", "figure", allow_duplicate=True),
                  Output("highlight-note", "children", allow_duplicate=True),
                  Output("highlighted", "data", allow_duplicate=True),
                  Input({"type": "health-label", "index": ALL}, "n_clicks"),
                  Input({"type": "health-logo", "index": ALL}, "n_clicks"),
                  Input({"type": "health-cluster", "index": ALL}, "n_clicks"),
                  State("cluster-ids", "data"), State("map-meta", "data"), prevent_initial_call=True)
    def highlight_entry(_: list, __: list, ___: list, cluster_ids: list[list[int]] | None, meta: dict | None):
        trigger = ctx.triggered_id
        if (meta or {}).get("traces", 0) < 2 or not isinstance(trigger, dict) or not ctx.triggered[0]["value"]:
            return no_update, no_update, no_update  # no map yet, or a list entry was just created (no click)
        if trigger["type"] == "health-label":
            ids = service.labels.ids_with(trigger["index"])
            return show(meta, ids, f"{len(ids)} logos labelled '{trigger['index']}'.")
        if trigger["type"] == "health-logo":
            return show(meta, np.array([trigger["index"]]), f"Suspect {_logo_line(service, int(trigger['index']))}.")
        ids = np.array((cluster_ids or [[]])[int(trigger["index"])])
        return show(meta, ids, f"Unlabelled cluster {int(trigger['index']) + 1}: {len(ids)} logos. "
                               "Lasso them to label them.")


def _accuracy(service: LogoService) -> html.Div | None:
    """The store's leave-one-out accuracy as the background worker last made it (None: being made)."""
    try:
        report = service.insight.store_evaluation(wait=False)
    except LogoError as exc:
        return html.Div(f"Nothing to evaluate yet: {exc}")
    if report is None:
        return None
    worst = [html.Div(f"{a.label}: top-1 {a.top1:.0%} · recall@{report.k} {a.recall_at_k:.0%} · "
                      f"{a.logos} logos", style={"fontSize": "0.85rem"})
             for a in report.labels[:LIST_LIMIT] if a.top1 < 1]
    confused = [html.Li(f"{true} → {given}: {times}×") for true, given, times in report.confused[:LIST_LIMIT]]
    return html.Div([
        html.P(f"Each of {report.queries} human-labelled logos searched among the others (itself left out): "
               f"named right {report.top1:.1%}, its label among the {report.k} nearest {report.recall_at_k:.1%}.",
               style={"fontSize": "0.85rem"}),
        html.H5("Worst labels", style={"margin": "0.3rem 0"}),
        *(worst or [html.Div("Every label is named right.")]),
        html.H5("Most confused (label → named instead)", style={"margin": "0.3rem 0"}),
        html.Ul(confused or [html.Li("none")], style={"fontSize": "0.85rem", "paddingLeft": "1.2rem"}),
    ])


def _on_map(points: MapPoints | None, ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ids among ``ids`` that are on the map, and their coordinates."""
    if points is None:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    on_map = np.isin(points.ids, np.asarray(ids, dtype=np.int64))
    return points.ids[on_map], points.xy[on_map]


def zoomed_view(relayout: dict | None) -> tuple[float | None, ...] | str | None:
    """The box a zoom or pan shows (``x0, x1, y0, y1``; None for an axis it leaves as it was), ``"reset"``
    for a zoom back out (either axis), None for a relayout that is not a zoom (drag mode, selection, resize).

    Example:
        >>> zoomed_view({"xaxis.range[0]": 0, "xaxis.range[1]": 2, "yaxis.range[0]": -1, "yaxis.range[1]": 1})
        (0.0, 2.0, -1.0, 1.0)
        >>> zoomed_view({"xaxis.range": [0, 2]})
        (0.0, 2.0, None, None)
        >>> zoomed_view({"yaxis.autorange": True}), zoomed_view({"dragmode": "pan"})
        ('reset', None)
    """
    relayout = relayout or {}
    if relayout.get("xaxis.autorange") or relayout.get("yaxis.autorange"):
        return "reset"
    ranges: list[float | None] = []
    for axis in ("xaxis", "yaxis"):
        pair = relayout.get(f"{axis}.range") or [relayout.get(f"{axis}.range[0]"), relayout.get(f"{axis}.range[1]")]
        ranges += [None, None] if any(v is None for v in pair) else [float(pair[0]), float(pair[1])]
    return None if all(v is None for v in ranges) else tuple(ranges)


def redraw_needed(meta: dict | None, zoom: View | str) -> bool:
    """Whether a zoom shows logos the drawn figure lacks (a sample, or a box it does not cover)."""
    meta = meta or {}
    if meta.get("complete", True) and not meta.get("view"):
        return False  # every logo is drawn already
    if zoom == "reset":
        return True
    covers = meta.get("covers")
    return covers is None or not view_contains(tuple(covers), zoom)  # type: ignore[arg-type]


def _selected(data: dict | None) -> list[int]:
    """Logo ids of a lasso / box selection."""
    points = (data or {}).get("points") or []
    return sorted({int(p["customdata"]) for p in points if p.get("customdata") is not None})

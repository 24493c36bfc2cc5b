"""The review queue, mounted under ``/review/``: people confirm, reject or fix machine labels many at a time.

A screen shows up to :data:`PER_SCREEN` proposals grouped by proposed label, the
least confident group first; each logo sits beside the nearest logos people gave
that label. The reviewer clicks the wrong ones and confirms the screen: the clicked
ones are rejected ("not this label", remembered) and all others accepted (they
become human labels). Keys: Enter confirms the screen, ``r`` rejects the selected,
``a`` accepts the selected, ``l`` relabels the selected with the typed label,
``u`` undoes the last screen (``review_assets/keys.js``).

``?ids=1,2,3`` opens the queue on chosen logos (the map's "review this cluster"),
``?label=NAME`` on one label's proposals. Everything goes through the shared
:class:`pipeline.service.LogoService`; writes need the admin token.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import dash
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from pipeline.annotation import NO_PROPOSAL, ReviewGroup, ReviewItem, ReviewVerdict
from pipeline.errors import LogoError
from pipeline.service import LogoService
from web.auth import Access, AdminAuth

PREFIX = "/review/"
PER_SCREEN = 40
MAX_IDS = 2000  # a link carries at most this many logo ids
THUMB = "/api/v1/logos/{}/thumbnail"
MAX_CALLBACK_BYTES = 1024 * 1024  # a screen's verdicts are a few hundred ids; bigger bodies are refused (413)
BUTTON = {"padding": "0.35rem 0.7rem", "cursor": "pointer"}


def review_link(ids: list[int] | None = None, label: str | None = None) -> str:
    """The queue's address for chosen logos (at most :data:`MAX_IDS`) or one label's proposals."""
    if ids is not None:
        return f"{PREFIX}?ids={','.join(str(int(i)) for i in ids[:MAX_IDS])}"
    return f"{PREFIX}?label={quote(label or '')}" if label else PREFIX


def _query(search: str | None) -> tuple[list[int] | None, str | None]:
    params = parse_qs((search or "").lstrip("?"))
    ids = None
    if params.get("ids"):
        ids = [int(x) for x in params["ids"][0].split(",") if x.strip().isdigit()][:MAX_IDS]
    return ids, (params.get("label") or [None])[0]


def _card(item: ReviewItem) -> html.Div:
    confidence = "?" if item.confidence is None else f"{item.confidence:.0%}"
    note = "" if item.stored else (f"now: {item.current}" if item.current else "unlabelled")
    return html.Div([
        html.Img(src=THUMB.format(item.id), style={"width": "96px", "height": "96px", "objectFit": "contain",
                                                   "background": "#fff"}),
        html.Div(f"#{item.id} · {confidence}", style={"fontSize": "0.75rem"}),
        html.Div("named by its text", title="the logo's text named this label",
                 style={"fontSize": "0.7rem", "color": "#2a6"}) if item.proposed_by == "text" else None,
        html.Div(note, style={"fontSize": "0.7rem", "color": "#a33"}) if note else None,
        html.Div([html.Img(src=THUMB.format(ref), title=f"#{ref}", style={
            "width": "30px", "height": "30px", "objectFit": "contain", "background": "#fff",
            "border": "1px solid #ddd"}) for ref in item.references], style={"display": "flex", "gap": "2px"},
            title="nearest logos people gave this label"),
    ], className="review-card", style={"width": "104px", "textAlign": "center"})


def _group(group: ReviewGroup) -> html.Div:
    known = [i.confidence for i in group.items if i.confidence is not None]
    spread = f" · confidence {min(known):.0%}-{max(known):.0%}" if known else ""
    title = group.label if group.label != NO_PROPOSAL else "(nothing to propose: relabel or leave)"
    return html.Div([
        html.H4(f"{title} · {len(group.items)} logos{spread}", style={"margin": "0.6rem 0 0.3rem"}),
        dcc.Checklist(id={"type": "review-group", "index": group.label},
                      options=[{"label": _card(item), "value": item.id} for item in group.items], value=[],
                      inline=True, className="review-group",
                      labelStyle={"display": "inline-block", "margin": "3px", "padding": "3px",
                                  "border": "1px solid #ddd", "borderRadius": "4px", "cursor": "pointer"}),
    ])


def _layout(service: LogoService) -> html.Div:
    read_only = not service.settings.admin_token
    return html.Div([
        html.H2("Review machine labels", style={"margin": "0.2rem 0"}),
        html.P("", id="review-progress", style={"margin": "0.2rem 0"}),
        html.P("Click the logos whose label is wrong, then confirm the screen: the clicked ones are rejected, "
               "all others accepted. Keys: Enter confirm · r reject selected · a accept selected · "
               "l relabel selected · u undo.", style={"fontSize": "0.9rem", "color": "#444"}),
        html.Div([
            dcc.Input(id="review-token", type="password", placeholder="admin token", disabled=read_only,
                      style={"width": "10rem"}),
            dcc.Dropdown(id="review-label", placeholder="all proposed labels", clearable=True,
                         style={"width": "18rem"}),
            html.Button("Reject selected, accept the rest (Enter)", id="confirm-rest", disabled=read_only,
                        style={**BUTTON, "fontWeight": "bold"}),
            html.Button("Reject selected (r)", id="reject-selected", disabled=read_only, style=BUTTON),
            html.Button("Accept selected (a)", id="accept-selected", disabled=read_only, style=BUTTON),
            dcc.Input(id="relabel-text", type="text", placeholder="new label", disabled=read_only,
                      style={"width": "10rem"}),
            html.Button("Relabel selected (l)", id="relabel-selected", disabled=read_only, style=BUTTON),
            html.Button("Undo (u)", id="undo-review", disabled=read_only, style=BUTTON),
        ], style={"display": "flex", "gap": "0.4rem", "alignItems": "center", "flexWrap": "wrap"}),
        html.P(Access.READ_ONLY.message if read_only else "",
               id="review-message", style={"fontSize": "0.9rem", "minHeight": "1.2rem"}),
        html.Div(id="review-queue"),
        dcc.Store(id="review-screen"),
        dcc.Store(id="review-version", data=0),
        dcc.Store(id="review-session", storage_type="session", data=secrets.token_urlsafe(16)),
        dcc.Location(id="review-url", refresh=False),
    ], style={"fontFamily": "sans-serif", "margin": "0.6rem 1rem"})


def _nothing_to_review(service: LogoService, ids: list[int] | None) -> html.Div:
    """An empty queue says why, and how machine labels get here."""
    if ids is not None:
        return html.Div(html.P("These logos need no review."))
    if service.review.progress().machine:
        return html.Div(html.P("Nothing left to review for this label."))
    return html.Div([
        html.P("Nothing to review yet: machine labels come from auto-annotation, which stores every logo it finds "
               "on a photo with the label its nearest logos give it."),
        html.Ul([html.Li(["Many photos: ", html.Code("python -m pipeline import-photos FOLDER"),
                          " (resumable; a CSV or JSONL list of paths works too)."]),
                 html.Li("A few photos: the Annotate tab of the search page."),
                 html.Li("Or open the queue on chosen logos from the map: Cluster health, 'Review this cluster'.")]),
        html.P("Auto-annotating and reviewing need the admin token (ADMIN_TOKEN on the server)."
               if service.settings.admin_token else Access.READ_ONLY.message),
    ], id="review-empty")


def _progress_text(service: LogoService) -> str:
    p = service.review.progress()
    return (f"{p.machine} machine labels wait for review · {p.human} labelled by people · "
            f"{p.rejected} rejected · {p.unlabelled} unlabelled.")


def create_review(service: LogoService, auth: AdminAuth) -> dash.Dash:
    """The review queue's Dash app; serve its Flask ``server`` under :data:`PREFIX`."""
    app = dash.Dash(__name__, requests_pathname_prefix=PREFIX, title="Review labels", update_title=None,
                    assets_folder=str(Path(__file__).parent / "review_assets"))
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_CALLBACK_BYTES
    app.layout = lambda: _layout(service)

    @app.callback(Output("review-queue", "children"), Output("review-screen", "data"),
                  Output("review-progress", "children"), Output("review-label", "options"),
                  Input("review-url", "search"), Input("review-version", "data"), Input("review-label", "value"))
    def screen(search: str | None, _: int, label: str | None):
        ids, url_label = _query(search)
        try:
            groups = service.review.queue(ids=ids, label=label or url_label, limit=PER_SCREEN)
        except LogoError as exc:
            return html.P(f"Cannot show the queue: {exc}"), None, _progress_text(service), []
        proposals = {str(item.id): item.label for group in groups for item in group.items}
        options = service.review.proposed_labels()
        if not groups:
            return _nothing_to_review(service, ids), {"proposals": {}}, _progress_text(service), options
        return [_group(group) for group in groups], {"proposals": proposals}, _progress_text(service), options

    @app.callback(Output("review-message", "children"), Output("review-version", "data"),
                  Input("confirm-rest", "n_clicks"), Input("reject-selected", "n_clicks"),
                  Input("accept-selected", "n_clicks"), Input("relabel-selected", "n_clicks"),
                  Input("undo-review", "n_clicks"),
                  State({"type": "review-group", "index": ALL}, "value"), State("review-screen", "data"),
                  State("review-token", "value"), State("relabel-text", "value"), State("review-version", "data"),
                  State("review-session", "data"), prevent_initial_call=True)
    def act(*args: Any):
        selected_lists, screen_data, token, new_label, version, session = args[5:]
        if refusal := auth.refusal(token):
            return refusal, no_update
        proposals = {int(i): label for i, label in ((screen_data or {}).get("proposals") or {}).items()}
        selected = sorted({int(i) for values in selected_lists or [] for i in values or []} & set(proposals))
        rest = [i for i in proposals if i not in selected and proposals[i] != NO_PROPOSAL]
        trigger = ctx.triggered_id
        try:
            if trigger == "undo-review":
                change = service.labels.undo(session, who=auth.who) if session else None
                if change is None:
                    return "Nothing to undo.", no_update
                return f"Undone: {len(change.ids)} logos have their previous labels back.", (version or 0) + 1
            if trigger != "confirm-rest" and not selected:
                return "Select logos first (click them).", no_update
            if trigger == "confirm-rest":
                verdict = ReviewVerdict(accept=rest, reject=[i for i in selected if proposals[i] != NO_PROPOSAL])
            elif trigger == "reject-selected":
                verdict = ReviewVerdict(reject=[i for i in selected if proposals[i] != NO_PROPOSAL])
            elif trigger == "accept-selected":
                verdict = ReviewVerdict(accept=[i for i in selected if proposals[i] != NO_PROPOSAL])
            else:
                if not (new_label or "").strip():
                    return "Type the new label first.", no_update
                verdict = ReviewVerdict(relabel=dict.fromkeys(selected, new_label.strip()))
            service.review.apply(verdict, {i: label for i, label in proposals.items() if label != NO_PROPOSAL},
                           who=auth.who, session=session)
        except LogoError as exc:
            return f"Not done: {exc}", no_update
        parts = [f"{len(verdict.accept)} accepted" if verdict.accept else "",
                 f"{len(verdict.reject)} rejected" if verdict.reject else "",
                 f"{len(verdict.relabel)} relabelled '{new_label.strip()}'" if verdict.relabel else ""]
        return "Done: " + ", ".join(p for p in parts if p) + ".", (version or 0) + 1

    return app

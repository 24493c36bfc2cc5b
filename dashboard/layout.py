"""The page: map on the left; selected logo, bulk labelling and cluster health on the right."""

from __future__ import annotations

import secrets

from dash import dcc, html

from pipeline.service import LogoService
from web.auth import Access

PANEL = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "0.6rem", "marginBottom": "0.8rem"}
# four health tabs fit the side panel's width (Dash's default tab padding does not)
TAB = {"style": {"padding": "0.3rem", "fontSize": "0.85rem"},
       "selected_style": {"padding": "0.3rem", "fontSize": "0.85rem", "fontWeight": "bold"}}


def summary_text(service: LogoService) -> str:
    """The store in one line, and what to do next when it is empty or has no label."""
    stats = service.insight.stats()
    if not stats.logos:
        return ("The store is empty. Add labelled logos with `python -m pipeline import-folder FOLDER` (one "
                "subfolder per label) or the Add tab, or photos with `python -m pipeline import-photos FOLDER`.")
    counts = (f"{stats.logos} logos, {stats.labels} labels, {stats.human_labelled} labelled by people, "
              f"{stats.machine_labelled} by machine, {stats.logos - stats.labelled} unlabelled.")
    if not stats.labels:
        counts += (" No labels yet: lasso a group of logos on the map and label it below (with the admin token), "
                   "or import labelled logos with `python -m pipeline import-folder FOLDER`.")
    return counts


def _bulk_panel(service: LogoService) -> html.Div:
    read_only = not service.settings.admin_token
    return html.Div([
        html.H4("Label the selection", style={"margin": "0 0 0.4rem"}),
        html.P("Lasso or box-select logos on the map, then label them (human labels).", id="selection-count",
               style={"fontSize": "0.9rem"}),
        dcc.Input(id="bulk-label", type="text", placeholder="label", list="label-options", debounce=False,
                  style={"width": "100%", "marginBottom": "0.3rem"}),
        html.Datalist(id="label-options", children=[html.Option(value=label) for label in service.labels.in_use()]),
        dcc.Input(id="token", type="password", placeholder="admin token", style={"width": "100%"},
                  disabled=read_only),
        html.Div([
            html.Button("Apply label", id="apply", disabled=read_only),
            html.Button("Clear label", id="clear", disabled=read_only),
            html.Button("Undo last", id="undo", disabled=read_only),
        ], style={"display": "flex", "gap": "0.4rem", "marginTop": "0.4rem"}),
        html.P(Access.READ_ONLY.message if read_only else "",
               id="bulk-message", style={"fontSize": "0.9rem"}),
        html.Div([
            html.Span("Confidence this label needs", style={"fontSize": "0.85rem"}),
            dcc.Input(id="threshold", type="number", min=0, max=1, step=0.01, placeholder="0..1",
                      style={"width": "9rem"}, disabled=read_only),
            html.Button("Set", id="set-threshold", disabled=read_only,
                        title="the label typed above is given only at this calibrated confidence or more"),
            html.Button("Recalibrate", id="recalibrate", disabled=read_only,
                        title="refit the confidence calibration on every human label now"),
        ], style={"display": "flex", "gap": "0.4rem", "alignItems": "center", "flexWrap": "wrap"}),
        html.P("", id="threshold-message", style={"fontSize": "0.85rem"}),
    ], style=PANEL)


def build_layout(service: LogoService) -> html.Div:
    labels = service.labels.in_use()
    return html.Div([
        html.H2("Logo space", style={"margin": "0.2rem 0"}),
        html.P(summary_text(service), id="summary", style={"margin": "0.2rem 0"}),
        html.Div([
            html.Span("", id="map-status"),
            html.Progress(id="map-progress", value="0", max="1", style={"width": "12rem"}),
            html.Button("Recompute map", id="recompute", disabled=not service.settings.admin_token,
                        title="fit UMAP again on every stored logo (admin token, in the panel on the right)"),
            html.Span("", id="recompute-message", style={"fontSize": "0.85rem"}),
        ], style={"display": "flex", "gap": "0.8rem", "alignItems": "center"}),
        html.Div([
            html.Div([
                html.Div([
                    dcc.Dropdown(labels, id="label-search", placeholder="Find a label on the map...",
                                 clearable=True, style={"flex": "1"}),
                    html.Span(dcc.Input(id="text-search", type="search", debounce=True,
                                        placeholder="Find logos reading...", style={"width": "13rem"}),
                              title="logos whose text has words starting so (\"bio\", \"coca cola\"), case and "
                                    "accents aside; press Enter"),
                    html.Button("Show my search", id="show-last",
                                title="the logos of the photo you searched in the Search tab, as stars"),
                ], style={"display": "flex", "gap": "0.5rem", "alignItems": "center"}),
                dcc.Graph(id="map", config={"scrollZoom": True, "displaylogo": False}, clear_on_unhover=True),
                dcc.Tooltip(id="tooltip", direction="right"),
                html.P("", id="highlight-note", style={"fontSize": "0.9rem"}),
            ], style={"flex": "3", "minWidth": "0"}),
            html.Div([
                html.Div([html.H4("Selected logo", style={"margin": "0 0 0.4rem"}),
                          html.Div("Click a point to see the logo and its nearest neighbours.", id="logo-panel")],
                         style=PANEL),
                _bulk_panel(service),
                html.Div([
                    html.Div([html.H4("Cluster health", style={"margin": "0"}),
                              html.Button("Refresh", id="refresh-health")],
                             style={"display": "flex", "justifyContent": "space-between"}),
                    html.Div("", id="health-note", style={"fontSize": "0.75rem", "color": "#666"}),
                    dcc.Interval(id="health-tick", interval=4000, disabled=True),
                    dcc.Loading(dcc.Tabs([
                        dcc.Tab(label="Purity", children=html.Div(id="purity"), **TAB),
                        dcc.Tab(label="Suspects", children=html.Div(id="suspects"), **TAB),
                        dcc.Tab(label="Unlabelled", children=html.Div(id="clusters"), **TAB),
                        dcc.Tab(label="Accuracy", children=html.Div(id="store-accuracy"), **TAB),
                    ], style={"height": "2rem"})),
                ], style=PANEL),
            ], style={"flex": "1", "minWidth": "300px", "maxHeight": "900px", "overflowY": "auto"}),
        ], style={"display": "flex", "gap": "1rem", "marginTop": "0.5rem"}),
        dcc.Store(id="map-key"),
        dcc.Store(id="map-meta"),
        dcc.Store(id="labels-version", data=0),
        dcc.Store(id="cluster-ids"),
        dcc.Store(id="highlighted"),  # what the highlight traces show, so that a redraw (a zoom) keeps it
        dcc.Store(id="map-zoom"),  # the map's zooms only (relayoutData filtered in the browser)
        # this browser tab's session: its label changes are the ones its "Undo last" undoes
        dcc.Store(id="session", storage_type="session", data=secrets.token_urlsafe(16)),
        dcc.Location(id="url", refresh=False),  # ?search=ID: a search shared by the Search tab
        dcc.Interval(id="tick", interval=1500),
    ], style={"fontFamily": "sans-serif", "margin": "0.6rem 1rem"})

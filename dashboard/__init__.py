"""The Dash side of the app, mounted under ``/dashboard/`` by ``app.py``.

It reads everything through the shared :class:`pipeline.service.LogoService`.
Today it shows the store's overview (logos per label, human vs machine); the
UMAP map of all embeddings plugs in here.
"""

from __future__ import annotations

import dash
import plotly.graph_objects as go
from dash import dcc, html

from pipeline.service import LogoService

PREFIX = "/dashboard/"


def label_figure(service: LogoService, top: int = 40) -> go.Figure:
    """Bar chart of the most common labels, split by who labelled them."""
    counts = service.store.label_counts_by_source()
    labels = sorted(counts, key=lambda label: -sum(counts[label].values()))[:top]
    figure = go.Figure([
        go.Bar(name=source, x=labels, y=[counts[label].get(source, 0) for label in labels])
        for source in ("human", "machine")
    ])
    figure.update_layout(barmode="stack", margin=dict(l=40, r=10, t=30, b=120), height=420,
                         title=f"Logos per label (top {min(top, len(counts))} of {len(counts)})",
                         legend_title_text="label source")
    return figure


def create_dash(service: LogoService) -> dash.Dash:
    """The Dash app; serve its Flask ``server`` under :data:`PREFIX`."""
    app = dash.Dash(__name__, requests_pathname_prefix=PREFIX, title="Logo map")

    def layout() -> html.Div:  # a function: recomputed on every page load
        stats = service.stats()
        return html.Div([
            html.H2("Logo space"),
            html.P(f"{stats.logos} logos, {stats.labels} labels, {stats.human_labelled} labelled by people, "
                   f"{stats.machine_labelled} by machine, {stats.logos - stats.labelled} unlabelled; "
                   f"{stats.indexed} indexed, {stats.pending} awaiting the next index build.",
                   id="summary"),
            dcc.Graph(id="labels", figure=label_figure(service)),
        ], style={"fontFamily": "sans-serif", "margin": "1rem"})

    app.layout = layout
    return app

"""The map figure: one WebGL scatter trace per label, built to stay small at 100k+ points.

Coordinates go out as float32 numpy arrays, which Plotly serialises as base64
typed arrays; ids and marker symbols as short integers (no per-point text);
thumbnails are fetched by URL on hover, never inlined. Above
``LOGOS_MAP_POINTS`` (:data:`MAX_POINTS` by default) logos the map shows the
density of every logo (a heatmap re-binned for the view) under a sample of
points: every human-labelled logo, then a seeded random share of the rest.
Zooming in redraws the map for the view: once the logos in view fit under the
limit, every one of them is a point (see the README's "map at scale").
"""

from __future__ import annotations

import html
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from pipeline.config import Settings

MAX_POINTS = Settings.map_points
DENSITY_BINS = 200  # per side: fine enough to show clusters; 40k cells, ~210 kB as base64 float32
VIEW_MARGIN = 0.25  # share of the view's width and height also drawn on each side, so a small pan redraws nothing
MAX_LABEL_TRACES = 50
UNLABELLED = "(unlabelled)"
OTHER = "(other labels)"
SYMBOLS = {"human": 0, "machine": 2}  # Plotly marker codes: circle, diamond (numbers: 1-2 bytes a point)
PALETTE = qualitative.Dark24 + qualitative.Light24


View = tuple[float, float, float, float]  # x0, x1, y0, y1 in map coordinates


@dataclass(frozen=True)
class Density:
    """Logo counts on a grid: ``counts[j, i]`` logos in the cell centred on ``(x[i], y[j])``."""

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class MapFrame:
    """What the map draws: one row per drawn logo with ``id, x, y, label, source``.

    Attributes:
        data: The drawn logos.
        total: Logos on the whole map.
        in_view: Logos inside ``view`` (all of them when ``view`` is None).
        view: The box drawn (the zoomed view plus a margin), or None for the whole map.
        density: Counts of every logo in the box when ``data`` is only a sample of them.
    """

    data: pd.DataFrame
    total: int
    in_view: int
    view: View | None = None
    density: Density | None = None

    @property
    def sampled(self) -> bool:
        return len(self.data) < self.in_view

    @property
    def complete(self) -> bool:
        """Every logo of the map is drawn: no zoom can show more."""
        return len(self.data) == self.total


def map_frame(ids: np.ndarray, xy: np.ndarray, labels: pd.DataFrame, max_points: int = MAX_POINTS,
              seed: int = 0, view: View | None = None) -> MapFrame:
    """Join map coordinates with labels, keep the logos in ``view``, and sample down to ``max_points`` if needed.

    Args:
        ids: Logo ids with coordinates.
        xy: ``[n, 2]`` map coordinates.
        labels: ``id, label, source`` rows (from ``LogoStore.label_frame``).
        max_points: Most points drawn; human-labelled logos are kept first, and
            past it the frame carries the density of every logo in view.
        seed: Seed of the sample, so the same store draws the same points.
        view: The zoomed box; it is widened by :data:`VIEW_MARGIN` on each side
            so that a small pan stays inside what is drawn.

    Example:
        >>> labels = pd.DataFrame({"id": [1, 2, 3], "label": ["a", None, "a"], "source": ["human", None, "machine"]})
        >>> xy = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
        >>> frame = map_frame(np.array([1, 2, 3]), xy, labels, max_points=2)
        >>> frame.total, len(frame.data), 1 in frame.data.id.values, frame.density is not None
        (3, 2, True, True)
        >>> zoomed = map_frame(np.array([1, 2, 3]), xy, labels, max_points=2, view=(-1.0, 2.0, -1.0, 2.0))
        >>> zoomed.in_view, sorted(zoomed.data.id), zoomed.density is None
        (2, [1, 2], True)
    """
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    ids = np.asarray(ids, dtype=np.int64)
    total = len(ids)
    placed = np.isfinite(xy).all(axis=1)  # a logo without a place (never expected) is left off, not fatal
    ids, xy = ids[placed], xy[placed]
    if view is not None:
        view = _widened(view)
        x0, x1, y0, y1 = view
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        ids, xy = ids[inside], xy[inside]
    data = pd.DataFrame({"id": ids, "x": xy[:, 0], "y": xy[:, 1]}).merge(labels, on="id", how="left")
    in_view, density = len(data), None
    if in_view > max_points:
        density = density_grid(xy, view)
        human = (data.source == "human").to_numpy()
        rng = np.random.default_rng(seed)
        priority = np.where(human, -1.0, rng.random(in_view))  # human labels first, then a random order
        data = data.iloc[np.sort(np.argsort(priority, kind="stable")[:max_points])]
    return MapFrame(data.reset_index(drop=True), total, in_view, view, density)


def _widened(view: View) -> View:
    x0, x1, y0, y1 = (float(v) for v in view)
    x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    dx, dy = (x1 - x0) * VIEW_MARGIN, (y1 - y0) * VIEW_MARGIN
    return (x0 - dx, x1 + dx, y0 - dy, y1 + dy)


def density_grid(xy: np.ndarray, view: View | None = None, bins: int = DENSITY_BINS) -> Density:
    """Logo counts on a ``bins`` x ``bins`` grid over ``view`` (or the points' extent)."""
    if view is None:
        low, high = xy.min(axis=0), xy.max(axis=0)
        view = (float(low[0]), float(high[0]), float(low[1]), float(high[1]))
    x0, x1, y0, y1 = view
    x1, y1 = max(x1, x0 + 1e-6), max(y1, y0 + 1e-6)  # all logos in one spot: a cell still has a size
    counts, x_edges, y_edges = np.histogram2d(xy[:, 0], xy[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    return Density((x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2, counts.T)


def view_contains(outer: View, inner: View) -> bool:
    """Whether the box ``inner`` lies inside ``outer``."""
    x0, x1, y0, y1 = inner
    return outer[0] <= min(x0, x1) and max(x0, x1) <= outer[1] and outer[2] <= min(y0, y1) and max(y0, y1) <= outer[3]


def legend_text(text: str) -> str:
    """``text`` as Plotly shows it literally: Plotly reads tags (``<a href>``, ``<b>``, ``<br>``) and entities
    in trace names, so a label such as ``<a href=...>`` would be a link in the legend; escaped, it is text.

    Example:
        >>> legend_text('<a href="https://evil.example">x</a> & co')
        '&lt;a href="https://evil.example"&gt;x&lt;/a&gt; &amp; co'
    """
    return html.escape(text, quote=False)


def label_colour(label: str) -> str:
    """A label's colour, the same on every redraw (a hash, not its rank among today's labels)."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def _trace(part: pd.DataFrame, name: str, colour: str, size: float, opacity: float) -> go.Scattergl:
    symbols = part.source.map(SYMBOLS).fillna(SYMBOLS["human"]).to_numpy(np.int64)
    return go.Scattergl(
        # ids go out as a plain list: Dash reads a point's customdata from it on hover, click and selection
        x=part.x.to_numpy(np.float32), y=part.y.to_numpy(np.float32), customdata=part.id.tolist(),
        mode="markers", name=legend_text(f"{name} ({len(part)})"), legendgroup=name, hoverinfo="none",
        marker=dict(color=colour, size=size, opacity=opacity,
                    symbol=symbols.tolist() if len(set(symbols.tolist())) > 1 else int(symbols[0]),
                    line=dict(width=0)),
    )


def _density_trace(density: Density) -> go.Heatmap:
    """Every logo as a count per cell (log scale), under the sampled points; empty cells stay transparent."""
    shade = np.log1p(density.counts).astype(np.float32)
    shade[density.counts == 0] = np.nan
    return go.Heatmap(x=density.x.astype(np.float32), y=density.y.astype(np.float32), z=shade, name="density",
                      colorscale=[[0.0, "#c9d7ee"], [1.0, "#1f3b73"]], showscale=False, hoverinfo="skip",
                      showlegend=False, zsmooth=False, opacity=0.8)


def map_figure(frame: MapFrame, title: str = "") -> go.Figure:
    """The map: every logo's density when only a sample is drawn, unlabelled logos in grey, one trace per label.

    Human labels are circles, machine labels diamonds. The two last traces are
    kept empty for highlights (selected entries, the last search), which callbacks
    fill with a small patch instead of re-sending the figure.
    """
    data = frame.data
    labelled = data[data.label.notna()]
    counts = labelled.label.value_counts()
    top = list(counts.index[:MAX_LABEL_TRACES])
    traces: list[go.BaseTraceType] = []
    if frame.density is not None:
        traces.append(_density_trace(frame.density))
    unlabelled = data[data.label.isna()]
    if len(unlabelled):
        traces.append(_trace(unlabelled, UNLABELLED, "#b8b8b8", 5, 0.6))
    rest = labelled[~labelled.label.isin(top)]
    if len(rest):
        traces.append(_trace(rest, OTHER, "#7f8c9a", 6, 0.7))
    for label in sorted(top):
        traces.append(_trace(labelled[labelled.label == label], str(label), label_colour(str(label)), 8, 0.85))
    traces.append(go.Scattergl(x=[], y=[], customdata=[], mode="markers", name="highlighted", hoverinfo="none",
                               marker=dict(size=16, symbol="circle-open", color="#111", line=dict(width=2))))
    traces.append(go.Scattergl(x=[], y=[], customdata=[], mode="markers", name="last search", hoverinfo="none",
                               marker=dict(size=20, symbol="star", color="#e6194b", line=dict(width=1, color="#000"))))
    figure = go.Figure(traces)
    figure.update_layout(
        title=title, dragmode="lasso", uirevision="map", height=720, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(itemsizing="constant", title="label (click to hide)"), plot_bgcolor="#fafafa",
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"),
    )
    return figure


def figure_bytes(figure: go.Figure) -> int:
    """Size of the figure as Dash sends it (JSON), for the payload budget."""
    return len(figure.to_json().encode())

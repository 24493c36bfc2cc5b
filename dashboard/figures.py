"""The map figure: one WebGL scatter trace per label, built to stay small at 100k+ points.

Coordinates go out as float32 numpy arrays, which Plotly serialises as base64
typed arrays; ids and marker symbols as short integers (no per-point text);
thumbnails are fetched by URL on hover, never inlined. Above
:data:`MAX_POINTS` the map shows a sample: every human-labelled logo, then a
seeded random share of the rest (see the README's "map at scale").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

MAX_POINTS = 200_000
MAX_LABEL_TRACES = 50
UNLABELLED = "(unlabelled)"
OTHER = "(other labels)"
SYMBOLS = {"human": 0, "machine": 2}  # Plotly marker codes: circle, diamond (numbers: 1-2 bytes a point)
PALETTE = qualitative.Dark24 + qualitative.Light24


@dataclass(frozen=True)
class MapFrame:
    """What the map draws: one row per logo with ``id, x, y, label, source``."""

    data: pd.DataFrame
    total: int  # logos in the store (the frame may be a sample)

    @property
    def sampled(self) -> bool:
        return len(self.data) < self.total


def map_frame(ids: np.ndarray, xy: np.ndarray, labels: pd.DataFrame, max_points: int = MAX_POINTS,
              seed: int = 0) -> MapFrame:
    """Join map coordinates with labels, sampling down to ``max_points`` if needed.

    Args:
        ids: Logo ids with coordinates.
        xy: ``[n, 2]`` map coordinates.
        labels: ``id, label, source`` rows (from ``LogoStore.label_frame``).
        max_points: Most points drawn; human-labelled logos are kept first.
        seed: Seed of the sample, so the same store draws the same points.

    Example:
        >>> labels = pd.DataFrame({"id": [1, 2, 3], "label": ["a", None, "a"], "source": ["human", None, "machine"]})
        >>> frame = map_frame(np.array([1, 2, 3]), np.zeros((3, 2)), labels, max_points=2)
        >>> frame.total, len(frame.data), 1 in frame.data.id.values
        (3, 2, True)
    """
    data = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64), "x": xy[:, 0].astype(np.float32),
                         "y": xy[:, 1].astype(np.float32)})
    data = data.merge(labels, on="id", how="left")
    total = len(data)
    if total > max_points:
        human = (data.source == "human").to_numpy()
        rng = np.random.default_rng(seed)
        priority = np.where(human, -1.0, rng.random(total))  # human labels first, then a random order
        data = data.iloc[np.sort(np.argsort(priority, kind="stable")[:max_points])]
    return MapFrame(data.reset_index(drop=True), total)


def label_colour(label: str) -> str:
    """A label's colour, the same on every redraw (a hash, not its rank among today's labels)."""
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def _trace(part: pd.DataFrame, name: str, colour: str, size: float, opacity: float) -> go.Scattergl:
    symbols = part.source.map(SYMBOLS).fillna(SYMBOLS["human"]).to_numpy(np.int64)
    return go.Scattergl(
        # ids go out as a plain list: Dash reads a point's customdata from it on hover, click and selection
        x=part.x.to_numpy(np.float32), y=part.y.to_numpy(np.float32), customdata=part.id.tolist(),
        mode="markers", name=f"{name} ({len(part)})", legendgroup=name, hoverinfo="none",
        marker=dict(color=colour, size=size, opacity=opacity,
                    symbol=symbols.tolist() if len(set(symbols.tolist())) > 1 else int(symbols[0]),
                    line=dict(width=0)),
    )


def map_figure(frame: MapFrame, title: str = "") -> go.Figure:
    """The map: unlabelled logos in grey underneath, then one trace per label (legend click filters).

    Human labels are circles, machine labels diamonds. The two last traces are
    kept empty for highlights (selected entries, the last search), which callbacks
    fill with a small patch instead of re-sending the figure.
    """
    data = frame.data
    labelled = data[data.label.notna()]
    counts = labelled.label.value_counts()
    top = list(counts.index[:MAX_LABEL_TRACES])
    traces = []
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

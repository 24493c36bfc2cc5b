"""The Dash map, mounted under ``/dashboard/`` by ``app.py``.

A UMAP map of every stored logo embedding, coloured by label, to explore the
logo space and label it: hover for a thumbnail, click for neighbours, lasso to
label many logos at once (admin), and cluster health to find what is wrong or
missing. Everything goes through the shared :class:`pipeline.service.LogoService`.
"""

from __future__ import annotations

import dash

from dashboard.callbacks import register_callbacks
from dashboard.layout import build_layout
from pipeline.service import LogoService
from web.auth import AdminAuth

PREFIX = "/dashboard/"
# a callback's JSON body: a lasso of tens of thousands of logos fits; anything bigger is refused (413) unread
MAX_CALLBACK_BYTES = 16 * 1024 * 1024


def create_dash(service: LogoService, auth: AdminAuth) -> dash.Dash:
    """The Dash app; serve its Flask ``server`` under :data:`PREFIX`. Label changes need ``auth``'s token."""
    app = dash.Dash(__name__, requests_pathname_prefix=PREFIX, title="Logo map", update_title=None)
    app.server.config["MAX_CONTENT_LENGTH"] = MAX_CALLBACK_BYTES
    app.layout = lambda: build_layout(service)  # a function: recomputed on every page load
    register_callbacks(app, service, auth)
    return app

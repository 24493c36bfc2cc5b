"""One process, one port: Gradio at ``/``, the Dash map at ``/dashboard/``, the review queue at ``/review/``,
the JSON API at ``/api/v1/``.

    python app.py          # HOST, PORT, LOGOS_DATA_DIR, ADMIN_TOKEN... from the environment (see README)

Assembly only: read the settings, make the one :class:`pipeline.service.LogoService`,
and mount its front ends (``web/api.py``, ``dashboard/``, ``web/search_ui.py``).
Writes need ``ADMIN_TOKEN`` to be set and given; without it the deployment is read-only.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import uvicorn
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from gradio.utils import get_upload_folder

from dashboard import PREFIX as DASH_PREFIX
from dashboard import create_dash
from dashboard.review import PREFIX as REVIEW_PREFIX
from dashboard.review import create_review
from pipeline import shapes
from pipeline.config import Settings
from pipeline.demo import start_demo
from pipeline.errors import ConfigError
from pipeline.service import LogoService, open_service
from web.api import build_api
from web.auth import AdminAuth
from web.errors import install_error_handlers
from web.search_ui import PAGE_CSS, build_ui
from web.uploads import UploadLimits

log = logging.getLogger("app")


def create_app(service: LogoService) -> FastAPI:
    """FastAPI app with the API, the Dash app and (last, at ``/``) the Gradio app."""
    auth = AdminAuth(service.settings.admin_token)
    app = FastAPI(title="Logo search API", version="1")
    install_error_handlers(app)
    origins = [origin.strip() for origin in service.settings.cors_origins.split(",") if origin.strip()]
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
                       max_age=600)  # robotoff-ann's browser clients call it from other origins

    @app.get("/health")
    def health() -> dict[str, Any]:
        build = service.build.status()
        return {"status": "ok", **shapes.stats(service.insight.stats()), "map": service.insight.map_status().state,
                "store": build.state, "store_progress": round(build.progress, 3), "store_message": build.message,
                "calibration": service.calibration.state()}

    app.include_router(build_api(service, auth))
    app.mount(DASH_PREFIX.rstrip("/"), WSGIMiddleware(create_dash(service, auth).server))
    app.mount(REVIEW_PREFIX.rstrip("/"), WSGIMiddleware(create_review(service, auth).server))
    # Gradio caps uploads itself while they stream, and queues its searches: a few run, a bounded queue waits
    ui = build_ui(service, auth).queue(default_concurrency_limit=service.settings.max_active,
                                       max_size=service.settings.max_queued)
    app.add_middleware(UploadLimits, max_files=service.settings.max_upload_files,
                       max_cache_bytes=service.settings.upload_cache_bytes,
                       folder=lambda: Path(get_upload_folder()))
    app = gr.mount_gradio_app(app, ui, path="/", max_file_size=service.settings.max_upload_bytes, css=PAGE_CSS)
    # Gradio accepts a file path sent with an event only from its upload folder, but checks it only once it
    # believes it was launched (`launch()` sets the flag; a mounted app never launches). Unchecked, it copies
    # any file the server can read into its cache for the event: an anonymous file read.
    ui.has_launched = True
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        service = open_service(settings)
    except ConfigError as exc:  # a wrong setting: one line that names it, no traceback
        sys.exit(f"error: {exc}")
    # the server answers at once: the demo store (first start), then the calibration, the map and cluster
    # health are built in the background, with their progress in /health and on the pages
    start_demo(service, settings.demo)
    log.info("serving on http://%s:%d (writes %s)", settings.host, settings.port,
             "enabled" if settings.admin_token else "disabled: set ADMIN_TOKEN")
    uvicorn.run(create_app(service), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()

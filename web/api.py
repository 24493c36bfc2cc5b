"""The JSON API under ``/api/v1``: robotoff-ann's routes, plus photo search, labels, review, export and admin.

One router per area (:mod:`web.routes`), each built from the same :class:`web.deps.ApiDeps`:
the service, one admin-token dependency for every write, and one request gate for the
CPU-bound routes. CPU-bound routes are plain ``def`` functions, which FastAPI runs in its
thread pool, so a search never blocks the event loop that serves ``/health``, Gradio and
the map; the gate bounds how many run and wait (503 past that). Request bodies are capped
while they stream (FastAPI's ``max_body_size``: 413 before a big upload is spooled), and
uploads are read through :func:`web.deps.read_upload`, which stops at the configured cap.
Every route has a response model (:mod:`web.schemas`), so ``/docs`` shows every shape.
"""

from __future__ import annotations

from fastapi import APIRouter

from pipeline.service import LogoService
from web.auth import AdminAuth
from web.deps import ApiDeps
from web.limits import RequestGate
from web.routes.admin import admin_router
from web.routes.ann import ann_router
from web.routes.export import export_router
from web.routes.labels import labels_router
from web.routes.review import review_router
from web.routes.search import search_router

AREAS = (ann_router, search_router, labels_router, review_router, export_router, admin_router)


def build_api(service: LogoService, auth: AdminAuth, gate: RequestGate | None = None) -> APIRouter:
    """Every area's routes under ``/api/v1`` (parity with robotoff-ann, plus the rest)."""
    deps = ApiDeps.of(service, auth, gate)
    api = APIRouter()
    for area in AREAS:
        api.include_router(area(deps))
    return api

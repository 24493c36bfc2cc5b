"""Exports: the store's photos, boxes and labels as a ZIP, for other tools."""

from __future__ import annotations

import shutil
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from pipeline.exports import EXPORTERS, ExportOptions
from web.deps import PREFIX, ApiDeps


def export_router(deps: ApiDeps) -> APIRouter:
    service = deps.service
    router = APIRouter(prefix=PREFIX, tags=["export"])

    @router.get("/export", dependencies=[deps.admin, deps.heavy], response_class=FileResponse)
    def export(format: Annotated[str, Query(description=f"one of {', '.join(EXPORTERS)}")],
               human_only: bool = False,
               labels: Annotated[str | None, Query(description="only these labels, comma-separated")] = None
               ) -> FileResponse:
        """The store's photos, boxes and labels as a ZIP (COCO, YOLO, LabelMe, CSV or Parquet)."""
        EXPORTERS.get(format)  # an unknown format is the caller's mistake (400), before any work
        options = ExportOptions(human_only=human_only,
                                labels=frozenset(x.strip() for x in labels.split(",")) if labels else None)
        archive, _ = service.insight.export(format, options)
        return FileResponse(archive, media_type="application/zip", filename=archive.name,
                            background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True))

    return router

"""Photo search (the ``search --json`` shape) and stored logos' thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import Response

from pipeline import shapes
from web.deps import PREFIX, ApiDeps, json_list, read_upload
from web.schemas import SearchOut


def search_router(deps: ApiDeps) -> APIRouter:
    service, max_bytes = deps.service, deps.max_upload_bytes
    router = APIRouter(prefix=PREFIX, tags=["search"], max_body_size=deps.max_body_bytes)

    @router.post("/search", response_model=SearchOut, response_model_exclude_unset=True, dependencies=[deps.heavy])
    def search(file: Annotated[UploadFile, File(description="the photo")],
               boxes: Annotated[str | None, Form(description="JSON [[x0,y0,x1,y1], ...]")] = None,
               k: Annotated[int | None, Form(ge=1, le=100)] = None) -> SearchOut:
        """Find and name the logos of a photo: the same JSON as ``python -m pipeline search --json``."""
        result = service.search.photo(read_upload(file, max_bytes), boxes=json_list(boxes, "boxes"), k=k)
        return SearchOut.model_validate(shapes.search(result))

    @router.get("/logos/{logo_id}/thumbnail", response_class=Response)
    def thumbnail(logo_id: int) -> Response:
        webp = service.insight.thumbnail(logo_id)
        if webp is None:
            raise HTTPException(404, f"no thumbnail for logo {logo_id}")
        return Response(webp, media_type="image/webp", headers={"Cache-Control": "public, max-age=86400"})

    return router

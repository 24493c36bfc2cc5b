"""The JSON routes under ``/api/v1``: robotoff-ann's, plus photo search and thumbnails.

CPU-bound routes are plain ``def`` functions, which FastAPI runs in its thread
pool, so a search never blocks the event loop that serves ``/health``, Gradio
and the map; the heaviest pass through a :class:`web.limits.RequestGate` that
bounds how many run and wait (503 past that). Request bodies are capped while
they stream (FastAPI's ``max_body_size``: 413 before a big upload is spooled),
and uploads are read through :func:`read_upload`, which stops at the configured cap.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile as StarletteUpload

from pipeline.annotation import ReviewVerdict
from pipeline.errors import BadInputError, ImageTooLargeError, LogoNotFoundError
from pipeline.exports import EXPORTERS, ExportOptions
from pipeline.service import LogoService
from pipeline.usecases.calibration import calibration_summary
from pipeline.usecases.parts import MAX_LOGO_ID
from pipeline.types import LabelSource, Neighbour
from web.auth import Access, AdminAuth, bearer_token
from web.limits import OverloadedError, RequestGate

PREFIX = "/api/v1"
MAX_BATCH = 1000
# neighbours one batch answers at most (ids x count): 1,000 x 500 took 6.5 CPU s and 27 MB at 7k logos
MAX_BATCH_NEIGHBOURS = 50_000
MAX_STORED_PAGE = 100_000  # ids per page of /ann/stored (robotoff-ann sent every id in one answer)
JSON_BODY_BYTES = 1024 * 1024  # the JSON routes' bodies (ids, an embedding, a threshold) are small
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and the boxes/labels fields, on top of the file
Count = Annotated[int, Query(ge=1, le=500, description="neighbours per logo")]
Index = Annotated[str | None, Query(description="named index (embedding model); default: the store's")]


class NeighbourOut(BaseModel):
    logo_id: int
    distance: float
    label: str | None


class NeighboursOut(BaseModel):
    results: list[NeighbourOut]
    count: int


class BatchIn(BaseModel):
    logo_ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)
    count: int = Field(100, ge=1, le=500)


class BatchOut(BaseModel):
    results: dict[int, list[NeighbourOut]]
    count: int
    next_after: int | None = Field(None, description="paged walk: the cursor of the next page (absent: none)")


class ThresholdIn(BaseModel):
    threshold: float | None = Field(..., ge=0.0, le=1.0, description="confidence the label needs; null removes it")


class LabelIn(BaseModel):
    label: str | None = Field(..., max_length=200, description="the logo's label; null clears it")


LogoId = Annotated[int, Field(ge=1, le=MAX_LOGO_ID)]


class ReviewIn(BaseModel):
    accept: list[LogoId] = Field(default_factory=list, max_length=MAX_BATCH,
                                 description="proposals made human labels")
    reject: list[LogoId] = Field(default_factory=list, max_length=MAX_BATCH,
                                 description="proposals removed and remembered as 'not this label'")
    relabel: dict[LogoId, str] = Field(default_factory=dict, max_length=MAX_BATCH, description="{logo id: new label}")
    proposals: dict[LogoId, str] = Field(default_factory=dict, max_length=3 * MAX_BATCH,
                                      description="the proposal each logo was shown with; default: its current label")


class EmbeddingIn(BaseModel):
    embedding: list[float] = Field(min_length=1)
    count: int = Field(1, ge=1, le=500)
    model: str | None = Field(None, description="model id of the embedding; default: the store's")


class UrlLogoIn(BaseModel):
    id: int = Field(description="the client's own logo id (e.g. Robotoff's)")
    bounding_box: list[float] = Field(min_length=4, max_length=4, description="[y_min, x_min, y_max, x_max] in 0..1")


class UrlAddIn(BaseModel):
    image_url: str = Field(max_length=2048)
    logos: list[UrlLogoIn] = Field(min_length=1, max_length=100)


def _out(neighbours: list[Neighbour], client_ids: dict[int, int]) -> NeighboursOut:
    """Neighbours as robotoff-ann answers them, each logo by the id its client knows."""
    results = [NeighbourOut(logo_id=client_ids.get(n.id, n.id), distance=round(n.distance, 6), label=n.label)
               for n in neighbours]
    return NeighboursOut(results=results, count=len(results))


def _json_list(text: str | None, name: str) -> list[Any] | None:
    if text in (None, ""):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise BadInputError(f"{name} must be a JSON list") from None
    if not isinstance(value, list):
        raise BadInputError(f"{name} must be a JSON list")
    return value


def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded file's bytes, refused past ``max_bytes``."""
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the upload is larger than {max_bytes // (1024 * 1024)} MiB")
    return data


def admin_dependency(auth: AdminAuth):
    """A FastAPI dependency that lets a request through only with the admin token."""

    def require_admin(x_admin_token: Annotated[str | None, Header()] = None,
                      authorization: Annotated[str | None, Header()] = None) -> None:
        access = auth.check(x_admin_token or bearer_token(authorization))
        if access is not Access.GRANTED:
            raise HTTPException(403 if access is Access.READ_ONLY else 401, access.message)

    return require_admin


def build_api(service: LogoService, auth: AdminAuth, gate: RequestGate | None = None) -> APIRouter:
    """The JSON routes (parity with robotoff-ann, plus photo search)."""
    settings = service.settings
    max_bytes = settings.max_upload_bytes
    router = APIRouter(prefix=PREFIX, max_body_size=max_bytes + FORM_OVERHEAD_BYTES)
    require_admin = admin_dependency(auth)
    admin = Depends(require_admin)
    gate = gate or RequestGate(settings.max_active, settings.max_queued, settings.queue_timeout)
    heavy = Depends(gate)

    @router.get("/ann/count")
    def count() -> dict[str, int]:
        return {"count": service.insight.count()}

    @router.get("/ann/stored")
    def stored(limit: Annotated[int, Query(ge=1, le=MAX_STORED_PAGE, description="ids per page")] = MAX_STORED_PAGE,
               after: Annotated[int, Query(ge=0, description="next_after of the previous page")] = 0,
               ) -> dict[str, Any]:
        """Stored logos by the ids clients know, ``limit`` at a time (robotoff-ann answered all at once; a store
        under ``limit`` logos still comes in one page). ``next_after`` is null on the last page."""
        ids, next_after = service.ann.stored_ids(after, limit)
        return {"stored": ids, "count": len(ids), "next_after": next_after}

    def neighbours_of(store_id: int, count: int) -> NeighboursOut:
        """A stored logo's neighbours, each by the id its client knows."""
        neighbours = service.search.logo(store_id, count)
        return _out(neighbours, service.ann.client_ids([n.id for n in neighbours]))

    def batch(logo_ids: list[int], count: int, store_ids: list[int] | None = None) -> BatchOut:
        asked = max(len(logo_ids), len(store_ids or ()))
        if asked * count > MAX_BATCH_NEIGHBOURS:
            raise BadInputError(f"a batch answers at most {MAX_BATCH_NEIGHBOURS:,} neighbours: {asked} logos x "
                                f"{count} is more; ask fewer logos or neighbours a request")
        results = {}
        for logo_id in logo_ids:
            try:
                results[logo_id] = neighbours_of(service.ann.resolve_client_id(logo_id), count).results
            except LogoNotFoundError:
                continue  # as robotoff-ann: unknown ids are left out
        if store_ids:
            clients = service.ann.client_ids(store_ids)
            for store_id in store_ids:
                try:
                    results[clients[store_id]] = neighbours_of(store_id, count).results
                except LogoNotFoundError:
                    continue  # removed meanwhile
        return BatchOut(results=results, count=len(results))

    @router.get("/ann/batch", response_model=BatchOut, response_model_exclude_none=True, dependencies=[heavy])
    def ann_batch_get(logo_ids: Annotated[str | None, Query(description="comma-separated logo ids, e.g. 1,2,3; "
                                                                        "without them, a page of the store")] = None,
                      count: Count = 100, index: Index = None,
                      limit: Annotated[int, Query(ge=1, le=MAX_BATCH, description="page: logos")] = 100,
                      after: Annotated[int, Query(ge=0, description="page: next_after of the previous")] = 0,
                      ) -> BatchOut:
        """robotoff-ann's batch route: a GET with a comma-separated list; or, without ``logo_ids``, the
        neighbours of every stored logo a page at a time (``limit``, ``after``; no ``next_after`` on the last page)."""
        service.ann.check_index(index)
        if logo_ids is None:
            page, next_after = service.ann.page_of_logos(after, limit)
            answer = batch([], count, store_ids=page)
            return BatchOut(results=answer.results, count=answer.count, next_after=next_after)
        try:
            ids = [int(part) for part in logo_ids.split(",") if part.strip()]
        except ValueError:
            raise BadInputError(f"logo_ids must be comma-separated integers, got {logo_ids[:100]!r}") from None
        if not 1 <= len(ids) <= MAX_BATCH:
            raise BadInputError(f"give between 1 and {MAX_BATCH} logo ids")
        return batch(ids, count)

    @router.post("/ann/batch", response_model=BatchOut, response_model_exclude_none=True, dependencies=[heavy],
                 max_body_size=JSON_BODY_BYTES)
    def ann_batch(body: BatchIn, index: Index = None) -> BatchOut:
        service.ann.check_index(index)
        return batch(body.logo_ids, body.count)

    @router.get("/ann", response_model=NeighboursOut)
    def ann_random(count: Count = 100, index: Index = None) -> NeighboursOut:
        """robotoff-ann's route: the neighbours of a stored logo picked at random."""
        service.ann.check_index(index)
        return neighbours_of(service.ann.random_logo_id(), count)

    @router.get("/ann/{logo_id}", response_model=NeighboursOut)
    def ann(logo_id: int, count: Count = 100, index: Index = None) -> NeighboursOut:
        service.ann.check_index(index)
        return neighbours_of(service.ann.resolve_client_id(logo_id), count)

    @router.post("/ann/from_embedding", response_model=NeighboursOut, max_body_size=JSON_BODY_BYTES)
    def ann_from_embedding(body: EmbeddingIn, index: Index = None) -> NeighboursOut:
        service.ann.check_index(index)
        model = body.model or index or service.ann.query_model_id()
        neighbours = service.ann.from_embedding(body.embedding, body.count, model)
        return _out(neighbours, service.ann.client_ids([n.id for n in neighbours]))

    @router.post("/ann/add", dependencies=[admin, heavy], openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": UrlAddIn.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"},
            "boxes": {"type": "string", "description": "JSON [[x0,y0,x1,y1], ...] in pixels"},
            "labels": {"type": "string", "description": 'JSON ["label" or null, ...]'}}}}}}})
    async def ann_add(request: Request) -> dict[str, Any]:
        """Add logos: robotoff-ann's JSON ``{"image_url", "logos": [{"id", "bounding_box"}]}`` (fetched from
        the allowed hosts, ids kept), or our multipart upload with pixel boxes and labels."""
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            try:
                body = UrlAddIn.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            added = await run_in_threadpool(service.ann.add_from_url, body.image_url,
                                            [(logo.id, logo.bounding_box) for logo in body.logos])
            return {"added": added}
        form = await request.form(max_files=1, max_fields=10)
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            raise BadInputError("send JSON {image_url, logos} or a multipart form with a 'file'")
        data = await run_in_threadpool(read_upload, file, max_bytes)
        boxes, labels = form.get("boxes"), form.get("labels")
        ids = await run_in_threadpool(  # a client's file name is never a server path
            service.ingest.photo, data, boxes=_json_list(boxes if isinstance(boxes, str) else None, "boxes"),
            labels=_json_list(labels if isinstance(labels, str) else None, "labels"), source=LabelSource.HUMAN,
            who=auth.who)
        return {"added": len(ids), "ids": ids}

    @router.post("/search", dependencies=[heavy])
    def search(file: Annotated[UploadFile, File(description="the photo")],
               boxes: Annotated[str | None, Form(description="JSON [[x0,y0,x1,y1], ...]")] = None,
               k: Annotated[int | None, Form(ge=1, le=100)] = None) -> dict[str, Any]:
        """Find and name the logos of a photo: the same JSON as ``python -m pipeline search --json``."""
        return service.search.photo(read_upload(file, max_bytes), boxes=_json_list(boxes, "boxes"), k=k).to_json()

    @router.post("/calibrate", dependencies=[admin, heavy])
    def calibrate() -> dict[str, Any]:
        """Fit the confidence calibration on the store's human labels now (it also refits by itself)."""
        return calibration_summary(service.calibration.fit())

    @router.get("/labels/thresholds")
    def thresholds() -> dict[str, Any]:
        """Per-label confidence thresholds: set by people, suggested by the calibration, and the default."""
        return service.labels.thresholds()

    @router.put("/labels/{label}/threshold", dependencies=[admin], max_body_size=JSON_BODY_BYTES)
    def set_threshold(label: str, body: ThresholdIn) -> dict[str, Any]:
        service.labels.set_threshold(label, body.threshold)
        return {"label": label, "threshold": body.threshold}

    @router.put("/logos/{logo_id}/label", dependencies=[admin], max_body_size=JSON_BODY_BYTES)
    def set_label(logo_id: int, body: LabelIn) -> dict[str, Any]:
        """Give one stored logo a human label (or clear it); logged, so it can be undone and audited."""
        service.labels.bulk([service.ann.resolve_client_id(logo_id)], body.label, who=auth.who)
        return {"id": logo_id, "label": body.label}

    def history_out(events: list[dict[str, Any]]) -> dict[str, Any]:
        shown = [{key: value for key, value in event.items() if key != "session"} for event in events]
        return {"events": shown, "next_before": shown[-1]["event"] if shown else None}

    @router.get("/history")
    def history(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                before: Annotated[int | None, Query(ge=1, description="page back: events older than this id")] = None,
                ) -> dict[str, Any]:
        """Label events, newest first: logo, old and new label and source, who, when (paged with ``before``)."""
        return history_out(service.labels.history(None, limit=limit, before=before))

    @router.get("/logos/{logo_id}/history")
    def logo_history(logo_id: int, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """One logo's label events, newest first."""
        return history_out(service.labels.history(service.ann.resolve_client_id(logo_id), limit=limit))

    @router.get("/review")
    def review_queue(label: str | None = None,
                     ids: Annotated[str | None, Query(description="comma-separated logo ids to judge")] = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 40) -> dict[str, Any]:
        """The next screen of machine proposals, grouped by label, least confident first."""
        try:
            chosen = [int(x) for x in ids.split(",") if x.strip()] if ids else None
            valid = chosen is None or all(0 < i <= MAX_LOGO_ID for i in chosen)
        except ValueError:
            valid = False
        if not valid:
            raise BadInputError(f"ids must be comma-separated logo ids, got {ids[:100]!r}")
        groups = service.review.queue(ids=chosen, label=label, limit=limit)
        return {"progress": service.review.progress().to_json(),
                "groups": [{"label": g.label, "items": [asdict(item) for item in g.items]} for g in groups]}

    @router.post("/review", dependencies=[admin], max_body_size=JSON_BODY_BYTES)
    def review(body: ReviewIn) -> dict[str, Any]:
        """Accept, reject or relabel proposals in one call (all undone together)."""
        judged = [*body.accept, *body.reject, *body.relabel]
        proposals = {**service.labels.current(judged), **body.proposals}
        changes = service.review.apply(ReviewVerdict(body.accept, body.reject, body.relabel), proposals, who=auth.who)
        return {"changed": sum(len(change.ids) for change in changes),
                "progress": service.review.progress().to_json()}

    @router.get("/export", dependencies=[admin, heavy], response_class=FileResponse)
    def export(format: Annotated[str, Query(description=f"one of {', '.join(sorted(EXPORTERS))}")],
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

    @router.get("/evaluate/store")
    def evaluate_store(request: Request, k: Annotated[int | None, Query(ge=1, le=100)] = None) -> dict[str, Any]:
        """Leave-one-out accuracy of the store on its human labels, per label, and the most confused pairs.

        At the deployment's ``LOGOS_K`` (the default) this is the report the background worker made for the
        current labels (a 503 with ``Retry-After`` while it is being made); another ``k`` is computed on
        demand and needs the admin token."""
        if k is None or k == settings.k:
            report = service.insight.store_evaluation(wait=False)
            if report is None:
                raise OverloadedError("the store evaluation is being made in the background; retry later", 10)
            return report.to_json()
        require_admin(request.headers.get("x-admin-token"), request.headers.get("authorization"))
        return service.insight.evaluate(k=k).to_json()

    @router.get("/logos/{logo_id}/thumbnail", response_class=Response)
    def thumbnail(logo_id: int) -> Response:
        webp = service.insight.thumbnail(logo_id)
        if webp is None:
            raise HTTPException(404, f"no thumbnail for logo {logo_id}")
        return Response(webp, media_type="image/webp", headers={"Cache-Control": "public, max-age=86400"})

    return router

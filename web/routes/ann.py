"""robotoff-ann's routes: neighbours by logo id, in batches, of a raw embedding; adds; counts and stored ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from pipeline.errors import BadInputError, LogoNotFoundError
from pipeline.types import LabelSource
from web.deps import JSON_BODY_BYTES, PREFIX, ApiDeps, json_list, neighbours_out, read_upload
from web.schemas import (MAX_BATCH, AddedOut, BatchIn, BatchOut, Count, CountOut, EmbeddingIn, Index, NeighboursOut,
                         StoredOut, UrlAddIn)

# neighbours one batch answers at most (ids x count): 1,000 x 500 took 6.5 CPU s and 27 MB at 7k logos
MAX_BATCH_NEIGHBOURS = 50_000
MAX_STORED_PAGE = 100_000  # ids per page of /ann/stored (robotoff-ann sent every id in one answer)


def ann_router(deps: ApiDeps) -> APIRouter:
    """robotoff-ann's routes, a drop-in for its clients (Robotoff, Hunger Games)."""
    service, max_bytes = deps.service, deps.max_upload_bytes
    router = APIRouter(prefix=PREFIX, tags=["ann"], max_body_size=deps.max_body_bytes)

    @router.get("/ann/count", response_model=CountOut)
    def count() -> CountOut:
        return CountOut(count=service.insight.count())

    @router.get("/ann/stored", response_model=StoredOut)
    def stored(limit: Annotated[int, Query(ge=1, le=MAX_STORED_PAGE, description="ids per page")] = MAX_STORED_PAGE,
               after: Annotated[int, Query(ge=0, description="next_after of the previous page")] = 0,
               ) -> StoredOut:
        """Stored logos by the ids clients know, ``limit`` at a time (robotoff-ann answered all at once; a store
        under ``limit`` logos still comes in one page). ``next_after`` is null on the last page."""
        ids, next_after = service.ann.stored_ids(after, limit)
        return StoredOut(stored=ids, count=len(ids), next_after=next_after)

    def neighbours_of(store_id: int, count: int) -> NeighboursOut:
        """A stored logo's neighbours, each by the id its client knows."""
        neighbours = service.search.logo(store_id, count)
        return neighbours_out(neighbours, service.ann.client_ids([n.id for n in neighbours]))

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

    @router.get("/ann/batch", response_model=BatchOut, response_model_exclude_none=True, dependencies=[deps.heavy])
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

    @router.post("/ann/batch", response_model=BatchOut, response_model_exclude_none=True, dependencies=[deps.heavy],
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
        return neighbours_out(neighbours, service.ann.client_ids([n.id for n in neighbours]))

    @router.post("/ann/add", response_model=AddedOut, response_model_exclude_unset=True,
                 dependencies=[deps.admin, deps.heavy], openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": UrlAddIn.model_json_schema()},
                     "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                         "file": {"type": "string", "format": "binary"},
                         "boxes": {"type": "string", "description": "JSON [[x0,y0,x1,y1], ...] in pixels"},
                         "labels": {"type": "string", "description": 'JSON ["label" or null, ...]'}}}}}}})
    async def ann_add(request: Request) -> AddedOut:
        """Add logos: robotoff-ann's JSON ``{"image_url", "logos": [{"id", "bounding_box"}]}`` (fetched from
        the allowed hosts, ids kept), or our multipart upload with pixel boxes and labels."""
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            try:
                body = UrlAddIn.model_validate_json(await request.body())
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            added = await run_in_threadpool(service.ann.add_from_url, body.image_url,
                                            [(logo.id, logo.bounding_box) for logo in body.logos])
            return AddedOut(added=added)
        form = await request.form(max_files=1, max_fields=10)
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            raise BadInputError("send JSON {image_url, logos} or a multipart form with a 'file'")
        data = await run_in_threadpool(read_upload, file, max_bytes)
        boxes, labels = form.get("boxes"), form.get("labels")
        ids = await run_in_threadpool(  # a client's file name is never a server path
            service.ingest.photo, data, boxes=json_list(boxes if isinstance(boxes, str) else None, "boxes"),
            labels=json_list(labels if isinstance(labels, str) else None, "labels"), source=LabelSource.HUMAN,
            who=deps.auth.who)
        return AddedOut(added=len(ids), ids=ids)

    return router

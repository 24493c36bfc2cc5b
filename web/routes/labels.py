"""Labels: the vocabulary, a logo's label, per-label thresholds, and the history of every change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from pipeline import shapes
from pipeline.vocabulary import MAX_VOCABULARY_BYTES
from web.deps import JSON_BODY_BYTES, PREFIX, ApiDeps
from web.schemas import (HistoryOut, LabelIn, LabelOut, ThresholdIn, ThresholdOut, ThresholdsOut, VocabularyImportOut,
                         VocabularyOut)


def _history(events: list[dict[str, Any]]) -> HistoryOut:
    shown = [{key: value for key, value in event.items() if key != "session"} for event in events]
    return HistoryOut.model_validate({"events": shown, "next_before": shown[-1]["event"] if shown else None})


def labels_router(deps: ApiDeps) -> APIRouter:
    service = deps.service
    router = APIRouter(prefix=PREFIX, tags=["labels"], max_body_size=JSON_BODY_BYTES)

    @router.get("/labels", response_model=VocabularyOut)
    def labels() -> VocabularyOut:
        """Every label the store knows: the vocabulary's (a label can exist before any logo of it) and those logos
        carry, with aliases and logo counts."""
        return VocabularyOut.model_validate(shapes.vocabulary(service.labels.vocabulary()))

    @router.post("/labels", response_model=VocabularyImportOut, dependencies=[deps.admin],
                 max_body_size=MAX_VOCABULARY_BYTES, openapi_extra={"requestBody": {"required": True, "content": {
                     "text/plain": {"schema": {"type": "string", "description": "UTF-8, one label a line; aliases "
                                               "after a tab, split by |"}}}}})
    async def import_labels(request: Request) -> VocabularyImportOut:
        """Add a vocabulary file's labels and aliases (the content of ``labels import FILE``); a malformed line is a
        400 naming it, and nothing of the file is stored."""
        added, known = await run_in_threadpool(service.labels.import_vocabulary, await request.body())
        return VocabularyImportOut(added=added, labels=known)

    @router.get("/labels/thresholds", response_model=ThresholdsOut)
    def thresholds() -> ThresholdsOut:
        """Per-label confidence thresholds: set by people, suggested by the calibration, and the default."""
        return ThresholdsOut.model_validate(service.labels.thresholds())

    @router.put("/labels/{label}/threshold", response_model=ThresholdOut, dependencies=[deps.admin])
    def set_threshold(label: str, body: ThresholdIn) -> ThresholdOut:
        service.labels.set_threshold(label, body.threshold)
        return ThresholdOut(label=label, threshold=body.threshold)

    @router.put("/logos/{logo_id}/label", response_model=LabelOut, dependencies=[deps.admin])
    def set_label(logo_id: int, body: LabelIn) -> LabelOut:
        """Give one stored logo a human label (or clear it); logged, so it can be undone and audited."""
        service.labels.bulk([service.ann.resolve_client_id(logo_id)], body.label, who=deps.auth.who)
        return LabelOut(id=logo_id, label=body.label)

    @router.get("/history", response_model=HistoryOut)
    def history(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                before: Annotated[int | None, Query(ge=1, description="page back: events older than this id")] = None,
                ) -> HistoryOut:
        """Label events, newest first: logo, old and new label and source, who, when (paged with ``before``)."""
        return _history(service.labels.history(None, limit=limit, before=before))

    @router.get("/logos/{logo_id}/history", response_model=HistoryOut)
    def logo_history(logo_id: int, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> HistoryOut:
        """One logo's label events, newest first."""
        return _history(service.labels.history(service.ann.resolve_client_id(logo_id), limit=limit))

    return router

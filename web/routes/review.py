"""The review queue of machine proposals, and verdicts on many at a time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query

from pipeline import shapes
from pipeline.annotation import ReviewVerdict
from pipeline.errors import BadInputError
from pipeline.usecases.parts import MAX_LOGO_ID
from web.deps import JSON_BODY_BYTES, PREFIX, ApiDeps
from web.schemas import ProgressOut, ReviewedOut, ReviewIn, ReviewQueueOut


def review_router(deps: ApiDeps) -> APIRouter:
    service = deps.service
    router = APIRouter(prefix=PREFIX, tags=["review"], max_body_size=JSON_BODY_BYTES)

    def progress() -> ProgressOut:
        return ProgressOut.model_validate(shapes.review_progress(service.review.progress()))

    @router.get("/review", response_model=ReviewQueueOut)
    def review_queue(label: str | None = None,
                     ids: Annotated[str | None, Query(description="comma-separated logo ids to judge")] = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 40) -> ReviewQueueOut:
        """The next screen of machine proposals, grouped by label, least confident first."""
        try:
            chosen = [int(x) for x in ids.split(",") if x.strip()] if ids else None
            valid = chosen is None or all(0 < i <= MAX_LOGO_ID for i in chosen)
        except ValueError:
            valid = False
        if not valid:
            raise BadInputError(f"ids must be comma-separated logo ids, got {ids[:100]!r}")
        groups = service.review.queue(ids=chosen, label=label, limit=limit)
        return ReviewQueueOut.model_validate({
            "progress": progress(),
            "groups": [{"label": g.label, "items": [asdict(item) for item in g.items]} for g in groups]})

    @router.post("/review", response_model=ReviewedOut, dependencies=[deps.admin])
    def review(body: ReviewIn) -> ReviewedOut:
        """Accept, reject or relabel proposals in one call (all undone together)."""
        judged = [*body.accept, *body.reject, *body.relabel]
        proposals = {**service.labels.current(judged), **body.proposals}
        changes = service.review.apply(ReviewVerdict(body.accept, body.reject, body.relabel), proposals,
                                       who=deps.auth.who)
        return ReviewedOut(changed=sum(len(change.ids) for change in changes), progress=progress())

    return router

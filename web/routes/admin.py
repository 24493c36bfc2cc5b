"""Calibration and the store's evaluation on its own labels: read by anyone, computed on demand only by an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from pipeline import shapes
from pipeline.usecases.calibration import calibration_summary
from web.deps import JSON_BODY_BYTES, PREFIX, ApiDeps
from web.limits import OverloadedError
from web.schemas import CalibrationOut, StoreEvaluationOut


def admin_router(deps: ApiDeps) -> APIRouter:
    service = deps.service
    router = APIRouter(prefix=PREFIX, tags=["admin"], max_body_size=JSON_BODY_BYTES)

    @router.post("/calibrate", response_model=CalibrationOut, dependencies=[deps.admin, deps.heavy])
    def calibrate() -> CalibrationOut:
        """Fit the confidence calibration on the store's human labels now (it also refits by itself)."""
        return CalibrationOut.model_validate(calibration_summary(service.calibration.fit()))

    @router.get("/evaluate/store", response_model=StoreEvaluationOut)
    def evaluate_store(request: Request, k: Annotated[int | None, Query(ge=1, le=100)] = None) -> JSONResponse:
        """Leave-one-out accuracy of the store on its human labels, per label, and the most confused pairs.

        At the deployment's ``LOGOS_K`` (the default) this is the report the background worker made for the
        current labels (a 503 with ``Retry-After`` while it is being made); another ``k`` is computed on
        demand and needs the admin token."""
        if k is None or k == service.settings.k:
            report = service.insight.store_evaluation(wait=False)
            if report is None:
                raise OverloadedError("the store evaluation is being made in the background; retry later", 10)
        else:
            deps.require_admin(request.headers.get("x-admin-token"), request.headers.get("authorization"))
            report = service.insight.evaluate(k=k)
        # as the CLI prints it, recall@K beside top1: the model documents the shape, extra keys would go last
        return JSONResponse(shapes.store_evaluation(report))

    return router

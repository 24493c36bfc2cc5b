"""One process, one port: Gradio at ``/``, the Dash map at ``/dashboard/``, JSON API at ``/api/v1/``.

    python app.py          # HOST, PORT, LOGOS_DATA_DIR, ADMIN_TOKEN from the environment

All three share one :class:`pipeline.service.LogoService`. Writes (adding logos)
need ``ADMIN_TOKEN`` to be set and given; without it the deployment is read-only.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
from typing import Annotated, Any

import gradio as gr
import uvicorn
from a2wsgi import WSGIMiddleware
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, Field

from dashboard import PREFIX as DASH_PREFIX
from dashboard import create_dash
from pipeline.config import Settings
from pipeline.demo import DEMO_LOGOS, build_demo
from pipeline.images import ImageError, ImageTooLargeError
from pipeline.service import LogoNotFoundError, LogoService
from pipeline.store import ModelMismatchError, StoreError
from pipeline.types import Box, LabelSource, Neighbour

log = logging.getLogger("app")
API = "/api/v1"


# -- JSON API ----------------------------------------------------------------------------
class NeighbourOut(BaseModel):
    logo_id: int
    distance: float
    label: str | None


class NeighboursOut(BaseModel):
    results: list[NeighbourOut]
    count: int


class BatchIn(BaseModel):
    logo_ids: list[int] = Field(min_length=1, max_length=1000)
    count: int = Field(100, ge=1, le=500)


class BatchOut(BaseModel):
    results: dict[int, list[NeighbourOut]]
    count: int


class EmbeddingIn(BaseModel):
    embedding: list[float] = Field(min_length=1)
    count: int = Field(1, ge=1, le=500)
    model: str | None = Field(None, description="model id of the embedding; default: the store's")


def _out(neighbours: list[Neighbour]) -> NeighboursOut:
    results = [NeighbourOut(logo_id=n.id, distance=round(n.distance, 6), label=n.label) for n in neighbours]
    return NeighboursOut(results=results, count=len(results))


def _json_list(text: str | None, name: str) -> list[Any] | None:
    if text in (None, ""):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise HTTPException(400, f"{name} must be a JSON list") from None
    if not isinstance(value, list):
        raise HTTPException(400, f"{name} must be a JSON list")
    return value


async def _read_upload(file: UploadFile, settings: Settings) -> bytes:
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"the upload is larger than {settings.max_upload_bytes // (1024 * 1024)} MiB")
    return data


def build_api(service: LogoService) -> APIRouter:
    """The JSON routes (parity with robotoff-ann, plus photo search)."""
    settings = service.settings
    router = APIRouter(prefix=API)

    def admin(x_admin_token: Annotated[str | None, Header()] = None,
              authorization: Annotated[str | None, Header()] = None) -> None:
        if not settings.admin_token:
            raise HTTPException(403, "this deployment is read-only (no ADMIN_TOKEN configured)")
        given = x_admin_token or (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given, settings.admin_token):
            raise HTTPException(401, "a valid admin token is required (X-Admin-Token header)")

    @router.get("/ann/count")
    def count() -> dict[str, int]:
        return {"count": service.store.count()}

    @router.get("/ann/stored")
    def stored() -> dict[str, list[int]]:
        return {"stored": service.store.ids()}

    @router.get("/ann/{logo_id}", response_model=NeighboursOut)
    def ann(logo_id: int, count: Annotated[int, Query(ge=1, le=500)] = 100) -> NeighboursOut:
        return _out(service.search_logo(logo_id, count))

    @router.post("/ann/batch", response_model=BatchOut)
    def ann_batch(body: BatchIn) -> BatchOut:
        results = {}
        for logo_id in body.logo_ids:
            try:
                results[logo_id] = _out(service.search_logo(logo_id, body.count)).results
            except LogoNotFoundError:
                continue  # as robotoff-ann: unknown ids are left out
        return BatchOut(results=results, count=len(results))

    @router.post("/ann/from_embedding", response_model=NeighboursOut)
    def ann_from_embedding(body: EmbeddingIn) -> NeighboursOut:
        model = body.model or service.store.model_id or service.settings.embedder
        return _out(service.search_embedding(body.embedding, body.count, model_id=model))

    @router.post("/ann/add", dependencies=[Depends(admin)])
    async def ann_add(file: Annotated[UploadFile, File(description="the photo")],
                      boxes: Annotated[str | None, Form(description="JSON [[x0,y0,x1,y1], ...]")] = None,
                      labels: Annotated[str | None, Form(description='JSON ["label" or null, ...]')] = None,
                      ) -> dict[str, Any]:
        data = await _read_upload(file, settings)
        ids = service.add_logos(data, boxes=_json_list(boxes, "boxes"), labels=_json_list(labels, "labels"),
                                source=LabelSource.HUMAN, image_path=file.filename)
        return {"added": len(ids), "ids": ids}

    @router.post("/search")
    async def search(file: Annotated[UploadFile, File(description="the photo")],
                     boxes: Annotated[str | None, Form(description="JSON [[x0,y0,x1,y1], ...]")] = None,
                     k: Annotated[int | None, Form(ge=1, le=100)] = None) -> dict[str, Any]:
        """Find and name the logos of a photo: the same JSON as ``python -m pipeline search --json``."""
        data = await _read_upload(file, settings)
        return service.search_photo(data, boxes=_json_list(boxes, "boxes"), k=k).to_json()

    @router.get("/logos/{logo_id}/thumbnail", response_class=Response)
    def thumbnail(logo_id: int) -> Response:
        webp = service.store.thumbnail(logo_id)
        if webp is None:
            raise HTTPException(404, f"no thumbnail for logo {logo_id}")
        return Response(webp, media_type="image/webp", headers={"Cache-Control": "public, max-age=86400"})

    return router


def _error_handlers(app: FastAPI) -> None:
    """Typed pipeline errors -> clear JSON 4xx answers, never a stack trace."""
    table: list[tuple[type[Exception], int]] = [
        (ImageTooLargeError, 413), (ImageError, 400), (LogoNotFoundError, 404),
        (ModelMismatchError, 409), (StoreError, 400), (ValueError, 400),
    ]
    for kind, status in table:
        def handler(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        app.add_exception_handler(kind, handler)


# -- Gradio UI ---------------------------------------------------------------------------
def _parse_boxes(text: str) -> list[list[float]] | None:
    """``"x0,y0,x1,y1; x0,y0,x1,y1"`` -> boxes (friendly to type by hand)."""
    parts = [p for p in text.replace("\n", ";").split(";") if p.strip()] if text else []
    if not parts:
        return None
    try:
        return [Box.from_sequence([float(v) for v in p.split(",")]).to_list() for p in parts]
    except ValueError as exc:
        raise gr.Error(f"Boxes: {exc}. Write x0,y0,x1,y1 per box, boxes separated by ';'.") from None


def build_ui(service: LogoService) -> gr.Blocks:
    """The upload-and-search page."""
    examples = [str(p) for p in sorted(DEMO_LOGOS.glob("*/*-photo2.jpg"))[:6]]

    def search(image: Image.Image | None, boxes_text: str, k: float):
        if image is None:
            raise gr.Error("Drop or paste a photo first.")
        try:
            result = service.search_photo(image, boxes=_parse_boxes(boxes_text), k=int(k))
        except (ImageError, ValueError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        annotations, gallery, lines = [], [], []
        for number, logo in enumerate(result.logos, 1):
            name = logo.prediction.label or "unknown"
            tag = f"{number}: {name} ({logo.prediction.confidence:.0%})"
            annotations.append((tuple(int(v) for v in logo.box.to_list()), tag))
            lines.append(f"**Logo {number}**: {name}, confidence {logo.prediction.confidence:.0%}")
            for n in logo.neighbours:
                thumb = service.store.thumbnail(n.id)
                if thumb is not None:
                    gallery.append((Image.open(io.BytesIO(thumb)),
                                    f"{number}: {n.label or 'unlabelled'} · d={n.distance:.2f} · #{n.id}"))
        if not result.logos:
            lines.append("No logo found on this photo. Draw a box around one and search again.")
        return (image, annotations), "\n\n".join(lines), gallery

    def add(image: Image.Image | None, boxes_text: str, label: str | None, token: str):
        if not service.settings.admin_token:
            raise gr.Error("This deployment is read-only (no ADMIN_TOKEN configured).")
        if not token or not hmac.compare_digest(token, service.settings.admin_token):
            raise gr.Error("Wrong admin token.")
        if image is None:
            raise gr.Error("Drop or paste a logo crop or a photo first.")
        boxes = _parse_boxes(boxes_text)
        try:
            ids = service.add_logos(image, boxes=boxes, labels=[label] * (len(boxes) if boxes else 1))
        except (ImageError, ValueError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        return f"Added logo(s) {', '.join(f'#{i}' for i in ids)} as **{label or 'unlabelled'}**; searchable now."

    with gr.Blocks(title="Logo search") as blocks:
        gr.Markdown("# Which logos are on this photo?\nUpload a product photo or a logo crop; each logo is "
                    "named by its nearest labelled logos. [Open the map of the logo space](/dashboard/)")
        with gr.Tab("Search"):
            with gr.Row():
                with gr.Column():
                    photo = gr.Image(type="pil", label="Photo", sources=["upload", "clipboard"])
                    boxes = gr.Textbox(label="Boxes (optional)", placeholder="x0,y0,x1,y1; x0,y0,x1,y1")
                    k = gr.Slider(1, 30, value=service.settings.k, step=1, label="Neighbours per logo")
                    go = gr.Button("Search", variant="primary")
                    gr.Examples(examples, inputs=photo, label="Example photos")
                with gr.Column():
                    found = gr.AnnotatedImage(label="Logos found")
                    summary = gr.Markdown()
            neighbours = gr.Gallery(label="Nearest logos", columns=8, height="auto")
            go.click(search, [photo, boxes, k], [found, summary, neighbours], api_name="search")
        with gr.Tab("Add to index"):
            with gr.Row():
                new_photo = gr.Image(type="pil", label="Logo crop or photo", sources=["upload", "clipboard"])
                with gr.Column():
                    new_boxes = gr.Textbox(label="Boxes (optional; default: whole image)")
                    label = gr.Dropdown(sorted(service.store.label_counts()), allow_custom_value=True,
                                        label="Label", value=None)
                    token = gr.Textbox(label="Admin token", type="password")
                    add_button = gr.Button("Add", variant="primary")
                    added = gr.Markdown()
            add_button.click(add, [new_photo, new_boxes, label, token], added, api_name="add_logo")
        with gr.Tab("Map"):
            gr.HTML(f'<iframe src="{DASH_PREFIX}" style="width:100%;height:80vh;border:0"></iframe>')
    return blocks


# -- assembly ----------------------------------------------------------------------------
def create_app(service: LogoService) -> FastAPI:
    """FastAPI app with the API, the Dash app and (last, at ``/``) the Gradio app."""
    app = FastAPI(title="Logo search API", version="1")
    _error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **service.stats().to_json()}

    app.include_router(build_api(service))
    app.mount(DASH_PREFIX.rstrip("/"), WSGIMiddleware(create_dash(service).server))
    return gr.mount_gradio_app(app, build_ui(service), path="/")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    service = LogoService(settings)
    build_demo(service, progress=True)  # first start: a progress bar in the log
    log.info("serving on http://%s:%d (writes %s)", settings.host, settings.port,
             "enabled" if settings.admin_token else "disabled: set ADMIN_TOKEN")
    uvicorn.run(create_app(service), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()

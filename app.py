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
from gradio_image_annotation import image_annotator
from pydantic import BaseModel, Field

from dashboard import PREFIX as DASH_PREFIX
from dashboard import create_dash
from pipeline.config import Settings
from pipeline.demo import EXAMPLE_PHOTOS, build_demo
from pipeline.images import ImageError, ImageTooLargeError, crop
from pipeline.service import LogoNotFoundError, LogoService
from pipeline.store import ModelMismatchError, StoreError
from pipeline.types import Box, LabelSource, LogoMatch, Neighbour

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
_PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (128, 128, 0)]


def _examples() -> list[list[dict[str, Any]]]:
    """The bundled example photos (product-packaging scenes of demo brands)."""
    truth = json.loads((EXAMPLE_PHOTOS / "examples.json").read_text())
    return [[{"image": str(EXAMPLE_PHOTOS / name), "boxes": []}] for name in truth]


def _drawn(service: LogoService, value: dict[str, Any] | None) -> tuple[Image.Image, list[list[float]] | None]:
    """The photo and the boxes drawn on it, from a raw ``image_annotator`` payload (None: let the detector look).

    The events run with ``preprocess=False`` so that the photo is opened by the
    pipeline's own loader: a corrupt, huge or non-image file gets its clear message.
    """
    image = (value or {}).get("image")
    path = image.get("path") if isinstance(image, dict) else None
    if not path:
        raise gr.Error("Drop, paste or pick a photo first.")
    try:
        photo = service.load(path)
    except ImageError as exc:
        raise gr.Error(f"This file cannot be used: {exc}") from None
    for _ in range(int(value.get("orientation") or 0) % 4):  # the user turned it a quarter clockwise
        photo = photo.transpose(Image.Transpose.ROTATE_270)
    boxes = []
    for box in value.get("boxes") or []:
        scale = float(box.get("scaleFactor") or 1)  # the annotator reports boxes in display pixels
        try:
            boxes.append(Box.from_sequence([box[key] / scale for key in ("xmin", "ymin", "xmax", "ymax")]).to_list())
        except (KeyError, TypeError, ValueError):
            continue  # a zero-size click, not a box
    return photo, boxes or None


def _card(service: LogoService, number: int, photo: Image.Image, logo: LogoMatch) -> dict[str, Any]:
    """What the page shows for one logo: its crop, its label and its nearest stored logos."""
    thumbs = []
    for n in logo.neighbours:
        webp = service.store.thumbnail(n.id)
        if webp is not None:
            thumbs.append((Image.open(io.BytesIO(webp)), f"{n.label or 'unlabelled'} · d={n.distance:.2f} · #{n.id}"))
    name = logo.prediction.label or "unknown"
    return {"title": f"Logo {number}: {name}", "confidence": logo.prediction.confidence,
            "crop": crop(photo, logo.box), "neighbours": thumbs}


def build_ui(service: LogoService) -> gr.Blocks:
    """The upload-and-search page, the add-to-index page and the map tab."""

    def search(value: dict[str, Any] | None, k: float):
        photo, boxes = _drawn(service, value)
        try:
            result = service.search_photo(photo, boxes=boxes, k=int(k))
        except (ImageError, ValueError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        annotations, drawn, cards = [], [], []
        for number, logo in enumerate(result.logos, 1):
            tag = f"{number}: {logo.prediction.label or 'unknown'} ({logo.prediction.confidence:.0%})"
            x0, y0, x1, y1 = (round(v) for v in logo.box.to_list())
            annotations.append(((x0, y0, x1, y1), tag))
            drawn.append({"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": tag,
                          "color": _PALETTE[(number - 1) % len(_PALETTE)]})
            cards.append(_card(service, number, photo, logo))
        if not result.logos:
            message = "No logo found on this photo. Drag a box around one and search again."
        elif service.store.count() == 0:
            message = "The index is empty: add labelled logos first."
        else:
            message = f"{len(result.logos)} logo(s). Drag the boxes to adjust them, or draw new ones, and search again."
        return (photo, annotations), {"image": photo, "boxes": drawn}, cards, message, result.to_json()

    def add(value: dict[str, Any] | None, label: str | None, token: str):
        if not service.settings.admin_token:
            raise gr.Error("This deployment is read-only (no ADMIN_TOKEN configured).")
        if not token or not hmac.compare_digest(token, service.settings.admin_token):
            raise gr.Error("Wrong admin token.")
        photo, boxes = _drawn(service, value)
        label = (label or "").strip() or None
        try:
            ids = service.add_logos(photo, boxes=boxes, labels=[label] * (len(boxes) if boxes else 1))
        except (ImageError, ValueError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"Added logo(s) {', '.join(f'#{i}' for i in ids)} as **{label or 'unlabelled'}**; searchable now.",
                gr.Dropdown(choices=sorted(service.store.label_counts())))

    with gr.Blocks(title="Logo search") as blocks:
        gr.Markdown("# Which logos are on this photo?\nUpload a product photo or a logo crop, or drag boxes around "
                    "the logos; each is named by its nearest labelled logos. "
                    f"[Open the map of the logo space]({DASH_PREFIX})")
        with gr.Tab("Search"):
            with gr.Row():
                with gr.Column():
                    photo = image_annotator(label="Photo: drag a box around a logo (optional)",
                                            sources=["upload", "clipboard"], disable_edit_boxes=True,
                                            show_remove_button=True, box_min_size=8, height=520)
                    k = gr.Slider(1, 30, value=service.settings.k, step=1, label="Neighbours per logo")
                    go = gr.Button("Search", variant="primary")
                    gr.Examples(_examples(), inputs=photo, label="Example photos")
                with gr.Column():
                    found = gr.AnnotatedImage(label="Logos found", height=520)
                    message = gr.Markdown()
            cards = gr.State([])
            with gr.Accordion("Result as JSON (same as the API and the CLI)", open=False):
                as_json = gr.JSON()

            @gr.render(inputs=cards)
            def show(items: list[dict[str, Any]]) -> None:
                for item in items:
                    with gr.Row(equal_height=True):
                        with gr.Column(scale=1, min_width=160):
                            gr.Image(item["crop"], label=item["title"], height=160, show_label=True)
                            gr.Markdown(f"**{item['title']}**, confidence {item['confidence']:.0%}")
                        gr.Gallery(item["neighbours"], label=f"Nearest logos to {item['title'].split(':')[0]}",
                                   columns=10, height="auto", scale=5, allow_preview=True)

            go.click(search, [photo, k], [found, photo, cards, message, as_json], api_name="search",
                     preprocess=False)

            def from_map(request: gr.Request):
                """``/?logo=ID`` (the map's "search with this logo" link) puts that logo in the photo box."""
                logo_id = request.query_params.get("logo", "")
                webp = service.store.thumbnail(int(logo_id)) if logo_id.isdigit() else None
                if webp is None:
                    return gr.skip()
                return {"image": Image.open(io.BytesIO(webp)).convert("RGB"), "boxes": []}

            blocks.load(from_map, None, photo, api_name=False)
        with gr.Tab("Add to index"):
            with gr.Row():
                new_photo = image_annotator(label="Logo crop, or a photo with a box around the logo",
                                            sources=["upload", "clipboard"], disable_edit_boxes=True,
                                            show_remove_button=True, height=420)
                with gr.Column():
                    label = gr.Dropdown(sorted(service.store.label_counts()), allow_custom_value=True,
                                        label="Label (pick one or type a new one)", value=None)
                    token = gr.Textbox(label="Admin token", type="password")
                    add_button = gr.Button("Add", variant="primary")
                    added = gr.Markdown()
            add_button.click(add, [new_photo, label, token], [added, label], api_name="add_logo", preprocess=False)
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
        return {"status": "ok", **service.stats().to_json(), "map": service.map.status().state}

    app.include_router(build_api(service))
    app.mount(DASH_PREFIX.rstrip("/"), WSGIMiddleware(create_dash(service).server))
    return gr.mount_gradio_app(app, build_ui(service), path="/")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    service = LogoService(settings)
    build_demo(service, progress=True)  # first start: a progress bar in the log
    service.map.start()  # the UMAP map fits in the background (or is read from its cache)
    log.info("serving on http://%s:%d (writes %s)", settings.host, settings.port,
             "enabled" if settings.admin_token else "disabled: set ADMIN_TOKEN")
    uvicorn.run(create_app(service), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()

"""The Gradio page: upload-and-search, add to the index, auto-annotate and export (admin), the map and review tabs.

Per-visitor state stays with the visitor: a search's map link lives in the
page (``gr.State``) and points at a short-lived server-side id, so what one
visitor searched never shows up on another's map.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import gradio as gr
from gradio.utils import get_upload_folder
from gradio_image_annotation import image_annotator
from PIL import Image, ImageDraw, ImageFont

from dashboard import PREFIX as DASH_PREFIX
from dashboard.review import PREFIX as REVIEW_PREFIX
from pipeline import shapes
from pipeline.demo import EXAMPLE_PHOTOS
from pipeline.errors import ImageError, LogoError, NotReadyError
from pipeline.exports import EXPORTERS, ExportOptions
from pipeline.images import crop
from pipeline.service import LogoService
from pipeline.types import Box, LogoMatch
from web.auth import AdminAuth
from web.text import markdown_text

_PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (128, 128, 0)]
UNNAMED = (150, 150, 150)  # the box of a logo not named (a guess, or unknown): grey, never a label's colour
# the neighbour galleries: captions wrap (label and distance readable, not cut to "Coca-Col..."), and a row of
# thumbnails takes its own height, not the 450 px Gradio reserves for a gallery
PAGE_CSS = """
.neighbours .caption-label {white-space: normal; max-width: calc(100% - 2 * var(--block-label-margin));
    left: var(--block-label-margin); font-size: 0.72rem; line-height: 1.15}
.neighbours .fixed-height {min-height: 0 !important; max-height: none}
"""
PAGE_THUMBNAILS = 120  # neighbour thumbnails on one result page at most (3 a logo at least; the JSON has all)
MAX_SHOWN = 30  # the most neighbours per logo the page shows (its slider's end)
MAX_PROPOSALS_SHOWN = 12  # unnamed proposals the page lists on request, the detector's best-scored first
BUILD_POLL_S = 2.0  # how often a page polls the store's build while it runs


def map_link(search_id: str | None = None) -> str:
    """The map's address, showing one shared search when ``search_id`` is given."""
    return DASH_PREFIX + (f"?{urlencode({'search': search_id})}" if search_id else "")


def _map_frame(search_id: str | None = None) -> str:
    return _frame(map_link(search_id))


def _frame(src: str) -> str:
    return f'<iframe src="{src}" style="width:100%;height:80vh;border:0"></iframe>'


def _examples() -> list[list[dict[str, Any]]]:
    """The bundled example photos: generated packaging scenes of demo brands, then real photos (``real-*.jpg``)."""
    generated = [EXAMPLE_PHOTOS / name for name in json.loads((EXAMPLE_PHOTOS / "examples.json").read_text())]
    return [[{"image": str(path), "boxes": []}] for path in generated + sorted(EXAMPLE_PHOTOS.glob("real-*.jpg"))]


def uploaded_file(path: object) -> str:
    """``path`` if it names a file Gradio took from a client for this app (its upload cache), else a refusal.

    The events take the annotator's raw payload (``preprocess=False``), whose path is whatever the client
    sent: opening it as is would read any image the server can. Gradio refuses such paths itself before the
    event runs (``app.py`` turns its check on); this is the second line, for any other way the page is
    served. The refusal is the same whether the file exists or not, and names nothing on the server.
    """
    refused = gr.Error("This photo was not uploaded to this page: upload it again.")
    if not isinstance(path, str) or not path:
        raise refused
    try:
        resolved = Path(path).resolve()  # links and ".." resolved before the check
        cache = Path(get_upload_folder()).resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a link loop
        raise refused from None
    if not resolved.is_relative_to(cache) or resolved == cache or not resolved.is_file():
        raise refused
    return str(resolved)


def _drawn(service: LogoService, value: dict[str, Any] | None) -> tuple[Image.Image, list[list[float]] | None]:
    """The photo and the boxes drawn on it, from a raw ``image_annotator`` payload (None: none drawn).

    The events run with ``preprocess=False`` so that the photo is opened by the
    pipeline's own loader: a corrupt, huge or non-image file gets its clear message.
    Only a file uploaded to this page is opened (:func:`uploaded_file`), and at most
    ``settings.max_boxes`` boxes are read.
    """
    value = value if isinstance(value, dict) else {}
    image = value.get("image")
    path = image.get("path") if isinstance(image, dict) else None
    if not path:
        raise gr.Error("Drop, paste or pick a photo first.")
    drawn = value.get("boxes") or []
    if not isinstance(drawn, list) or len(drawn) > service.settings.max_boxes:
        raise gr.Error(f"Draw at most {service.settings.max_boxes} boxes.")
    path = uploaded_file(path)
    try:
        turns = int(value.get("orientation") or 0) % 4
    except (TypeError, ValueError):
        raise gr.Error("The photo's orientation is not a number.") from None
    try:
        photo = service.search.load(path)
    except ImageError as exc:
        raise gr.Error(f"This file cannot be used: {exc}") from None
    for _ in range(turns):  # the user turned it a quarter clockwise
        photo = photo.transpose(Image.Transpose.ROTATE_270)
    boxes = []
    for box in drawn:
        try:
            scale = float(box.get("scaleFactor") or 1)  # the annotator reports boxes in display pixels
            boxes.append(Box.from_sequence([box[key] / scale for key in ("xmin", "ymin", "xmax", "ymax")]).to_list())
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError):
            continue  # a zero-size click, not a box
    return photo, boxes or None


def served_archive(archive: Path) -> Path:
    """The export ``archive`` moved into the page's upload cache (swept with it after
    ``LOGOS_UPLOAD_CACHE_AGE``), its temporary folder removed at once: an export folder holds a copy of every
    photo, and the page served it from /tmp, where nothing ever removed it."""
    try:
        cache = Path(get_upload_folder())
        cache.mkdir(parents=True, exist_ok=True)
        kept = Path(tempfile.mkdtemp(prefix="export-", dir=cache)) / archive.name
        shutil.move(archive, kept)
    finally:
        shutil.rmtree(archive.parent, ignore_errors=True)
    return kept


def _neighbours_shown(k: object) -> int:
    """The page's "neighbours per logo", kept to the slider's range whatever a client sends."""
    try:
        return min(MAX_SHOWN, max(1, int(float(k))))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise gr.Error("Neighbours per logo is a number.") from None


def _card(service: LogoService, number: int, photo: Image.Image, logo: LogoMatch, shown: int) -> dict[str, Any]:
    """What the page shows for one logo: its crop, its label and its ``shown`` nearest stored logos."""
    thumbs = []
    for n in logo.neighbours[:shown]:
        webp = service.insight.thumbnail(n.id)
        if webp is not None:
            thumbs.append((Image.open(io.BytesIO(webp)), f"{n.label or 'unlabelled'} · d={n.distance:.2f} · #{n.id}"))
    name, probability, named = naming(logo)
    if named and logo.prediction.named_by == "text":
        near = any(n.label == logo.prediction.label for n in logo.neighbours)
        verdict = f"named by its text, {probability:.0%} likely" + ("" if near else " (no stored logo of it is near)")
    elif named:
        verdict = f"confidence {probability:.0%}"
    elif probability:
        verdict = f"not named: a best guess, {probability:.0%} likely" + ("; its nearest logos below" if shown else "")
    else:
        verdict = "not named: no labelled logo is near"
    if logo.found_by == "text":
        verdict += "; found by its text (the detector drew no box here)"
    return {"title": f"Logo {number}: {name}", "verdict": verdict, "named": named,
            "crop": crop(photo, logo.box), "neighbours": thumbs, "text": logo.text}


def outlined(photo: Image.Image, logos: list[LogoMatch]) -> Image.Image:
    """The photo with each logo's box outlined (no fill over the logo) and its number in a marker at its corner:
    named logos in their colour, unnamed ones in grey. One image however many logos (the legend says who is
    who), so a result page costs the same to send with 1 box or 50."""
    shown = photo.convert("RGB")  # a copy: the photo itself stays as it was
    draw = ImageDraw.Draw(shown)
    width = max(2, round(max(shown.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(shown.size) / 45)))
    for number, logo in enumerate(logos, 1):
        colour = _colour(number, naming(logo)[2])
        x0, y0, x1, y1 = logo.box.to_list()
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), str(number), font=font)
        pad = width + 1
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        mx, my = x0, max(0.0, y0 - h)  # above the box's corner, inside the photo
        draw.rectangle((mx, my, mx + w, my + h), fill=colour)
        draw.text((mx + pad - left, my + pad - top), str(number), fill="white", font=font)
    return shown


def _colour(number: int, named: bool) -> tuple[int, int, int]:
    """The colour of logo ``number``'s box, the same on the result photo and in the photo box."""
    return _PALETTE[(number - 1) % len(_PALETTE)] if named else UNNAMED


def naming(logo: LogoMatch) -> tuple[str, float, bool]:
    """How the page names a logo: ``(text, probability, named)``; an unknown logo shows its best guess as a
    question ("Coca-Cola?"), never as if it were named.

    Example:
        >>> from pipeline.types import Box, Prediction
        >>> naming(LogoMatch(Box(0, 0, 9, 9), Prediction(None, 0.45, guess="Coca-Cola", guess_probability=0.45), []))
        ('Coca-Cola?', 0.45, False)
    """
    prediction = logo.prediction
    if prediction.label is not None:
        return prediction.label, prediction.confidence, True
    if prediction.guess is not None:
        return f"{prediction.guess}?", prediction.guess_probability, False
    return "unknown", 0.0, False


def build_ui(service: LogoService, auth: AdminAuth) -> gr.Blocks:
    """The upload-and-search page, the add-to-index page and the map tab."""

    def search(value: dict[str, Any] | None, k: float):
        photo, boxes = _drawn(service, value)
        try:
            result = service.search.photo(photo, boxes=boxes, k=_neighbours_shown(k))
        except NotReadyError as exc:  # not a failure: the page says so where results go, and keeps the photo
            return gr.skip(), gr.skip(), [], f"**{markdown_text(exc)}**", None, None
        except LogoError as exc:
            raise gr.Error(str(exc)) from None
        legend, drawn, cards = [], [], []
        # each thumbnail is an image the page encodes and sends: many logos show fewer neighbours each
        shown = max(3, PAGE_THUMBNAILS // max(1, len(result.logos)))
        # the proposals nothing named, shown on request: the detector's best-scored few, without their neighbours
        unnamed = sorted(result.unnamed, key=lambda logo: -logo.detection_score)[:MAX_PROPOSALS_SHOWN]
        for number, logo in enumerate(unnamed, len(result.logos) + 1):
            card = _card(service, number, photo, logo, 0)
            cards.append({**card, "proposal": True, "verdict": f"left out: the detector was unsure (score "
                                                                 f"{logo.detection_score:.2f}) and {card['verdict']}"})
        for number, logo in enumerate(result.logos, 1):
            name, probability, named = naming(logo)
            tag = f"{number}: {name} ({probability:.0%})"
            x0, y0, x1, y1 = (round(v) for v in logo.box.to_list())
            legend.append(f"**{markdown_text(tag)}**" if named else f"*{markdown_text(tag)}*")
            drawn.append({"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": tag,
                          "color": _colour(number, named)})
            cards.append(_card(service, number, photo, logo, shown))
        search_id = service.search.share(result) if result.logos else None
        if not result.logos:
            message = "No logo found on this photo. Drag a box around one and search again."
        elif service.insight.count() == 0:
            message = "The index is empty: add labelled logos first."
        else:
            message = (" · ".join(legend)
                       + f"\n\n{len(result.logos)} logo(s); a name with ? is a best guess, not confirmed. Drag the "
                       f"boxes to adjust them, or draw new ones, and search again. "
                       f"[See them on the map]({map_link(search_id)})")
        if unnamed:
            which = "them" if len(unnamed) == len(result.unnamed) else f"the {len(unnamed)} it scored highest"
            message += (f"\n\n{len(result.unnamed)} more box(es) the detector was unsure of and nothing named: "
                        f"tick *Show unnamed proposals* to see {which}.")
        return (outlined(photo, result.logos), {"image": photo, "boxes": drawn}, cards, message, shapes.search(result),
                search_id)

    def add(value: dict[str, Any] | None, label: str | None, token: str | None):
        if refusal := auth.refusal(token):
            raise gr.Error(refusal)
        photo, boxes = _drawn(service, value)
        boxes = boxes or [[0, 0, photo.width, photo.height]]  # no box drawn: the whole upload is the logo
        label = (label or "").strip() or None
        try:
            ids = service.ingest.photo(photo, boxes=boxes, labels=[label] * len(boxes), who=auth.who)
        except LogoError as exc:
            raise gr.Error(str(exc)) from None
        return (f"Added logo(s) {', '.join(f'#{i}' for i in ids)} as **{markdown_text(label or 'unlabelled')}**; "
                "searchable now.",
                gr.Dropdown(choices=service.labels.in_use()))

    def annotate(files: list[str] | None, token: str | None, progress: gr.Progress = gr.Progress()):
        if refusal := auth.refusal(token):
            raise gr.Error(refusal)
        if not files:
            raise gr.Error("Pick some photos first.")
        done = logos = labelled = skipped = 0
        failed, empty = [], []
        for path in progress.tqdm(files, desc="auto-annotating", unit="photo"):
            name = markdown_text(str(path).rsplit("/", 1)[-1])
            try:
                ids = service.ingest.annotate_upload(path, who=auth.who)
            except LogoError as exc:
                failed.append(f"{name}: {markdown_text(exc)}")
                continue
            if ids is None:
                skipped += 1
                continue
            done += 1
            logos += len(ids)
            labelled += len(service.labels.current(ids))
            if not ids:
                empty.append(name)
        lines = [f"**{done} photo(s) annotated**: {logos} logo(s) found, {labelled} with a machine label "
                 f"([review them]({REVIEW_PREFIX})); {skipped} done before."]
        if empty:
            lines.append(f"No logo found on: {', '.join(empty)}.")
        if failed:
            lines.append("Not usable: " + "; ".join(failed))
        return "\n\n".join(lines)

    def export(fmt: str, human_only: bool, token: str | None):
        if refusal := auth.refusal(token):
            raise gr.Error(refusal)
        try:
            archive, report = service.insight.export(fmt, ExportOptions(human_only=human_only))
        except LogoError as exc:
            raise gr.Error(str(exc)) from None
        summary = (f"{report.photos} photo(s), {report.logos} logo(s), {report.labels} label(s)"
                   + (f"; {len(report.skipped_photos)} photo file(s) missing" if report.skipped_photos else ""))
        return str(served_archive(archive)), summary

    age = service.settings.upload_cache_age  # uploads (and the page's other cached files) go after this long
    with gr.Blocks(title="Logo search", delete_cache=(max(1, age // 4), age)) as blocks:
        gr.Markdown("# Which logos are on this photo?\nUpload a product photo or a logo crop, or drag boxes around "
                    "the logos; each is named by its nearest labelled logos. "
                    f"[Open the map of the logo space]({DASH_PREFIX})")
        building = gr.Markdown(elem_id="build-status")
        build_timer = gr.Timer(BUILD_POLL_S)

        def build_progress():
            """The store's build, shown until it ends; then the polling stops."""
            status = service.build.status()
            if status.building:
                return (f"**{markdown_text(status.sentence())}** Searches work once the first logos are indexed.",
                        gr.skip())
            ended = "" if status.state == "ready" else f"**{markdown_text(status.sentence())}**"
            return ended, gr.Timer(active=False)

        build_timer.tick(build_progress, None, [building, build_timer], api_name=False, show_progress="hidden")
        blocks.load(build_progress, None, [building, build_timer], api_name=False, show_progress="hidden")
        with gr.Tab("Search"):
            with gr.Row():
                with gr.Column():
                    photo = image_annotator(label="Photo: drag a box around a logo (optional)",
                                            sources=["upload", "clipboard"], disable_edit_boxes=True,
                                            show_remove_button=True, box_min_size=8, height=520)
                    k = gr.Slider(1, MAX_SHOWN, value=service.settings.k, step=1, label="Neighbours per logo")
                    go = gr.Button("Search", variant="primary")
                    gr.Examples(_examples(), inputs=photo, label="Example photos")
                with gr.Column():
                    found = gr.Image(label="Logos found", height=520, interactive=False, format="jpeg")
                    message = gr.Markdown()
            cards = gr.State([])
            search_link = gr.State(None)  # this visitor's last search, as a short-lived id for the map
            with gr.Accordion("Result as JSON (same as the API and the CLI)", open=False):
                as_json = gr.JSON()

            proposing = service.settings.proposal_threshold < service.settings.detector_threshold
            show_unnamed = gr.Checkbox(False, label="Show unnamed proposals (boxes the detector was unsure of, "
                                                    "left out because nothing named them)", visible=proposing)

            @gr.render(inputs=[cards, show_unnamed])
            def show(items: list[dict[str, Any]], unnamed: bool) -> None:
                for item in items:
                    if item.get("proposal"):
                        continue
                    with gr.Row(equal_height=True):
                        with gr.Column(scale=1, min_width=160):
                            gr.Image(item["crop"], label=item["title"], height=160, show_label=True)
                            title = markdown_text(item["title"])
                            gr.Markdown(f"**{title}**, {item['verdict']}" if item["named"]
                                        else f"*{title}* {item['verdict']}")  # a guess reads as unconfirmed
                            if item.get("text"):
                                gr.Markdown(f"reads “{markdown_text(item['text'])}”", elem_classes=["reads"])
                        gr.Gallery(item["neighbours"], label=f"Nearest logos to {item['title'].split(':')[0]}",
                                   columns=10, height="auto", scale=5, allow_preview=True,
                                   elem_classes=["neighbours"])
                proposals = [item for item in items if item.get("proposal")] if unnamed else []
                for start in range(0, len(proposals), 6):  # small, six to a row, without neighbours
                    with gr.Row():
                        for item in proposals[start:start + 6]:
                            with gr.Column(min_width=140):
                                gr.Image(item["crop"], label=item["title"], height=110, show_label=True)
                                gr.Markdown(f"*{markdown_text(item['title'])}* {item['verdict']}",
                                            elem_classes=["reads"])

            def from_map(request: gr.Request):
                """``/?logo=ID`` (the map's "search with this logo" link) puts that logo in the photo box."""
                logo_id = request.query_params.get("logo", "")
                webp = service.insight.thumbnail(int(logo_id)) if logo_id.isdigit() else None
                if webp is None:
                    return gr.skip()
                return {"image": Image.open(io.BytesIO(webp)).convert("RGB"), "boxes": []}

            blocks.load(from_map, None, photo, api_name=False)
        with gr.Tab("Add to index"):
            with gr.Row():
                new_photo = image_annotator(label="Logo crop (the whole image), or a photo with a box around the logo",
                                            sources=["upload", "clipboard"], disable_edit_boxes=True,
                                            show_remove_button=True, height=420)
                with gr.Column():
                    label = gr.Dropdown(service.labels.in_use(), allow_custom_value=True,
                                        label="Label (pick one or type a new one)", value=None)
                    token = gr.Textbox(label="Admin token", type="password")
                    add_button = gr.Button("Add", variant="primary")
                    added = gr.Markdown()
            add_button.click(add, [new_photo, label, token], [added, label], api_name="add_logo", preprocess=False)
            blocks.load(lambda: gr.Dropdown(choices=service.labels.in_use()), None, label, api_name=False,
                        show_progress="hidden")  # the labels now, not when the page was built
        with gr.Tab("Annotate"):
            gr.Markdown("Auto-annotate product photos: each logo found is stored with the label of its nearest "
                        "logos as a *machine* label, then [reviewed]("
                        f"{REVIEW_PREFIX}) by people. Photos done before are skipped. For big folders use "
                        "`python -m pipeline import-photos FOLDER` (resumable).")
            with gr.Row():
                photos = gr.File(file_count="multiple", file_types=["image"], label="Photos")
                with gr.Column():
                    admin_token = gr.Textbox(label="Admin token", type="password")
                    annotate_button = gr.Button("Auto-annotate", variant="primary")
                    annotated = gr.Markdown()
            gr.Markdown("### Export\nPhotos, boxes and labels in the format another tool reads.")
            with gr.Row():
                fmt = gr.Dropdown(sorted(EXPORTERS), value="coco", label="Format")
                human_only = gr.Checkbox(label="Only labels people set or accepted")
                export_button = gr.Button("Export")
            with gr.Row():
                download = gr.File(label="Download")
                exported = gr.Markdown()
            annotate_button.click(annotate, [photos, admin_token], annotated, api_name=False)
            export_button.click(export, [fmt, human_only, admin_token], [download, exported], api_name=False)
        with gr.Tab("Review"):
            gr.HTML(_frame(REVIEW_PREFIX))
        with gr.Tab("Map"):
            map_tab = gr.HTML(_map_frame())
        go.click(search, [photo, k], [found, photo, cards, message, as_json, search_link], api_name="search",
                 preprocess=False).then(_map_frame, search_link, map_tab, api_name=False)
    return blocks

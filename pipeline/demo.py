"""The bundled demo: real brand logos from ``assets/logos`` become the default store.

On first start the app (or ``python -m pipeline demo``) imports the bundled
logos and builds the index; a second start finds them and does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.importing import import_folder
from pipeline.service import LogoService

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEMO_LOGOS = ASSETS / "logos"
EXAMPLE_PHOTOS = ASSETS / "examples"

log = logging.getLogger(__name__)


def build_demo(service: LogoService, logos_dir: Path = DEMO_LOGOS, *, progress: bool = True) -> dict[str, object]:
    """Import the demo logos and build the index, unless the store already holds logos.

    A store built with another embedder is re-embedded first (with progress).
    """
    if service.store.count():
        reembedded = service.reembed(progress=progress).logos
        if service.index.needs_rebuild():  # never built, or built for another model (a crash mid re-embed)
            service.build_index()
        return {"built": False, "logos": service.store.count(), "reembedded": reembedded}
    log.info("building the demo store from %s (first start only)", logos_dir)
    report = import_folder(service, logos_dir, progress=progress)
    info = service.build_index()
    log.info("demo store ready: %d logos, %d labels", info.count, len(service.store.label_counts()))
    return {"built": True, "logos": info.count, "failed": len(report.failed)}

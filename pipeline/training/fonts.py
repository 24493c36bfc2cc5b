"""Typefaces for generated wordmarks: the Latin faces of @fontsource npm packages, made visible to cairo.

Why: most misses of the colour embedder on a brand collection it never saw
(devicon) are wordmarks, and the system fonts (DejaVu, Liberation) give the
generated marks of :mod:`pipeline.training.marks` eight look-alike typefaces.
Brands set their names in geometric, slab, script, display and mono faces; the
@fontsource packages on npm (SIL Open Font License) carry those faces as web
fonts. Here each package is fetched once, its Latin regular and bold faces are
converted to TrueType (fontTools; cairo reads fonts through fontconfig, which
indexes TrueType reliably) and a fontconfig file that adds them to the system
fonts is written beside them. :func:`use_fonts` points ``FONTCONFIG_FILE`` at it:
it must run before the first text is rendered in the process (fontconfig reads
its configuration once), and processes forked after it inherit it.
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from pipeline.training.synth import fetch_npm_package
from pipeline.util import atomic_write_bytes

# npm @fontsource/NAME: version. Sans, geometric, slab, serif, display, script, mono and techno faces.
FONTSOURCE = {name: "5.3.0" for name in (
    "roboto", "open-sans", "montserrat", "lato", "poppins", "raleway", "oswald", "playfair-display", "merriweather",
    "ubuntu", "nunito", "rubik", "work-sans", "fira-sans", "inter", "bebas-neue", "pacifico", "lobster", "comfortaa",
    "josefin-sans", "quicksand", "titillium-web", "exo-2", "orbitron", "righteous", "archivo-black", "anton",
    "dancing-script", "roboto-slab", "space-grotesk", "barlow", "kanit", "teko", "bitter", "arvo",
    "abril-fatface", "permanent-marker", "fredoka", "varela-round", "ibm-plex-sans", "ibm-plex-mono", "dm-sans",
    "manrope", "jetbrains-mono", "caveat", "russo-one", "black-ops-one", "audiowide", "baloo-2", "cabin",
    "pt-serif", "zilla-slab", "alfa-slab-one", "bangers", "chakra-petch", "saira", "lexend", "sora", "outfit")}
FONTSOURCE["source-code-pro"] = "5.3.1"
WEIGHTS = ("400", "700")

_CONFIG = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>{fonts}</dir>
  <cachedir>{fonts}/cache</cachedir>
</fontconfig>
"""


def _family(font_file: Path) -> str:
    from fontTools.ttLib import TTFont

    return TTFont(font_file)["name"].getBestFamilyName()


def fetch_fonts(cache_dir: Path) -> tuple[Path, tuple[str, ...]]:
    """The folder of TrueType faces of :data:`FONTSOURCE` under ``cache_dir`` and their family names.

    Fetches and converts once; later calls read the folder. A package without a Latin face of a weight in
    :data:`WEIGHTS` contributes the weights it has.

    Args:
        cache_dir: Where the npm packages are unpacked (``fonts/`` beside them holds the TrueType files).

    Returns:
        ``(folder, families)``: the families sorted, each as fontconfig will name it.
    """
    from fontTools.ttLib import TTFont

    folder = Path(cache_dir) / "fonts"
    folder.mkdir(parents=True, exist_ok=True)
    families = set()
    for name, version in FONTSOURCE.items():
        for weight in WEIGHTS:
            target = folder / f"{name}-{weight}.ttf"
            if not target.exists():
                package = fetch_npm_package(f"@fontsource/{name}", version, cache_dir, "package.json")
                source = package / "files" / f"{name}-latin-{weight}-normal.woff2"
                if not source.exists():
                    continue
                font = TTFont(source)
                font.flavor = None  # WOFF2 -> plain TrueType/OpenType
                buffer = BytesIO()
                font.save(buffer)
                atomic_write_bytes(target, buffer.getvalue())
            families.add(_family(target))
    return folder, tuple(sorted(families))


def use_fonts(cache_dir: Path) -> tuple[str, ...]:
    """Fetch :data:`FONTSOURCE` and make cairo (through fontconfig) see it, system fonts included.

    Returns:
        The added family names, for :func:`pipeline.training.marks.generated_mark`'s ``fonts``.
    """
    folder, families = fetch_fonts(cache_dir)
    config = folder / "fonts.conf"
    text = _CONFIG.format(fonts=folder.resolve())
    if not config.exists() or config.read_text() != text:
        atomic_write_bytes(config, text.encode())
    os.environ["FONTCONFIG_FILE"] = str(config.resolve())
    return families

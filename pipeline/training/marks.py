"""Generated brand marks: a glyph and a wordmark in a font and colours of their own.

Real brand logos are rarely a lone glyph: most carry a name set in a typeface,
often with a symbol beside or above it, in a badge, a seal or an outline, in
two or three colours. No freely licensed brand collection shows that variety
(every such collection is kept for evaluation), so training makes its own:
each mark is a fixed design (word, font, layout, colours, glyph) drawn by a
seed, written as an SVG so that it renders and "photographs" exactly like the
other logos (:func:`pipeline.training.synth.logo_card`). Two marks may share a
glyph or a layout and differ only in the word or the colours, which is what a
retrieval model must learn to tell apart.

Glyphs come from simple-icons logos of the ``train`` split; fonts are the
system fonts fontconfig finds (DejaVu and Liberation on Debian), plus the
@fontsource faces of :mod:`pipeline.training.fonts` when the recipe fetches them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipeline.training.synth import Icon

FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "Liberation Sans", "Liberation Serif",
         "Liberation Mono", "Liberation Sans Narrow", "DejaVu Sans Condensed")
LAYOUTS = ("word", "glyph_left", "glyph_above", "badge", "seal", "outline", "two_tone")
_SYLLABLES = ("ka", "lo", "mi", "ra", "ve", "to", "su", "ne", "zi", "pa", "do", "gu", "fe", "xo", "bri", "tra",
              "ql", "on", "ex", "ia", "um", "ar", "el", "os", "st", "co", "vi", "ny", "ph", "ch", "sk", "ly")
_PATH = re.compile(r'<path[^>]*\sd="([^"]+)"')


def _word(rng: np.random.Generator) -> str:
    word = "".join(rng.choice(_SYLLABLES) for _ in range(int(rng.integers(2, 5))))
    style = rng.choice(4, p=[0.35, 0.35, 0.15, 0.15])
    if style == 3:  # two capitals inside, as in "FastApi" or "LeetCode"
        cut = max(1, len(word) // 2)
        word = word[:cut].title() + word[cut:].title()
    else:
        word = word.upper() if style == 0 else word.title() if style == 1 else word
    if rng.random() < 0.15:
        word += " " + "".join(rng.choice(_SYLLABLES) for _ in range(2)).upper()
    return word


def _colour(rng: np.random.Generator) -> str:
    """A print colour: saturated most of the time, sometimes black or a dark grey."""
    if rng.random() < 0.2:
        return "#%02x%02x%02x" % tuple(int(v) for v in rng.integers(0, 70, 3))
    hue = rng.random()
    channels = np.clip(np.abs((hue * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)  # HSV hue -> RGB
    value, saturation = rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    rgb = value * (1 - saturation + saturation * channels)
    return "#%02x%02x%02x" % tuple(int(v * 255) for v in rgb)


def _text(word: str, x: float, y: float, size: float, font: str, bold: bool, italic: bool, fill: str,
          anchor: str = "start") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-family="{font}" font-size="{size:.1f}" '
            f'font-weight="{"bold" if bold else "normal"}" font-style="{"italic" if italic else "normal"}" '
            f'text-anchor="{anchor}" fill="{fill}">{word}</text>')


def _glyph(path: str, x: float, y: float, size: float, fill: str) -> str:
    """A 24x24 simple-icons path placed in a ``size`` square at (x, y)."""
    return f'<g transform="translate({x:.1f},{y:.1f}) scale({size / 24:.4f})"><path d="{path}" fill="{fill}"/></g>'


def generated_mark(seed: int, glyphs: list[Icon], fonts: Sequence[str] = FONTS) -> Icon:
    """The mark drawn by ``seed``: one fixed design, rendered the same in every view.

    Args:
        seed: Picks the word, font, layout, colours and glyph.
        glyphs: Single-colour logos (simple-icons) whose path may serve as the symbol.
        fonts: Font families (fontconfig names) the word may be set in.

    Example:
        >>> mark = generated_mark(7, [])
        >>> mark.multicolour, mark.svg.startswith("<svg")
        (True, True)
    """
    rng = np.random.default_rng([seed, 0x6D61726B])
    word, font = _word(rng), str(rng.choice(list(fonts)))
    bold, italic = bool(rng.random() < 0.55), bool(rng.random() < 0.15)
    ink, accent = _colour(rng), _colour(rng)
    if rng.random() < 0.3:
        accent = ink
    paths = [m.group(1) for icon in glyphs[:: max(1, len(glyphs) // 500)] if (m := _PATH.search(icon.svg))]
    layout = str(rng.choice(LAYOUTS if paths else ("word", "badge", "outline", "two_tone")))
    path = paths[int(rng.integers(len(paths)))] if paths else ""
    size = 40.0
    width = 0.72 * size * len(word)  # generous: the render is cropped to what is drawn
    parts: list[str] = []
    if layout == "word":
        parts.append(_text(word, 0, size, size, font, bold, italic, ink))
        box = (width, size * 1.3)
    elif layout == "glyph_left":
        parts += [_glyph(path, 0, 0, size * 1.2, accent), _text(word, size * 1.5, size, size, font, bold, italic, ink)]
        box = (size * 1.5 + width, size * 1.3)
    elif layout == "glyph_above":
        parts += [_glyph(path, width / 2 - size, 0, size * 2, accent),
                  _text(word, width / 2, size * 3.1, size, font, bold, italic, ink, "middle")]
        box = (width, size * 3.4)
    elif layout == "badge":
        parts += [f'<rect x="0" y="0" width="{width + size:.1f}" height="{size * 1.8:.1f}" rx="{size * 0.5:.1f}" '
                  f'fill="{accent}"/>',
                  _text(word, (width + size) / 2, size * 1.25, size, font, bold, italic,
                        "#ffffff" if rng.random() < 0.7 else "#111111", "middle")]
        box = (width + size, size * 1.8)
    elif layout == "seal":
        radius = max(width, size * 3) / 2 + size * 0.4
        parts += [f'<circle cx="{radius:.1f}" cy="{radius:.1f}" r="{radius - 3:.1f}" fill="none" stroke="{accent}" '
                  f'stroke-width="{size * 0.15:.1f}"/>',
                  _glyph(path, radius - size, radius - size * 1.4, size * 2, accent),
                  _text(word, radius, radius + size * 1.3, size * 0.8, font, bold, italic, ink, "middle")]
        box = (2 * radius, 2 * radius)
    elif layout == "outline":
        parts += [f'<rect x="3" y="3" width="{width + size:.1f}" height="{size * 1.8:.1f}" fill="none" '
                  f'stroke="{accent}" stroke-width="{size * 0.12:.1f}"/>',
                  _text(word, 3 + (width + size) / 2, size * 1.3, size, font, bold, italic, ink, "middle")]
        box = (width + size + 6, size * 1.8 + 6)
    else:  # two_tone: the word in two colours, as many names are printed
        cut = max(1, len(word) // 2)
        second = accent if accent != ink else _colour(rng)
        parts.append(f'<text x="0" y="{size:.1f}" font-family="{font}" font-size="{size:.1f}" '
                     f'font-weight="{"bold" if bold else "normal"}" font-style="{"italic" if italic else "normal"}">'
                     f'<tspan fill="{ink}">{word[:cut]}</tspan><tspan fill="{second}">{word[cut:]}</tspan></text>')
        box = (width, size * 1.3)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {box[0]:.1f} {box[1]:.1f}">'
           + "".join(parts) + "</svg>")
    return Icon(f"mark-{seed}", word, ink.lstrip("#"), svg, multicolour=True)

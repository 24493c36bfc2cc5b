"""What a label may be: one check for every path that writes one.

Labels come from people and clients (the API, the map's lasso, the review queue,
a dataset's class names) and are shown to everyone who searches. They are data:
plain text on one line, short enough for a legend. Control characters, line
breaks and Unicode format characters (bidi overrides that reverse what a reader
sees, zero-width marks that make two labels look alike) have no place in a brand
name and are refused with a clear error rather than silently stripped, so that
what is stored is what the writer typed. Markup (``<b>``, ``[x](url)``) is
allowed as text: each front end renders labels as text, never as markup.
"""

from __future__ import annotations

import unicodedata

from pipeline.errors import BadInputError

MAX_LABEL_CHARS = 200
# joiners that some scripts (Persian, Indic) and emoji sequences need; every other format character is refused
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})
_REFUSED = {"Cc": "a control character", "Cf": "an invisible format character (such as a bidi override)",
            "Cs": "a lone surrogate", "Co": "a private-use character", "Zl": "a line break",
            "Zp": "a paragraph break"}


def clean_label(label: str | None) -> str | None:
    """The label as stored: checked, trimmed, runs of spaces made one; empty means no label.

    Raises:
        BadInputError: not text, longer than :data:`MAX_LABEL_CHARS`, or holding a line break, a tab, a
            control or an invisible format character (the message names the position, not the text).

    Example:
        >>> clean_label("  Coca-Cola   Zero ")
        'Coca-Cola Zero'
        >>> clean_label("<b>Acme</b>")  # markup is text; front ends show it as such
        '<b>Acme</b>'
        >>> clean_label("Acme\\nCorp")
        Traceback (most recent call last):
        ...
        pipeline.errors.BadInputError: a label is one line of text: character 5 is a control character (U+000A)
    """
    if label is None:
        return None
    if not isinstance(label, str):
        raise BadInputError(f"a label must be text, got {type(label).__name__}")
    for position, char in enumerate(label, 1):
        kind = _REFUSED.get(unicodedata.category(char))
        if kind and char not in _ALLOWED_FORMAT:
            raise BadInputError(f"a label is one line of text: character {position} is {kind} (U+{ord(char):04X})")
    cleaned = " ".join(label.split())
    if len(cleaned) > MAX_LABEL_CHARS:
        raise BadInputError(f"a label must be at most {MAX_LABEL_CHARS} characters")
    return cleaned or None

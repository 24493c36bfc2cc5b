"""Text from users, shown as text: labels and file names inside Markdown.

Labels are set by people and clients and shown to every visitor; a label such
as ``<img src=x>`` or ``[offer](https://evil.example)`` must read as those
characters, never become an image or a link. Gradio's Markdown renders HTML and
links, so every piece of user text placed in Markdown goes through
:func:`markdown_text`. (Dash components and Gradio labels, captions and
dropdowns render text as text already; the map's legend has its own escaping in
``dashboard/figures.py``.)
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation character, which then stands for itself
_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")


def markdown_text(text: object) -> str:
    r"""``text`` escaped so that Markdown (and the HTML it allows) shows it literally, on one line.

    Example:
        >>> print(markdown_text("[offer](https://evil.example) <img src=x>"))
        \[offer\]\(https\:\/\/evil\.example\) \<img src\=x\>
    """
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))

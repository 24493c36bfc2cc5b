"""A vocabulary of brand names: labels that exist before any logo of them, each with its aliases.

The text a logo carries names it (issue: read the logo), and a person knows far more brand names than the
store holds logos of. A vocabulary file is UTF-8, one label a line, with optional aliases after a tab, split
by ``|``::

    Coca-Cola<TAB>Coke|CocaCola
    Heineken

Blank lines and lines starting with ``#`` are skipped. A malformed line is an error that names it, and then
nothing of the file is stored; importing the same file again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import BadInputError
from pipeline.labels import clean_label

MAX_VOCABULARY_BYTES = 4 * 1024 * 1024  # a file of tens of thousands of brands, and no more
MAX_ALIASES = 50


@dataclass(frozen=True)
class VocabularyEntry:
    """One label of the vocabulary, its aliases, and how many stored logos carry it (0: a name only)."""

    label: str
    aliases: tuple[str, ...] = ()
    logos: int = 0


def parse_vocabulary(data: bytes | str) -> list[VocabularyEntry]:
    """The entries of a vocabulary file, in file order, a label given twice merged into one.

    Raises:
        BadInputError: not UTF-8, too big, or a line that is not ``LABEL[<TAB>ALIAS|ALIAS...]`` (the message
            names the line).

    Example:
        >>> [(e.label, e.aliases) for e in parse_vocabulary("Coca-Cola\\tCoke|CocaCola\\n# soft drinks\\nFanta\\n")]
        [('Coca-Cola', ('Coke', 'CocaCola')), ('Fanta', ())]
        >>> parse_vocabulary("Coca-Cola\\t\\tCoke")
        Traceback (most recent call last):
        ...
        pipeline.errors.BadInputError: line 1: a label and its aliases are parted by one tab, found 2
    """
    if isinstance(data, bytes):
        if len(data) > MAX_VOCABULARY_BYTES:
            raise BadInputError(f"a vocabulary file is at most {MAX_VOCABULARY_BYTES // (1024 * 1024)} MiB")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise BadInputError(f"line {line}: not UTF-8 (byte {exc.start})") from None
    merged: dict[str, list[str]] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) > 2:
            raise BadInputError(f"line {number}: a label and its aliases are parted by one tab, "
                                f"found {len(parts) - 1}")
        try:
            label = clean_label(parts[0])
            aliases = [clean_label(alias) for alias in parts[1].split("|")] if len(parts) == 2 else []
        except BadInputError as exc:
            raise BadInputError(f"line {number}: {exc}") from None
        if label is None:
            raise BadInputError(f"line {number}: aliases without a label")
        if None in aliases:
            raise BadInputError(f"line {number}: an empty alias (two | in a row, or one at an end)")
        known = merged.setdefault(label, [])
        known.extend(alias for alias in aliases if alias not in known and alias != label)
        if len(known) > MAX_ALIASES:
            raise BadInputError(f"line {number}: more than {MAX_ALIASES} aliases for {label!r}")
    return [VocabularyEntry(label, tuple(aliases)) for label, aliases in merged.items()]

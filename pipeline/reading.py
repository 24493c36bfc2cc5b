"""Read the logo: the text a logo crop carries, and which label of the vocabulary it names.

Most brand marks carry their name (Coca-Cola, Lavie, Aquafina); a person reads it where the embedder has to
have seen the mark. The reader is RapidOCR (``rapidocr-onnxruntime``: PP-OCRv4 text detection and recognition,
ONNX models inside its PyPI wheel, run in ONNX Runtime; nothing is downloaded). The match is a fuzzy comparison
(``rapidfuzz``) of what was read with every label and alias of the store's vocabulary
(:mod:`pipeline.vocabulary`), strict where it must be:

* a name is matched as a whole word run of the text ("lavie" in "la vie 350ml"), never inside a longer word;
* a name of up to 5 letters must be read exactly; a longer one may differ by one letter (up to 8) or two (OCR
  slips: "AQUAF1NA"), never more, so that a store of thousands of names is not matched by chance;
* generic packaging words ("organic", "new", "since", "fl oz", "perfect taste") never name anything, even when a
  label is spelt like one.

Example:
    >>> vocabulary = Vocabulary.of([("Coca-Cola", ("Coke",)), ("Lavie", ()), ("Zero", ())])
    >>> vocabulary.match("Coca Cola Registered Trade Mark")
    TextMatch(label='Coca-Cola', score=1.0, read='coca cola')
    >>> vocabulary.match("NUOC KHOANG laVie 350ml").label
    'Lavie'
    >>> vocabulary.match("12 FL OZ ZERO SUGAR") is None  # a generic word names nothing
    True
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from pipeline.errors import ConfigError
from pipeline.types import Box, Prediction

MIN_READ_SIDE = 64  # px: a crop's shorter side is brought up to this before reading (text a few px high is lost)
MAX_READ_SIDE = 640  # px: and its longer side down to this (reading time grows with the area)
MIN_LINE_SCORE = 0.6  # the recogniser's confidence below which a line is not kept
# What a text name is worth before a store has shown its own: benchmarks/read.py named 183 real-drinks test logos
# by text alone, every one right; taken as 19 right of 20, so that a few dozen of the store's own logos outweigh it.
PRIOR_RIGHT, PRIOR_NAMED = 19, 20


def allowed_edits(length: int) -> int:
    """Letters an OCR reading of a name ``length`` long may get wrong and still name it.

    Example:
        >>> [allowed_edits(n) for n in (3, 5, 6, 8, 9, 20)]
        [0, 0, 1, 1, 2, 2]
    """
    return 0 if length <= 5 else 1 if length <= 8 else 2


# Words printed on packaging that never name a brand by themselves (matched after folding, see ``fold``).
GENERIC_WORDS = frozenset("""
    new original classic organic bio natural natur light lite diet zero sugar free sugarfree fresh pure premium
    the and of for with since est established registered trade mark trademark brand quality perfect taste best
    fl oz ml cl l g kg kcal kj net wt weight water mineral sparkling still drink drinks beverage juice tea coffee
    milk chocolate cola soda energy vitamin plus max extra recipe made in product www com
    ingredients nutrition facts per serving value limited edition family size pack can bottle
""".split())


def fold(text: str) -> str:
    """Lower case, accents off, every run of other than letters and digits one space.

    Example:
        >>> fold("  Nước  Khoáng laVie-350ml! ")
        'nuoc khoang lavie 350ml'
    """
    plain = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in plain).split())


@dataclass(frozen=True)
class TextLine:
    """A line of text found on an image: where (pixels of that image), what it reads, and the recogniser's score."""

    box: Box
    text: str
    score: float


@dataclass(frozen=True)
class TextMatch:
    """The label the text names, how well (1.0: read exactly), and the words that matched."""

    label: str
    score: float
    read: str


class Vocabulary:
    """Every name (labels and their aliases, folded) that text can match, the label each stands for, and the
    labels the store holds logos of (built by :meth:`of` from ``(label, aliases)`` pairs).
    """

    def __init__(self, names: dict[str, str], pictured: frozenset[str] = frozenset()) -> None:
        self.names = names  # folded name -> label
        self.pictured = pictured  # the labels the store holds logos of

    @classmethod
    def of(cls, entries: Iterable[tuple[str, Sequence[str]]], pictured: Iterable[str] = ()) -> Vocabulary:
        names: dict[str, str] = {}
        for label, aliases in entries:
            for name in (label, *aliases):
                folded = fold(name)
                if folded and folded not in GENERIC_WORDS:
                    names.setdefault(folded, label)
                    names.setdefault(folded.replace(" ", ""), label)  # "coca cola" read as "cocacola"
        return cls(names, frozenset(pictured))

    def __len__(self) -> int:
        return len(set(self.names.values()))

    def match(self, text: str) -> TextMatch | None:
        """The label ``text`` names best, or None when no name matches well enough (see the module's rules).

        Runs of up to four words are tried, with and without their spaces; the score is the share of the name's
        letters read right (1.0: exactly), ties going to the longer run.
        """
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        words = fold(text).split()
        if not words or not self.names:
            return None
        runs = {" ".join(words[i:j]) for i in range(len(words)) for j in range(i + 1, min(len(words), i + 4) + 1)}
        runs |= {run.replace(" ", "") for run in runs}
        best: TextMatch | None = None
        for run in runs - GENERIC_WORDS:
            if run in self.names:
                name, edits = run, 0
            elif allowed_edits(len(run) + 2) == 0:  # no name this long (give or take two letters) may differ
                continue
            else:
                found = process.extractOne(run, self.names.keys(), scorer=Levenshtein.distance, score_cutoff=2)
                if found is None or found[1] > allowed_edits(len(found[0])):
                    continue
                name, edits = found[0], int(found[1])
            candidate = TextMatch(self.names[name], round(1 - edits / len(name), 4), run)
            if best is None or (candidate.score, len(candidate.read)) > (best.score, len(best.read)):
                best = candidate
        return best


@dataclass(frozen=True)
class TextPrecision:
    """How often text names a logo right in this store: of ``named`` human-labelled logos whose text named a label
    of the vocabulary, ``right`` named their own.

    Example:
        >>> TextPrecision().probability, round(TextPrecision(right=78, named=80).probability, 3)
        (0.95, 0.97)
    """

    right: int = 0
    named: int = 0

    @property
    def probability(self) -> float:
        """The probability that a text name is right: the mean of a Beta posterior whose prior is
        :data:`PRIOR_RIGHT` of :data:`PRIOR_NAMED`."""
        return (self.right + PRIOR_RIGHT) / (self.named + PRIOR_NAMED)


def name_by_text(prediction: Prediction, match: TextMatch | None, precision: TextPrecision, target: float,
                 thresholds: dict[str, float] | None = None, pictured: frozenset[str] = frozenset()) -> Prediction:
    """The answer with the logo's text heard: a logo the vote leaves unknown is named by the label its text names,
    when the store's text names are right at least ``target`` of the time and at least the threshold a person set
    for that label (``thresholds``: people's word wins over the text's too); the probability is theirs.

    Text names what the store has never seen (a label with no stored logo: a brand with no picture) or confirms
    the vote's best guess; it never names a ``pictured`` label against the vote, whose neighbours know that
    label's logos and did not find it ("Apple juice" printed beside a logo is no Apple logo). A label the vote
    gives stays: text that disagrees does not overrule it.

    Example:
        >>> unknown = Prediction(None, 0.3, guess="Aquafina", guess_probability=0.3)
        >>> named = name_by_text(unknown, TextMatch("Lavie", 1.0, "lavie"), TextPrecision(), 0.9)
        >>> named.label, named.confidence, named.named_by, named.guess
        ('Lavie', 0.95, 'text', 'Aquafina')
        >>> name_by_text(unknown, TextMatch("Lavie", 1.0, "lavie"), TextPrecision(), 0.99).label is None
        True
        >>> name_by_text(unknown, TextMatch("Lavie", 1.0, "lavie"), TextPrecision(), 0.9, {"Lavie": 1.0}).label
        >>> name_by_text(unknown, TextMatch("Lavie", 1.0, "lavie"), TextPrecision(), 0.9,
        ...              pictured=frozenset({"Lavie"})).label  # Lavie's logos are stored, and the vote is elsewhere
        >>> name_by_text(unknown, TextMatch("Aquafina", 1.0, "aquafina"), TextPrecision(), 0.9,
        ...              pictured=frozenset({"Aquafina"})).label  # the text confirms the vote's guess
        'Aquafina'
    """
    if prediction.label is not None or match is None:
        return prediction
    if match.label in pictured and match.label != prediction.guess:
        return prediction
    if precision.probability < max(target, (thresholds or {}).get(match.label, 0.0)):
        return prediction
    return replace(prediction, label=match.label, confidence=precision.probability, named_by="text")


class TextReader:
    """RapidOCR over logo crops, loaded on first use and shared by every thread (one reading at a time).

    Args:
        threads: ONNX Runtime threads per model (0: its default, every core).
    """

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # a broken install: say what to install, not a bare ImportError
            raise ConfigError("reading logos needs rapidocr-onnxruntime (requirements.txt)") from exc
        options = {"det_limit_side_len": MAX_READ_SIDE, "det_limit_type": "max", "use_cls": False,
                   "print_verbose": False}
        if self.threads:
            options.update(intra_op_num_threads=self.threads, inter_op_num_threads=1)
        return RapidOCR(**options)

    def read(self, crops: Sequence[Image.Image]) -> list[str]:
        """The text of each crop, its lines in reading order joined by a space ("" when none was read)."""
        if not crops:
            return []
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            return [self._read_one(crop) for crop in crops]

    def lines(self, photo: Image.Image) -> list[TextLine]:
        """The lines of text on a whole photo, each with its box in the photo's pixels, in reading order."""
        with self._lock:
            if self._engine is None:
                self._engine = self._load()
            return self._lines(photo)

    def _lines(self, image: Image.Image) -> list[TextLine]:
        sized = sized_for_reading(image)
        found, _ = self._engine(np.asarray(sized)[:, :, ::-1])  # RapidOCR reads BGR, as OpenCV does
        sx, sy = image.width / sized.width, image.height / sized.height
        lines = [TextLine(Box(min(p[0] for p in quad) * sx, min(p[1] for p in quad) * sy,
                              max(p[0] for p in quad) * sx, max(p[1] for p in quad) * sy), text.strip(), float(score))
                 for quad, text, score in (found or []) if text.strip() and float(score) >= MIN_LINE_SCORE]
        return sorted(lines, key=lambda line: (line.box.y0, line.box.x0))

    def _read_one(self, crop: Image.Image) -> str:
        return " ".join(line.text for line in self._lines(crop))


def sized_for_reading(crop: Image.Image) -> Image.Image:
    """``crop`` in RGB with its shorter side at least :data:`MIN_READ_SIDE` and its longer at most
    :data:`MAX_READ_SIDE` px (the text detector misses letters a few pixels high and slows on big crops).

    Example:
        >>> sized_for_reading(Image.new("L", (200, 20))).size
        (640, 64)
    """
    image = crop.convert("RGB")
    scale = min(max(1.0, MIN_READ_SIDE / max(1, min(image.size))), MAX_READ_SIDE / max(1, max(image.size)))
    if abs(scale - 1.0) > 1e-3:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BICUBIC)
    return image

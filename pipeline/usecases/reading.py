"""Reading: the text on searched logos, the store's vocabulary it is matched against, and what a text name is
worth in this store (:mod:`pipeline.reading`)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.derived import Derived
from pipeline.calibration import Calibrator
from pipeline.errors import StoreError
from pipeline.leave_one_out import sample_answers
from pipeline.reading import TextLine, TextMatch, TextPrecision, Vocabulary, name_by_text
from pipeline.text_evidence import TextEvidence, hear
from pipeline.types import Box, Detection, LabelSource, Prediction
from pipeline.usecases.parts import Parts

TEXT_SAMPLE = 300  # human-labelled logos read to measure how often text names a logo right (about 10 s)
READ_CHUNK = 8  # thumbnails read between two stop points of a background reading


class VocabularyResult(Derived[Vocabulary]):
    """The names text can match: the store's labels and the vocabulary's, with their aliases (milliseconds)."""

    name = "vocabulary"

    def __init__(self, parts: Parts) -> None:
        super().__init__()
        self.parts = parts

    def fingerprint(self) -> str:
        store = self.parts.store
        return f"{store.labels_version()}|{store.vocabulary_version()}"

    def make(self) -> Vocabulary:
        entries = self.parts.store.vocabulary()
        return Vocabulary.of(((entry.label, entry.aliases) for entry in entries),
                             pictured=(entry.label for entry in entries if entry.logos))


class TextEvidenceResult(Derived[TextEvidence]):
    """What text is worth in this store, measured on a seeded sample of :data:`TEXT_SAMPLE` of its human-labelled
    logos, read from their thumbnails: how often their text alone names their label (the precision of a text
    name), and how much more often it agrees with the vote's leave-one-out answer when that is right than when it
    is wrong (:class:`pipeline.text_evidence.TextEvidence`).

    A logo's thumbnail never changes, so what it reads is kept in the store (:func:`read_logos`): after a label
    change or an import the sample is matched and searched again (milliseconds to a second), and only logos new to
    the sample are read.
    """

    name = "text evidence"

    def __init__(self, parts: Parts, vocabulary: VocabularyResult) -> None:
        super().__init__()
        self.parts = parts
        self.vocabulary = vocabulary

    def fingerprint(self) -> str:
        settings = self.parts.settings
        # the labels and logos (the vocabulary's fingerprint holds the labels' version), the model and the vote
        return (f"{self.vocabulary.fingerprint()}|{self.parts.store.model_id}|{settings.k}|"
                f"{settings.machine_label_weight}|{settings.open_set_share}")

    def make(self) -> TextEvidence:
        vocabulary = self.vocabulary.refresh()
        try:
            data = self.parts.store_vectors()
        except StoreError:  # an empty store: nothing to measure
            return TextEvidence()
        rows = np.array([n for n, (label, source) in enumerate(zip(data.labels, data.sources, strict=True))
                         if label and source is LabelSource.HUMAN], dtype=np.int64)
        if len(rows) > TEXT_SAMPLE:
            rows = np.sort(np.random.default_rng(0).choice(rows, TEXT_SAMPLE, replace=False))
        texts = read_logos(self.parts, [int(data.ids[row]) for row in rows], self.stop_point)
        matches = {int(row): vocabulary.match(texts.get(int(data.ids[row]), "")) for row in rows}
        named = [(match.label, data.labels[row]) for row, match in matches.items() if match is not None]
        precision = TextPrecision(sum(said == label for said, label in named), len(named))
        if len({data.labels[row] for row in rows}) < 2:  # no vote to weigh text against
            return TextEvidence(precision=precision)
        settings = self.parts.settings
        answers = sample_answers(data.ids, data.vectors, data.labels, data.sources, rows, settings.k,
                                 settings.machine_label_weight, data.photos)
        return tally(answers, matches, data.labels, settings.open_set_share, precision)


class StoreTexts(Derived[int]):
    """The text of every stored logo, read from its thumbnail in the background a chunk at a time and kept in the
    store (:mod:`pipeline.logo_texts`), new logos as they come: what the map finds logos by. Its value is how
    many logos the last run read; a run stopped midway keeps what it read."""

    name = "store texts"

    def __init__(self, parts: Parts) -> None:
        super().__init__()
        self.parts = parts

    def fingerprint(self) -> str:
        return self.parts.store.content_version()

    def make(self) -> int:
        read = 0
        while unread := self.parts.store.unread_ids(READ_CHUNK):
            read += len(read_logos(self.parts, unread, self.stop_point))
        return read


def read_logos(parts: Parts, logo_ids: Sequence[int], stop_point: Callable[[], None]) -> dict[int, str]:
    """What the thumbnails of ``logo_ids`` read: from the store where read before, else read now, a chunk of
    :data:`READ_CHUNK` at a time by the background reader (one core; ``stop_point`` between chunks), and kept in
    the store. A logo with no thumbnail is left out; one that cannot be decoded reads ""."""
    texts = parts.store.texts(logo_ids)
    unread = [int(logo_id) for logo_id in logo_ids if int(logo_id) not in texts]
    for start in range(0, len(unread), READ_CHUNK):
        stop_point()
        chunk = [(logo_id, parts.store.thumbnail(logo_id)) for logo_id in unread[start:start + READ_CHUNK]]
        images, blank = [], []
        for logo_id, webp in chunk:
            if webp is None:
                continue
            try:
                images.append((logo_id, Image.open(io.BytesIO(webp)).convert("RGB")))
            except (OSError, ValueError):  # a damaged thumbnail: nothing to read on it
                blank.append((logo_id, ""))
        texts_read = parts.background_reader.read([image for _, image in images])
        read = [(logo_id, text) for (logo_id, _), text in zip(images, texts_read, strict=True)] + blank
        parts.store.save_texts(read)
        texts.update(read)
    return texts


def tally(answers: Sequence[tuple[int, str | None, bool]], matches: dict[int, TextMatch | None],
          labels: Sequence[str | None], open_set_share: float, precision: TextPrecision) -> TextEvidence:
    """Count the sample's leave-one-out answers (:func:`pipeline.leave_one_out.sample_answers`) by right or
    wrong and by what their logo's text names, open-set answers weighed to ``open_set_share`` of the total.

    An open-set answer stands for a logo of a brand the store does not hold, whose name the vocabulary does not
    hold either: its text naming its own label counts as naming nothing.
    """
    answered = [(row, winner, is_open) for row, winner, is_open in answers if winner is not None]
    n_open = sum(is_open for _, _, is_open in answered)
    n_closed = len(answered) - n_open
    weight = {False: (1 - open_set_share) * len(answered) / max(n_closed, 1),
              True: open_set_share * len(answered) / max(n_open, 1)}
    counts = dict.fromkeys(("right", "right_agree", "right_disagree", "wrong", "wrong_agree", "wrong_disagree"), 0.0)
    for row, winner, is_open in answered:
        kind = "wrong" if is_open or winner != labels[row] else "right"
        match = matches.get(row)
        said = None if match is None or (is_open and match.label == labels[row]) else match.label
        counts[kind] += weight[is_open]
        if said is not None:
            counts[f"{kind}_agree" if said == winner else f"{kind}_disagree"] += weight[is_open]
    return TextEvidence(**counts, precision=precision)


@dataclass(frozen=True)
class TextSearch:
    """The stored logos whose text reads ``query`` (ids), and how many of the logos with a thumbnail were read."""

    query: str
    ids: list[int]
    read: int
    readable: int


def _covered(line: Box, box: Box) -> bool:
    """Whether at least half of ``line`` lies inside ``box``."""
    return line.overlap(box) >= 0.5 * max(line.area, 1e-9)


class Reading:
    """Read searched logos and let their text name what the vote leaves unknown."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.vocabulary = VocabularyResult(parts)
        self.evidence = TextEvidenceResult(parts, self.vocabulary)
        self.store_texts = StoreTexts(parts)

    def read_store(self) -> None:
        """Read the text of stored logos not read yet, in the background (unless reading is off:
        ``settings.read_text`` 0); never blocks a caller."""
        if self.parts.settings.read_text > 0 and self.store_texts.is_stale():
            self.store_texts.request()

    def find_text(self, query: str) -> TextSearch:
        """The stored logos whose text reads ``query`` (:meth:`pipeline.logo_texts.LogoTexts.find_text`), among
        those read so far; asks for the rest to be read."""
        self.read_store()
        read, readable = self.parts.store.text_progress()
        return TextSearch(query, self.parts.store.find_text(query), read, readable)

    def read(self, crops: Sequence[Image.Image], boxes: Sequence[Box] = (), lines: Sequence[TextLine] = (),
             proposals: Sequence[bool] = ()) -> list[str]:
        """The text on each crop, for the ``settings.read_text`` largest; "" for the rest.

        A search's cost must stay bounded whatever the photo: a shelf of fifty boxes reads its biggest logos,
        where the text is legible, and leaves the others unread. Where the photo's own lines (:meth:`lines`) inside
        a crop's box (``boxes``) already name a label, they are its text and the crop is not read again (0.03 s a
        crop); elsewhere the crop is read at its own resolution, which finds the smaller text. A proposal (a box
        the detector is unsure of: ``proposals``) takes the photo's lines only, never a reading of its own: a
        photo has dozens.
        """
        proposals = list(proposals) or [False] * len(crops)
        chosen = sorted((i for i in range(len(crops)) if not proposals[i]),
                        key=lambda i: -crops[i].width * crops[i].height)
        chosen = sorted(chosen[:self.parts.settings.read_text])
        texts = [""] * len(crops)
        if lines:
            vocabulary = self.vocabulary.refresh()
            for i in sorted({*chosen, *(n for n, proposal in enumerate(proposals) if proposal)}):
                inside = " ".join(line.text for line in lines if _covered(line.box, boxes[i]))
                if inside and vocabulary.match(inside) is not None:
                    texts[i] = inside
        unread = [i for i in chosen if not texts[i]]
        for i, text in zip(unread, self.parts.reader.read([crops[i] for i in unread]), strict=True):
            texts[i] = text
        return texts

    def lines(self, photo: Image.Image) -> list[TextLine]:
        """The lines of text on the whole photo (at most 640 px a side: about 0.15 s on 2 cores), when reading is
        on and the vocabulary holds a name for them to match; else none."""
        if self.parts.settings.read_text == 0 or not len(self.vocabulary.refresh()):
            return []
        return self.parts.reader.lines(photo)

    def text_regions(self, lines: Sequence[TextLine], detections: Sequence[Detection]) -> list[Detection]:
        """The photo's lines of text (:meth:`lines`) that name a label of the vocabulary where no box was found:
        proposed as logo boxes (``kind="text"``, the recogniser's score), named then like any other logo.

        A wordmark on a pack is a logo a detector trained on few brands misses (the Aquafina bottles' large
        AQUAFINA); its text names it. A line mostly inside a found box belongs to that box, and the boxes stay
        within ``settings.max_boxes``.
        """
        room = self.parts.settings.max_boxes - len(detections)
        if not lines or room <= 0:
            return []
        vocabulary = self.vocabulary.refresh()
        found: list[Detection] = []
        for line in lines:
            if len(found) >= room or vocabulary.match(line.text) is None:
                continue
            if not any(_covered(line.box, other.box) for other in [*detections, *found]):
                found.append(Detection(line.box, line.score, "text"))
        return found

    def text_evidence(self) -> TextEvidence:
        """What text is worth in this store: measured on its own logos in the background (asked for here when
        stale); until then, no evidence for the vote and the prior of :mod:`pipeline.reading` for a text name."""
        if self.evidence.is_stale():
            self.evidence.request()
        return self.evidence.current() or TextEvidence()

    def name(self, predictions: Sequence[Prediction], texts: Sequence[str],
             calibrated: Calibrator | None = None) -> list[Prediction]:
        """Each prediction with its logo's text heard; the vocabulary is rebuilt when labels change (milliseconds).

        With the store calibrated (``calibrated``, the thresholds people set included), text that names the
        vote's guess raises its probability and text that names another label lowers it
        (:func:`pipeline.text_evidence.hear`). Text that names a label with no stored logo may name a logo the
        vote leaves unknown, as may text that confirms an uncalibrated vote's guess
        (:func:`pipeline.reading.name_by_text`).
        """
        if not any(texts):
            return list(predictions)
        vocabulary = self.vocabulary.refresh()
        matches = [vocabulary.match(text) if text else None for text in texts]
        if not any(matches):
            return list(predictions)
        evidence, target = self.text_evidence(), self.parts.settings.target_precision
        thresholds = self.parts.store.thresholds()  # a label's threshold set by a person holds for text too
        named = []
        for prediction, match in zip(predictions, matches, strict=True):
            if calibrated is not None and match is not None:
                prediction = hear(prediction, match, evidence, calibrated.threshold)
                if match.label in vocabulary.pictured:  # the vote has heard it; a label with no logo may still name
                    named.append(prediction)
                    continue
            named.append(name_by_text(prediction, match, evidence.precision, target, thresholds, vocabulary.pictured))
        return named

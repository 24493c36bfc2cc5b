"""Reading: the text on searched logos, the store's vocabulary it is matched against, and what a text name is
worth in this store (:mod:`pipeline.reading`)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pipeline.derived import Derived
from pipeline.reading import TextPrecision, Vocabulary, name_by_text
from pipeline.types import LabelSource, Prediction
from pipeline.usecases.parts import Parts

TEXT_SAMPLE = 300  # human-labelled logos read to measure how often text names a logo right (about 10 s)
READ_CHUNK = 8  # thumbnails read per turn of the shared reader


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


class TextPrecisionResult(Derived[TextPrecision]):
    """How often the text of the store's own human-labelled logos (a seeded sample of :data:`TEXT_SAMPLE`, read
    from their thumbnails) names their label, among those whose text names any: what a text name is worth here.

    A logo's thumbnail never changes, so what it reads is kept by id: after a label change the sample is matched
    again (milliseconds), and only logos new to the sample are read.
    """

    name = "text precision"

    def __init__(self, parts: Parts, vocabulary: VocabularyResult) -> None:
        super().__init__()
        self.parts = parts
        self.vocabulary = vocabulary
        self._read: dict[int, str] = {}  # logo id -> the text of its thumbnail

    def fingerprint(self) -> str:
        return self.vocabulary.fingerprint()

    def make(self) -> TextPrecision:
        store = self.parts.store
        vocabulary = self.vocabulary.refresh()
        frame = store.label_frame()
        human = frame[(frame.source == LabelSource.HUMAN.value) & frame.label.notna()]
        if len(human) > TEXT_SAMPLE:
            human = human.iloc[np.sort(np.random.default_rng(0).choice(len(human), TEXT_SAMPLE, replace=False))]
        labels = dict(zip(human.id.tolist(), human.label.tolist(), strict=True))
        unread = [logo_id for logo_id in labels if logo_id not in self._read]
        for start in range(0, len(unread), READ_CHUNK):  # searches share the reader: they wait for one chunk at most
            self.stop_point()
            chunk = [(logo_id, store.thumbnail(logo_id)) for logo_id in unread[start:start + READ_CHUNK]]
            chunk = [(logo_id, Image.open(io.BytesIO(webp))) for logo_id, webp in chunk if webp is not None]
            texts = self.parts.reader.read([image for _, image in chunk])
            self._read.update((logo_id, text) for (logo_id, _), text in zip(chunk, texts, strict=True))
        right = named = 0
        for logo_id, label in labels.items():
            match = vocabulary.match(self._read.get(logo_id, ""))
            if match is not None:
                named += 1
                right += match.label == label
        return TextPrecision(right, named)


class Reading:
    """Read searched logos and let their text name what the vote leaves unknown."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.vocabulary = VocabularyResult(parts)
        self.precision = TextPrecisionResult(parts, self.vocabulary)

    def read(self, crops: Sequence[Image.Image]) -> list[str]:
        """The text on each crop, for the ``settings.read_text`` largest; "" for the rest.

        A search's cost must stay bounded whatever the photo: a shelf of fifty boxes reads its biggest logos,
        where the text is legible, and leaves the others unread.
        """
        chosen = sorted(range(len(crops)), key=lambda i: -crops[i].width * crops[i].height)
        chosen = sorted(chosen[:self.parts.settings.read_text])
        texts = [""] * len(crops)
        for i, text in zip(chosen, self.parts.reader.read([crops[i] for i in chosen]), strict=True):
            texts[i] = text
        return texts

    def text_precision(self) -> TextPrecision:
        """What a text name is worth in this store: measured on its own logos in the background (asked for here
        when stale), the prior of :mod:`pipeline.reading` until then."""
        if self.precision.is_stale():
            self.precision.request()
        return self.precision.current() or TextPrecision()

    def name(self, predictions: Sequence[Prediction], texts: Sequence[str]) -> list[Prediction]:
        """Each prediction with its logo's text heard (:func:`pipeline.reading.name_by_text`); the vocabulary is
        rebuilt when labels change (milliseconds)."""
        if not any(texts):
            return list(predictions)
        vocabulary = self.vocabulary.refresh()
        matches = [vocabulary.match(text) if text else None for text in texts]
        if not any(matches):
            return list(predictions)
        precision, target = self.text_precision(), self.parts.settings.target_precision
        thresholds = self.parts.store.thresholds()  # a label's threshold set by a person holds for text too
        return [name_by_text(p, m, precision, target, thresholds, vocabulary.pictured)
                for p, m in zip(predictions, matches, strict=True)]

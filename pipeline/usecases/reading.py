"""Reading: the text on searched logos, the store's vocabulary it is matched against, and what a text name is
worth in this store (:mod:`pipeline.reading`)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pipeline.derived import Derived
from pipeline.reading import TextMatch, TextPrecision, Vocabulary, name_by_text
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
    from their thumbnails) names their label, among those whose text names any: what a text name is worth here."""

    name = "text precision"

    def __init__(self, parts: Parts, vocabulary: VocabularyResult) -> None:
        super().__init__()
        self.parts = parts
        self.vocabulary = vocabulary

    def fingerprint(self) -> str:
        return self.vocabulary.fingerprint()

    def make(self) -> TextPrecision:
        store = self.parts.store
        vocabulary = self.vocabulary.refresh()
        frame = store.label_frame()
        human = frame[(frame.source == LabelSource.HUMAN.value) & frame.label.notna()]
        if len(human) > TEXT_SAMPLE:
            human = human.iloc[np.sort(np.random.default_rng(0).choice(len(human), TEXT_SAMPLE, replace=False))]
        ids, images = [], []
        for logo_id in human.id.tolist():
            webp = store.thumbnail(logo_id)
            if webp is not None:
                ids.append(logo_id)
                images.append(Image.open(io.BytesIO(webp)))
        labels = dict(zip(human.id.tolist(), human.label.tolist(), strict=True))
        texts = []  # a few at a time: searches share the reader, and wait for at most one chunk
        for start in range(0, len(images), READ_CHUNK):
            self.stop_point()
            texts += self.parts.reader.read(images[start:start + READ_CHUNK])
        right = named = 0
        for logo_id, text in zip(ids, texts, strict=True):
            match = vocabulary.match(text)
            if match is not None:
                named += 1
                right += match.label == labels[logo_id]
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

    def matches(self, texts: Sequence[str]) -> list[TextMatch | None]:
        """The vocabulary label each text names, if any (the vocabulary is rebuilt when labels change: ms)."""
        if not any(texts):
            return [None] * len(texts)
        vocabulary = self.vocabulary.refresh()
        return [vocabulary.match(text) if text else None for text in texts]

    def text_precision(self) -> TextPrecision:
        """What a text name is worth in this store: measured on its own logos in the background (asked for here
        when stale), the prior of :mod:`pipeline.reading` until then."""
        if self.precision.is_stale():
            self.precision.request()
        return self.precision.current() or TextPrecision()

    def name(self, predictions: Sequence[Prediction], texts: Sequence[str]) -> list[Prediction]:
        """Each prediction with its logo's text heard (:func:`pipeline.reading.name_by_text`)."""
        matches = self.matches(texts)
        if not any(matches):
            return list(predictions)
        precision, target = self.text_precision(), self.parts.settings.target_precision
        thresholds = self.parts.store.thresholds()  # a label's threshold set by a person holds for text too
        pictured = self.vocabulary.refresh().pictured
        return [name_by_text(p, m, precision, target, thresholds, pictured)
                for p, m in zip(predictions, matches, strict=True)]

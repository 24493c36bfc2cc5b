"""Labels: what people say a logo is, the confidence a label needs, and the history of every change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.errors import BadInputError, LogoNotFoundError, NotFoundError
from pipeline.label_log import LabelChange
from pipeline.labels import clean_label
from pipeline.types import LabelSource
from pipeline.usecases.calibration import Calibration
from pipeline.usecases.parts import Parts
from pipeline.vocabulary import VocabularyEntry, parse_vocabulary


class Labels:
    """Set, clear, undo and read labels; set per-label thresholds. Human labels always win."""

    def __init__(self, parts: Parts, calibration: Calibration) -> None:
        self.parts = parts
        self.calibration = calibration

    # -- writes --------------------------------------------------------------------------
    def set(self, ids: Sequence[int], label: str | None, source: LabelSource | str = LabelSource.HUMAN,
            who: str = "local") -> LabelChange:
        """Set or clear the label of stored logos; machine labels never replace human ones."""
        return self.parts.store.set_label(ids, label, source, who=who)

    def bulk(self, ids: Sequence[int], label: str | None, *, who: str = "local",
             session: str | None = None) -> LabelChange:
        """Give many logos one human label (or clear theirs), logged so ``session`` can :meth:`undo` it.

        Raises:
            BadInputError: no ids.
            LogoNotFoundError: an id the store does not hold (nothing is changed).
        """
        ids = sorted({int(i) for i in ids})
        if not ids:
            raise BadInputError("select at least one logo")
        missing = self.parts.missing_ids(ids)
        if missing:
            raise LogoNotFoundError(f"unknown logo id(s): {', '.join(map(str, missing[:10]))}")
        change = self.parts.store.set_label(ids, label, LabelSource.HUMAN, who=who, session=session)
        self.parts.signals.relabelled()
        return change

    def undo(self, session: str, who: str = "local") -> LabelChange | None:
        """Undo the last label change made in ``session`` (None if it has nothing left to undo)."""
        change = self.parts.store.undo_last(session, who=who)
        if change is not None:
            self.parts.signals.relabelled()
        return change

    def set_threshold(self, label: str, threshold: float | None) -> None:
        """Set (or with None remove) the confidence ``label`` needs to be given as an answer, by the vote or by
        the logo's text: any label the store knows, a vocabulary name with no logo yet included (1.0: text never
        names it on its own).

        Raises:
            NotFoundError: neither a logo nor the vocabulary carries ``label``.
        """
        label = clean_label(label) or ""
        if label not in {entry.label for entry in self.parts.store.vocabulary()}:
            raise NotFoundError(f"the store knows no label {label!r}: no logo carries it and the vocabulary lacks it")
        self.parts.store.set_threshold(label, threshold)

    def import_vocabulary(self, data: bytes | str) -> tuple[int, int]:
        """Add the labels and aliases of a vocabulary file (:mod:`pipeline.vocabulary`): a label can exist before
        any logo of it. All or nothing: a malformed line stores none of the file.

        Returns:
            ``(labels new to the vocabulary, labels the store knows now)``.

        Raises:
            BadInputError: the file is not a vocabulary; the message names the line.
        """
        added = self.parts.store.add_vocabulary(parse_vocabulary(data))
        return added, len(self.parts.store.vocabulary())

    # -- reads ---------------------------------------------------------------------------
    def thresholds(self) -> dict[str, dict[str, float]]:
        """``{"set": thresholds people set, "suggested": the calibration's per label, "default": its default}``."""
        calibrator = self.calibration.current()
        return {"set": self.parts.store.thresholds(),
                "suggested": dict(calibrator.thresholds) if calibrator else {},
                "default": calibrator.min_probability if calibrator else self.parts.settings.min_confidence}

    def history(self, logo_id: int | None = None, limit: int = 100,
                before: int | None = None) -> list[dict[str, object]]:
        """Label events, newest first: who changed which logo's label, from what to what, and when."""
        if logo_id is not None and self.parts.missing_ids([logo_id]):
            raise LogoNotFoundError(f"no logo with id {logo_id}")
        return self.parts.store.label_history(logo_id, limit=limit, before=before)

    def vocabulary(self) -> list[VocabularyEntry]:
        """Every label the store knows (the vocabulary's and those logos carry), with aliases and logo counts."""
        return self.parts.store.vocabulary()

    def in_use(self) -> list[str]:
        """Every label that some logo carries, sorted."""
        return sorted(self.parts.store.label_counts())

    def counts(self) -> dict[str, int]:
        """Logos per label."""
        return self.parts.store.label_counts()

    def current(self, ids: Sequence[int]) -> dict[int, str]:
        """The label each of ``ids`` carries now (logos without a label, or unknown ids, are left out)."""
        return {i: label for i, (label, _) in self.parts.store.labels(ids).items() if label}

    def of(self, logo_id: int) -> tuple[str | None, LabelSource | None]:
        """A stored logo's label and its source ``(None, None)`` when unlabelled or unknown."""
        return self.parts.store.labels([logo_id]).get(int(logo_id), (None, None))

    def frame(self) -> pd.DataFrame:
        """Every logo's id, label and source (columns ``id``, ``label``, ``source``)."""
        return self.parts.store.label_frame()

    def ids_with(self, label: str | None) -> np.ndarray:
        """Ids of the logos labelled ``label`` (none for an empty label)."""
        frame = self.parts.store.label_frame()
        return frame.id[frame.label == label].to_numpy() if label else np.zeros(0, np.int64)

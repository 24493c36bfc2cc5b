"""Review: people judge the machine's proposals many at a time; accepted ones become human labels."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.annotation import ReviewGroup, ReviewProgress, ReviewVerdict, apply_review, review_queue
from pipeline.annotation import progress as review_progress
from pipeline.errors import LogoNotFoundError
from pipeline.label_log import LabelChange
from pipeline.types import LabelSource
from pipeline.usecases.parts import Parts
from pipeline.usecases.search import Search


class Review:
    """The review queue of machine labels and the verdicts on it (:mod:`pipeline.annotation`)."""

    def __init__(self, parts: Parts, search: Search) -> None:
        self.parts = parts
        self.search = search

    def queue(self, *, ids: Sequence[int] | None = None, label: str | None = None,
              limit: int = 40) -> list[ReviewGroup]:
        """The next screen of proposals to judge (see :func:`pipeline.annotation.review_queue`)."""
        return review_queue(self.parts.store, self.search.propose, ids=ids, label=label, limit=limit)

    def apply(self, verdict: ReviewVerdict, proposals: dict[int, str], *, who: str = "local",
              session: str | None = None) -> list[LabelChange]:
        """Record a reviewer's verdicts (see :func:`pipeline.annotation.apply_review`) and recalibrate later.

        Raises:
            LogoNotFoundError: A judged logo the store does not hold (nothing is changed).
        """
        missing = self.parts.missing_ids([*verdict.accept, *verdict.reject, *verdict.relabel])
        if missing:
            raise LogoNotFoundError(f"unknown logo id(s): {', '.join(map(str, missing[:10]))}")
        changes = apply_review(self.parts.store, verdict, proposals, who=who, session=session)
        self.parts.signals.relabelled()
        return changes

    def proposed_labels(self) -> list[str]:
        """Labels that some logo carries as a machine proposal, sorted."""
        return sorted(label for label, sources in self.parts.store.label_counts_by_source().items()
                      if sources.get(LabelSource.MACHINE.value))

    def progress(self) -> ReviewProgress:
        """Machine labels waiting for review, and what people have done (for the queue's header)."""
        return review_progress(self.parts.store)

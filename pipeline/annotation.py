"""The review side of the annotation loop: what people should look at next, and their verdicts.

Machines propose labels (``import-photos`` stores each detected logo with its kNN
label as a ``machine`` label and the calibrated confidence); people confirm or fix
them here, many per screen. The queue groups proposals by label, least confident
first, because a screen of one proposed label is judged at a glance ("which of
these are not Lidl?") and the doubtful ones are where a person's minute counts.
Each proposal comes with the nearest logos people already gave that label, so the
reviewer compares against the label's real members, not a name.

The queue can also be opened on chosen logos (a cluster of unlabelled logos, or the
suspects of the map's cluster health): there, a logo without a machine label is
shown with the label its neighbours would give it now.

Verdicts (:func:`apply_review`) go through the store's label events: accepting makes
the proposal a ``human`` label, rejecting removes it and remembers "not this label"
for that logo, relabelling sets a human label. Human labels always win: a later
machine proposal never overwrites them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.errors import BadInputError
from pipeline.label_log import LabelChange
from pipeline.store import LogoStore
from pipeline.types import LabelSource, Prediction

NO_PROPOSAL = ""  # the group of logos nothing could be proposed for


@dataclass(frozen=True)
class ReviewItem:
    """One logo to judge: its proposed label, how sure the machine was, and the label's nearest human logos.

    Attributes:
        id: Store id of the logo.
        label: The proposed label (:data:`NO_PROPOSAL` when nothing could be proposed).
        confidence: Calibrated probability that the proposal is right (None when not known).
        stored: True when the proposal is a machine label in the store, False when computed for this screen.
        current: The logo's label now, whoever set it (differs from ``label`` for a suspect).
        references: Ids of the nearest logos people gave ``label``, nearest first.
        proposed_by: What proposed it: ``vote`` (the neighbours) or ``text`` (the logo's text named it).
    """

    id: int
    label: str
    confidence: float | None
    stored: bool
    current: str | None
    references: tuple[int, ...] = ()
    proposed_by: str = "vote"


@dataclass(frozen=True)
class ReviewGroup:
    """The proposals of one label on this screen, least confident first."""

    label: str
    items: tuple[ReviewItem, ...]


@dataclass(frozen=True)
class ReviewProgress:
    """Counts for the reviewer: machine labels waiting, and what people have done."""

    machine: int
    human: int
    rejected: int
    unlabelled: int


@dataclass(frozen=True)
class ReviewVerdict:
    """What a reviewer decided on one screen; any part may be empty."""

    accept: Sequence[int] = ()
    reject: Sequence[int] = ()
    relabel: Mapping[int, str] = field(default_factory=dict)


def progress(store: LogoStore) -> ReviewProgress:
    """The counts shown above the queue."""
    stats = store.stats()
    return ReviewProgress(machine=stats.machine_labelled, human=stats.human_labelled, rejected=store.rejection_count(),
                          unlabelled=stats.logos - stats.labelled)


def _references(store: LogoStore, items: list[tuple[int, str]], per_item: int,
                cap: int = 2000) -> dict[int, tuple[int, ...]]:
    """For each ``(logo, label)``, the ``per_item`` nearest logos with a human ``label`` (exact cosine)."""
    found: dict[int, tuple[int, ...]] = {}
    by_label: dict[str, list[int]] = {}
    for logo_id, label in items:
        by_label.setdefault(label, []).append(logo_id)
    for label, logo_ids in by_label.items():
        if not label:
            continue
        members = store.ids_with_label(label, LabelSource.HUMAN, limit=cap)
        if not members:
            continue
        sims = store.vectors(logo_ids) @ store.vectors(members).T
        for row, logo_id in enumerate(logo_ids):
            order = [members[c] for c in np.argsort(-sims[row], kind="stable") if members[c] != logo_id]
            found[logo_id] = tuple(order[:per_item])
    return found


def review_queue(store: LogoStore, propose: Callable[[int], Prediction], *, ids: Sequence[int] | None = None,
                 label: str | None = None, limit: int = 40, references: int = 3) -> list[ReviewGroup]:
    """The next screen of proposals to judge, grouped by proposed label.

    Args:
        store: The logo store.
        propose: The label the neighbours of a stored logo give it now (itself left out), used for chosen
            ``ids`` that carry no machine label.
        ids: Judge these logos (a cluster or suspects from the map) instead of the stored machine labels.
        label: Only proposals of this label.
        limit: Logos on the screen.
        references: Nearest human-labelled logos of the proposed label shown beside each logo.

    Returns:
        Groups ordered by their least confident proposal (the most doubtful group first); the logos of a
        group least confident first. Logos nothing could be proposed for come last, under :data:`NO_PROPOSAL`.
    """
    if limit < 1:
        raise BadInputError("a review screen shows at least one logo")
    if ids is None:
        rows = store.machine_labelled(label=label, limit=limit)
        chosen = [ReviewItem(i, lab, conf, True, lab, proposed_by=by or "vote") for i, lab, conf, by in rows]
    else:
        chosen = []
        for record in store.get(list(dict.fromkeys(int(i) for i in ids))[: max(limit, 1) * 5]):
            if record.label_source is LabelSource.MACHINE and record.label:
                item = ReviewItem(record.id, record.label, record.confidence, True, record.label,
                                  proposed_by=record.proposed_by or "vote")
            else:
                guess = propose(record.id)  # its best guess, given as a name or not: a person decides
                if guess.label is not None:  # named, by the vote or by its text
                    item = ReviewItem(record.id, guess.label, guess.confidence, False, record.label,
                                      proposed_by=guess.named_by)
                else:
                    item = ReviewItem(record.id, guess.guess or NO_PROPOSAL,
                                      guess.guess_probability if guess.guess else None, False, record.label)
            if label is None or item.label == label:
                chosen.append(item)
            if len(chosen) >= limit:
                break
    refs = _references(store, [(item.id, item.label) for item in chosen], references)
    groups: dict[str, list[ReviewItem]] = {}
    for item in chosen:
        groups.setdefault(item.label, []).append(replace(item, references=refs.get(item.id, ())))

    def doubt(item: ReviewItem) -> float:
        return -1.0 if item.confidence is None else item.confidence

    ordered = sorted(groups.items(), key=lambda kv: (kv[0] == NO_PROPOSAL, min(doubt(i) for i in kv[1]), kv[0]))
    return [ReviewGroup(name, tuple(sorted(items, key=lambda i: (doubt(i), i.id)))) for name, items in ordered]


def apply_review(store: LogoStore, verdict: ReviewVerdict, proposals: Mapping[int, str], *, who: str = "local",
                 session: str | None = None) -> list[LabelChange]:
    """Record a reviewer's verdicts: accepted proposals become human labels, rejected ones are removed and
    remembered as "not this label", relabelled logos get their new human label.

    Args:
        store: The logo store.
        verdict: Which logos were accepted, rejected and relabelled.
        proposals: The proposal each judged logo was shown with (what accepting means; what rejecting rejects
            when the logo carries no stored proposal).
        who: The reviewer (a token's name, or "local").
        session: The browser session (its changes are the ones its undo takes back).

    Raises:
        BadInputError: A logo in two verdicts, or accepted without a proposal.
    """
    accept, reject, relabel = ([int(i) for i in verdict.accept], [int(i) for i in verdict.reject],
                               {int(i): lab for i, lab in verdict.relabel.items()})
    judged = accept + reject + list(relabel)
    if len(judged) != len(set(judged)):
        raise BadInputError("a logo can be accepted, rejected or relabelled, not two of these at once")
    missing = [i for i in accept if not proposals.get(i)]
    if missing:
        raise BadInputError(f"logo(s) {missing[:5]} have no proposal to accept")
    changes = []
    action = uuid.uuid4().hex  # one undo takes the whole screen back
    by_label: dict[str, list[int]] = {}
    for logo_id in accept:
        by_label.setdefault(proposals[logo_id], []).append(logo_id)
    for label, logo_ids in sorted(by_label.items()):
        changes.append(store.set_label(logo_ids, label, LabelSource.HUMAN, who=who, session=session,
                                       action=action))
    if reject:
        changes.append(store.reject(reject, who=who, session=session, action=action,
                                    labels={i: proposals[i] for i in reject if proposals.get(i)}))
    by_new: dict[str, list[int]] = {}
    for logo_id, label in relabel.items():
        by_new.setdefault(label, []).append(logo_id)
    for label, logo_ids in sorted(by_new.items()):
        changes.append(store.set_label(logo_ids, label, LabelSource.HUMAN, who=who, session=session,
                                       action=action))
    return changes

"""How well a store names its own human-labelled logos: each searched among the others with itself left out, per
label and overall, with the label pairs it confuses most. Computed from the store's vectors alone
(:class:`pipeline.usecases.parts.StoreVectors`), by the background worker of :mod:`pipeline.usecases.insight`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BadInputError
from pipeline.vector_backends import angular_from_cosine
from pipeline.knn import VoteConfig, predict_label
from pipeline.types import LabelSource, Neighbour
from pipeline.usecases.parts import StoreVectors
from pipeline.util import chunked


@dataclass(frozen=True)
class LabelAccuracy:
    """Leave-one-out figures of one label's human-labelled logos."""

    label: str
    logos: int
    top1: float
    recall_at_k: float


@dataclass(frozen=True)
class StoreEvaluation:
    """How well the store names its own human-labelled logos, each searched with itself left out.

    ``to_json`` is the public shape of ``evaluate --store --json``.
    """

    top1: float
    recall_at_k: float
    k: int
    queries: int
    labels: tuple[LabelAccuracy, ...]  # worst first
    confused: tuple[tuple[str, str, int], ...]  # (true label, label given instead, times), most frequent first
    model: str


def evaluate_store(data: StoreVectors, *, machine_weight: float, k: int = 10, confused: int | None = 20,
                   max_queries: int | None = None) -> StoreEvaluation:
    """Leave-one-out kNN accuracy of the store on its human labels, per label and overall.

    Every human-labelled logo is searched exactly among all other logos (the ones labelled by a machine
    vote too, as they do in production), named by the production vote, and counted right when the vote
    gives its label (top-1) or when its label is among its ``k`` nearest logos (recall@k). Labels with
    a single human logo are skipped: left out, nothing of their label remains to find.

    With ``max_queries``, a seeded random sample of that many logos is searched (each still among all the
    others): the cost grows with queries x logos, and the background report of a big store must end.
    ``confused`` caps the (label, label given instead) pairs kept, most frequent first; None keeps every one.

    Raises:
        BadInputError: No label has two human-labelled logos.
    """
    all_ids, matrix, labels, sources = data.ids, data.vectors, data.labels, data.sources
    human = Counter(label for label, source in zip(labels, sources) if label and source is LabelSource.HUMAN)
    queries = [i for i, (label, source) in enumerate(zip(labels, sources))
               if label and source is LabelSource.HUMAN and human[label] >= 2]
    if not queries:
        raise BadInputError("no label has two logos labelled by people: nothing to evaluate")
    if max_queries is not None and len(queries) > max_queries:
        queries = sorted(np.random.default_rng(0).choice(queries, max_queries, replace=False).tolist())
    vote = VoteConfig(max_distance=2.0, min_confidence=0.0, machine_weight=machine_weight)
    k = max(1, min(k, len(all_ids) - 1))
    right: dict[str, list[int]] = defaultdict(list)
    found: dict[str, list[int]] = defaultdict(list)
    mistakes: Counter[tuple[str, str]] = Counter()
    for chunk in chunked(queries, max(1, (1 << 22) // len(all_ids))):
        chunk = list(chunk)
        cosines = matrix[chunk] @ matrix.T
        cosines[np.arange(len(chunk)), chunk] = -np.inf
        top = np.argsort(-cosines, axis=1)[:, :k]
        for row, query in enumerate(chunk):
            neighbours = [Neighbour(int(all_ids[c]), labels[c], sources[c],
                                    float(angular_from_cosine(cosines[row, c]))) for c in top[row]]
            truth = labels[query]
            given = predict_label(neighbours, vote).label
            right[truth].append(given == truth)
            found[truth].append(truth in {n.label for n in neighbours})
            if given is not None and given != truth:
                mistakes[(truth, given)] += 1
    per_label = sorted((LabelAccuracy(label, len(hits), float(np.mean(hits)), float(np.mean(found[label])))
                        for label, hits in right.items()), key=lambda a: (a.top1, a.recall_at_k, a.label))
    every = [hit for hits in right.values() for hit in hits]
    every_found = [hit for hits in found.values() for hit in hits]
    return StoreEvaluation(float(np.mean(every)), float(np.mean(every_found)), k, len(every), tuple(per_label),
                           tuple((t, g, n) for (t, g), n in mistakes.most_common(confused)),
                           data.model_id or "")

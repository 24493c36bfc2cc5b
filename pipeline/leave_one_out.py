"""The answers a store's calibration is fitted on: every human-labelled logo searched among the others, itself
and the rest of its photo left out, and once more with its whole label left out (an *open-set* answer that
can never be right); and the store's own traffic, from which the share of brands it does not hold is
estimated (:func:`open_set_share_of`). See :mod:`pipeline.calibration` for why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.errors import StoreError
from pipeline.vector_backends import angular_from_cosine
from pipeline.types import LabelSource, Neighbour
from pipeline.vote_features import FEATURES, vote_features

MIN_SAMPLES = 20  # leave-one-out answers a calibration needs at the least
_CHUNK_ENTRIES = 1 << 23  # query x gallery cosines per chunk: 32 MB of float32, ~150 MB with masks and sorting


@dataclass(frozen=True)
class LeaveOneOut:
    """What the store's own labels say about its vote, one row per answer that :func:`leave_one_out` got.

    Attributes:
        features: ``(n, len(FEATURES))`` features of :func:`vote_features`.
        correct: ``(n,)`` 1 where the winner is the query's human label, else 0.
        winners: The label each answer gave.
        open_set: ``(n,)`` True for answers searched with the query's whole label removed (never right).
        nearest_same: Distance from each human-labelled logo to its nearest other logo of the same label
            (logos that are alone in their label are left out), the input of
            :func:`pipeline.calibration.distance_limit`.
    """

    features: np.ndarray
    correct: np.ndarray
    winners: tuple[str, ...]
    open_set: np.ndarray
    nearest_same: np.ndarray

    def weights(self, open_set_share: float) -> np.ndarray:
        """Per-answer weights under which open-set answers make up ``open_set_share`` of the total.

        Leave-one-out gives about as many open-set answers as closed-set ones; the share of searched logos
        whose brand the store does not hold is a property of the deployment, not of the store, so it is a
        setting (``LOGOS_OPEN_SET_SHARE``) and the answers are reweighted to it.
        """
        if not 0.0 <= open_set_share < 1.0:
            raise ValueError(f"open_set_share must be in [0, 1), got {open_set_share}")
        n_open, n_closed = int(self.open_set.sum()), int((~self.open_set).sum())
        if n_open == 0 or n_closed == 0:
            return np.ones(len(self.open_set))
        closed = (1.0 - open_set_share) * len(self.open_set) / n_closed
        return np.where(self.open_set, open_set_share * len(self.open_set) / n_open, closed)


def _top_k(cosines: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and angular distances of the ``k`` largest cosines of each row, nearest first."""
    top = np.argpartition(cosines, cosines.shape[1] - k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(cosines, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return top, angular_from_cosine(np.take_along_axis(cosines, top, axis=1))


def leave_one_out(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
                  sources: Sequence[LabelSource | None], k: int, machine_weight: float,
                  photos: Sequence[str | None] | None = None) -> LeaveOneOut:
    """Search every human-labelled logo twice: among all other logos, and with its whole label removed.

    The first search (itself left out) is the closed-set answer: right when the winner is its label. The
    second is an open-set answer: the logo of a brand the store does not hold, which can never be right.
    Holding out every label in turn, rather than a chosen few, gives one open-set answer per logo, with
    no seed to pick and the whole gallery still searched by the closed-set answers.

    A logo is searched without the other logos of its photo too (``photos``): leave one *photo* out. A new
    photo brings its logos to a store that holds none from it, while a shelf photo's logos are near copies
    of one another (three bottles of one brand, the same print): left in, each finds its sibling at a
    distance that no new photo meets, and the answers and the distance limit come out surer than new
    photos warrant. In real-drinks' train split, 208 of 1,006 logos had their nearest same-label logo in
    their own photo; leaving photos out moved the distance limit from 0.248 to 0.260.

    Only human labels are truth: machine-labelled logos vote but are never queries. The search is exact
    (cosine in numpy, in chunks of queries so that 50k x 256 stays within a few hundred MB). Answers without
    any labelled neighbour are left out: they are unknown whatever the calibrator says.

    Args:
        ids: ``(n,)`` logo ids.
        vectors: ``(n, dim)`` L2-normalised embeddings.
        labels: Label of each logo, None when unlabelled.
        sources: Who set each label.
        k: Neighbours per query, as the service searches.
        machine_weight: Weight of a machine label in the vote.
        photos: The photo each logo was cut from (its image hash), None where unknown; None: every logo
            its own photo.

    Raises:
        StoreError: Fewer than ``MIN_SAMPLES`` human-labelled logos, or fewer than two human labels.
    """
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    photos = [None] * len(ids) if photos is None else list(photos)
    if not len(ids) == len(vectors) == len(labels) == len(sources) == len(photos):
        raise ValueError("ids, vectors, labels, sources and photos must have one entry per logo")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    human = np.array([bool(label) and source is LabelSource.HUMAN for label, source in zip(labels, sources)],
                     dtype=bool)
    human_labels = {labels[i] for i in np.flatnonzero(human)}
    if human.sum() < MIN_SAMPLES or len(human_labels) < 2:
        raise StoreError(f"need at least {MIN_SAMPLES} human-labelled logos of 2+ labels to calibrate; "
                         f"the store has {int(human.sum())} of {len(human_labels)} label(s)")

    codes = _label_codes(labels)
    photo_codes = _photo_codes(photos)
    answers: dict[bool, list[tuple[np.ndarray, int, str]]] = {False: [], True: []}  # by open set
    nearest_same: list[float] = []
    for query, neighbours, is_open, same_distance in _searches(ids, vectors, labels, sources,
                                                               np.flatnonzero(human), photo_codes, k, codes):
        if same_distance is not None:
            nearest_same.append(same_distance)
        winner, features = vote_features(neighbours, machine_weight)
        if winner is not None:
            answers[is_open].append((features, int(not is_open and winner == labels[query]), winner))

    every = answers[False] + answers[True]  # closed-set answers first, whatever the chunk size
    return LeaveOneOut(
        features=np.array([features for features, _, _ in every], dtype=np.float64).reshape(-1, len(FEATURES)),
        correct=np.array([right for _, right, _ in every], dtype=np.int64),
        winners=tuple(winner for _, _, winner in every),
        open_set=np.repeat([False, True], [len(answers[False]), len(answers[True])]),
        nearest_same=np.array(nearest_same, dtype=np.float64),
    )


def sample_answers(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
                   sources: Sequence[LabelSource | None], queries: np.ndarray, k: int, machine_weight: float,
                   photos: Sequence[str | None] | None = None) -> list[tuple[int, str | None, bool]]:
    """The leave-one-out answers of some human-labelled logos, as :func:`leave_one_out` gets them: for each row
    of ``queries``, ``(row, winner, False)`` searched among the others (its photo left out) and
    ``(row, winner, True)`` with its whole label left out too; ``winner`` is None when no neighbour is labelled.

    For what is measured on a sample of the store's logos, each answer known by its logo (the text read on it:
    :class:`pipeline.usecases.reading.TextEvidenceResult`).
    """
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    photos = [None] * len(ids) if photos is None else list(photos)
    codes = _label_codes(labels)
    return [(query, vote_features(neighbours, machine_weight)[0], is_open) for query, neighbours, is_open, _ in
            _searches(ids, vectors, labels, sources, np.asarray(queries, dtype=np.int64), _photo_codes(photos), k,
                      codes)]


def _label_codes(labels: Sequence[str | None]) -> np.ndarray:
    """One integer per label; -1 for an unlabelled logo."""
    codes_of = {label: code for code, label in enumerate(sorted({label for label in labels if label}))}
    return np.array([codes_of[label] if label else -1 for label in labels], dtype=np.int64)


def _photo_codes(photos: Sequence[str | None]) -> np.ndarray:
    """One integer per photo; a logo of unknown photo is a photo of its own (negative codes never match)."""
    codes_of = {photo: code for code, photo in enumerate(sorted({p for p in photos if p is not None}))}
    return np.array([codes_of[p] if p is not None else -1 - i for i, p in enumerate(photos)], dtype=np.int64)


def _searches(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
              sources: Sequence[LabelSource | None], queries: np.ndarray, photo_codes: np.ndarray, k: int,
              codes: np.ndarray | None = None) -> Iterator[tuple[int, list[Neighbour], bool, float | None]]:
    """Exact searches of the logos ``queries`` (row numbers) among all others, each without its own photo:
    ``(query, neighbours, is_open, distance to its nearest same-label logo)``.

    With ``codes`` (label codes, -1 unlabelled) each query is searched a second time with its whole label
    removed (``is_open``), and its first answer carries the distance to its nearest other logo of its label
    (None when it has none, and on every other answer). Cosines in numpy, in chunks of queries, so that
    50k x 256 stays within a few hundred MB.
    """
    chunk = max(1, _CHUNK_ENTRIES // len(ids))
    for start in range(0, len(queries), chunk):
        batch = queries[start:start + chunk]
        cosines = vectors[batch] @ vectors.T
        cosines[photo_codes[None, :] == photo_codes[batch][:, None]] = -np.inf  # itself and its photo left out
        nearest = np.full(len(batch), -np.inf)
        if codes is not None:
            same = codes[None, :] == codes[batch][:, None]
            nearest = np.where(same, cosines, -np.inf).max(axis=1)
        for is_open in (False, True) if codes is not None else (False,):
            if is_open:
                cosines[same] = -np.inf  # the query's whole label is gone from the gallery
            columns, distances = _top_k(cosines, min(k, len(ids) - 1))
            searched = np.isfinite(np.take_along_axis(cosines, columns, axis=1))  # not a removed logo
            for row, query in enumerate(batch):
                kept = searched[row]
                neighbours = [Neighbour(int(ids[c]), labels[c], sources[c], float(d))
                              for c, d in zip(columns[row][kept], distances[row][kept])]
                same_distance = float(angular_from_cosine(nearest[row])) if np.isfinite(nearest[row]) else None
                yield int(query), neighbours, is_open, None if is_open else same_distance


def traffic_answers(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
                    sources: Sequence[LabelSource | None], k: int, machine_weight: float,
                    photos: Sequence[str | None] | None = None, max_queries: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """Features of the answers the store gives its own logos that no person labelled: the logos of photos it
    imported, each searched among the others (its photo left out) and voted on as a search would.

    These are the store's traffic: the logos it is actually asked to name. Their mix of known and unknown
    brands is what :func:`open_set_share_of` estimates. At most ``max_queries`` of them (a seeded sample), one
    row each.
    """
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    photos = [None] * len(ids) if photos is None else list(photos)
    queries = np.array([n for n, source in enumerate(sources) if source is not LabelSource.HUMAN], dtype=np.int64)
    if len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(queries, max_queries, replace=False))
    # a logo with no labelled neighbour keeps its answer too (nearest at NO_NEIGHBOUR): surely an unknown brand
    return np.array([vote_features(neighbours, machine_weight)[1] for _, neighbours, _, _ in
                     _searches(ids, vectors, labels, sources, queries, _photo_codes(photos), k)],
                    dtype=np.float64).reshape(-1, len(FEATURES))


def open_set_share_of(traffic: np.ndarray, data: LeaveOneOut, iterations: int = 200) -> float:
    """The share of ``traffic`` answers that are of brands the store does not hold, estimated from the answers
    alone (Saerens, Latinne & Decaestecker, 2002: EM on the class prior of a probabilistic classifier).

    A logistic model tells the store's open-set leave-one-out answers from its closed-set ones, with both
    weighed equally (its prior: one half). EM then finds the open-set share under which the model's
    posteriors over the traffic average to that share. The model sees only the vote's features, so brands
    the store holds but that look unlike their stored logos count as open set: an estimate that errs towards
    "unknown".

    Example:
        >>> rng = np.random.default_rng(0)
        >>> closed, open_ = rng.normal(0.2, 0.1, (400, 2)), rng.normal(0.8, 0.1, (400, 2))
        >>> data = LeaveOneOut(np.r_[closed, open_], np.r_[np.ones(400), np.zeros(400)].astype(int),
        ...                    ("a",) * 800, np.r_[np.zeros(400), np.ones(400)].astype(bool), np.zeros(0))
        >>> traffic = np.r_[rng.normal(0.2, 0.1, (90, 2)), rng.normal(0.8, 0.1, (10, 2))]
        >>> 0.05 < open_set_share_of(traffic, data) < 0.15  # 10 of the 100 answers are of unknown brands
        True
    """
    scaler = StandardScaler().fit(data.features)
    model = LogisticRegression(class_weight="balanced").fit(scaler.transform(data.features), data.open_set)
    p_open = np.clip(model.predict_proba(scaler.transform(np.asarray(traffic, dtype=np.float64)))[:, 1],
                     1e-9, 1 - 1e-9)
    odds = p_open / (1 - p_open)  # P(open) / P(closed) at even priors
    share = 0.5
    for _ in range(iterations):
        ratio = share / (1 - share) * odds
        new = float(np.mean(ratio / (1 + ratio)))
        if abs(new - share) < 1e-7:
            break
        share = min(max(new, 1e-4), 1 - 1e-4)
    return share

"""Turning the kNN vote into the probability that its label is right, and saying *unknown* for logos not in the store.

Why: the vote share of :mod:`pipeline.knn` is not a probability. It depends on
how many logos a brand has (with four logos per brand and ten voters it can stay
near 0.5 even for a perfect match), and no distance ever rejects a logo that the
store has never seen. Here the store
calibrates itself on its own human labels:

* **Leave-one-out** (:func:`leave_one_out`): every human-labelled logo is
  searched among the other logos, itself and the rest of its photo left out; the
  answer is right when the winner is its label. Each logo is also searched with
  its whole label removed from the gallery: these *open-set* answers can never
  be right, and without them the calibrator would never see a logo from outside
  the index.
* **Calibrator**: logistic regression on a few standardised features of the
  vote (:func:`vote_features`). Chosen over isotonic regression on one score
  because the features carry complementary evidence (how close the label is,
  how clear of the runner-up, how much of the brand lies nearby); over ``CalibratedClassifierCV`` because a plain
  logistic model *is* a calibrated probability model and needs no second layer.
  Its few coefficients are stored as plain JSON (no pickle, safe to load) and
  evaluated with numpy alone at query time.
* **Open set**: a query is unknown when it is farther from the label it would
  get than labelled logos normally sit from their nearest same-label neighbour
  (:func:`distance_limit`).
* **Thresholds**: as Robotoff does, one probability threshold per label where
  that label has enough leave-one-out answers (:func:`suggest_thresholds`), a
  global one elsewhere: the lowest at which the answers given are right the
  target share of the time, as counted (:func:`precision_threshold`) or as
  their calibrated probabilities expect (:func:`expected_precision_threshold`),
  and never above the target itself.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.errors import StoreError
from pipeline.index import angular_from_cosine
from pipeline.knn import VoteConfig, predict_label
from pipeline.types import LabelSource, Neighbour, Prediction
from pipeline.util import atomic_write_json

log = logging.getLogger(__name__)

FORMAT = 1
MIN_SAMPLES = 20
MIN_TRAFFIC = 100  # answers to its own unlabelled logos a store needs before it estimates its open-set share
MAX_OPEN_SET_SHARE = 0.99  # an estimate of all open set still leaves the closed-set answers some weight
MAX_ECE = 0.05  # a calibration this close to its answers may set the threshold from its own probabilities
_Z = 1.645  # one-sided 95 % normal quantile
NO_NEIGHBOUR = 2.0  # the largest angular distance: "no such neighbour"
# Names of the features of :func:`vote_features`, in order; stored with a calibrator so that one fitted on
# another feature set is never used.
FEATURES = ("nearest_same", "margin")
NEAREST_SAME, MARGIN = range(len(FEATURES))
_CHUNK_ENTRIES = 1 << 23  # query x gallery cosines per chunk: 32 MB of float32, ~150 MB with masks and sorting


def _vote(neighbours: Sequence[Neighbour], machine_weight: float) -> tuple[Prediction, np.ndarray]:
    """The plain vote (nothing rejected) and the features of :func:`vote_features`."""
    features = np.array([NO_NEIGHBOUR, 0.0])
    vote = predict_label(neighbours, VoteConfig(max_distance=math.inf, min_confidence=0.0,
                                                machine_weight=machine_weight))
    if vote.label is None:
        return vote, features
    voters = [n for n in neighbours if n.label]
    same = [n.distance for n in voters if n.label == vote.label]
    other = [n.distance for n in voters if n.label != vote.label]
    features[NEAREST_SAME] = min(same)
    features[MARGIN] = min(other, default=NO_NEIGHBOUR) - features[NEAREST_SAME]
    return vote, features


def vote_features(neighbours: Sequence[Neighbour], machine_weight: float) -> tuple[str | None, np.ndarray]:
    """The kNN winner of a query and the features that say how sure the vote is.

    The winner is the distance-weighted vote of :func:`pipeline.knn.predict_label`, with nothing rejected.
    The features (float64, in the order of :data:`FEATURES`):

    * ``nearest_same``: angular distance to the nearest neighbour carrying the winning label (2.0 when none);
    * ``margin``: distance to the nearest neighbour of any other label (2.0 when none) minus ``nearest_same``:
      how clearly the winner beats the runner-up.

    Features that count logos (the vote share, voters agreeing / k, logos of the winner, the share of the
    winner's logos among the neighbours) are left out on purpose: they describe the store as much as the
    query, and do not carry over to new photos. In leave-one-out the query's own label holds one logo less
    than it will for a new photo: on synthetic stores of 5 logos per label, adding the vote share raised
    the calibration error on new photos from 0.07-0.09 to 0.15-0.22. And a real photo often finds one of
    its brand's stored logos (the one printed like it) and not the others: ``coverage`` (the winner's logos
    among the neighbours / the most that could be) was 1.0 for nearly every right leave-one-out answer of
    the demo store, so the real Coca-Cola can of the app's examples, 0.16 from a Coca-Cola logo with the
    runner-up 0.16 farther, got P = 0.49 for finding 1 of its brand's 4 logos (0.97 without it, at the same
    leave-one-out ECE, 0.013).
    The nearest distance to another label is not a feature of its own: it is ``nearest_same + margin``.

    Args:
        neighbours: The query's nearest logos, labelled or not, any order.
        machine_weight: Weight of a machine label relative to a human one in the vote.

    Returns:
        ``(winner, features)``; ``winner`` is None when no neighbour is labelled (its probability is then 0).

    Example:
        >>> from pipeline.types import Neighbour, LabelSource
        >>> near = [Neighbour(1, "acme", LabelSource.HUMAN, 0.2), Neighbour(2, "zeta", LabelSource.HUMAN, 0.6)]
        >>> winner, features = vote_features(near, machine_weight=0.5)
        >>> winner, features.round(2).tolist()
        ('acme', [0.2, 0.4])
    """
    vote, features = _vote(neighbours, machine_weight)
    return vote.label, features


@dataclass(frozen=True)
class LeaveOneOut:
    """What the store's own labels say about its vote, one row per answer that :func:`leave_one_out` got.

    Attributes:
        features: ``(n, len(FEATURES))`` features of :func:`vote_features`.
        correct: ``(n,)`` 1 where the winner is the query's human label, else 0.
        winners: The label each answer gave.
        open_set: ``(n,)`` True for answers searched with the query's whole label removed (never right).
        nearest_same: Distance from each human-labelled logo to its nearest other logo of the same label
            (logos that are alone in their label are left out), the input of :func:`distance_limit`.
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

    codes_of = {label: code for code, label in enumerate(sorted({label for label in labels if label}))}
    codes = np.array([codes_of[label] if label else -1 for label in labels], dtype=np.int64)
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


def distance_limit(nearest_same: np.ndarray, quantile: float = 0.99) -> float:
    """The open-set rule: farther than this from its label, a query is unknown.

    Args:
        nearest_same: Distance from each labelled logo to its nearest same-label logo (leave-one-out).
        quantile: Share of labelled logos that sit within the limit of their nearest same-label logo.

    Returns:
        The ``quantile`` of ``nearest_same``; 2.0 (rejects nothing) when no label has two logos.
    """
    nearest_same = np.asarray(nearest_same, dtype=np.float64)
    if nearest_same.size == 0:
        return NO_NEIGHBOUR
    return float(min(np.quantile(nearest_same, quantile), NO_NEIGHBOUR))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


@dataclass(frozen=True)
class Calibrator:
    """Features of a vote -> probability that its label is right, for one embedding model.

    Attributes:
        model_id: Embedding model whose distances it was fitted on; another model's are never calibrated by it.
        k: Neighbours per query it was fitted for.
        machine_weight: Weight of machine labels in the vote it was fitted for.
        mean: Per-feature mean used to standardise the features.
        scale: Per-feature standard deviation used to standardise the features.
        coef: Logistic-regression coefficients on the standardised features.
        intercept: Logistic-regression intercept.
        n_samples: Leave-one-out answers it was fitted on.
        max_distance: A query farther than this from its label is unknown (:func:`distance_limit`).
        min_probability: Probability a label needs when it has no own threshold.
        thresholds: Per-label probability needed, overriding ``min_probability``.
        stats: Fit-time numbers (log-loss, Brier score, ECE, counts, time) for reports.
        labels_version: The store's labels when it was fitted (see ``LogoStore.labels_version``), to tell
            when a new fit is due.
    """

    model_id: str
    k: int
    machine_weight: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    n_samples: int
    max_distance: float = NO_NEIGHBOUR
    min_probability: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    stats: Mapping[str, float] = field(default_factory=dict)
    labels_version: str = ""

    @classmethod
    def fit(cls, features: np.ndarray, correct: np.ndarray, *, model_id: str, k: int, machine_weight: float,
            max_distance: float = NO_NEIGHBOUR, weights: np.ndarray | None = None) -> Calibrator:
        """Fit logistic regression (L2, C=1) on standardised features.

        Args:
            features: ``(n, len(FEATURES))`` features of :func:`vote_features`.
            correct: ``(n,)`` 1 where the answer was right, else 0.
            weights: ``(n,)`` weight of each answer (:meth:`LeaveOneOut.weights`); all 1 when None.
            model_id: Embedding model the features come from.
            k: Neighbours per query the features were computed with.
            machine_weight: Weight of machine labels in the vote.
            max_distance: The open-set limit to store with it.

        Raises:
            StoreError: Fewer than ``MIN_SAMPLES`` answers, or all right or all wrong.
        """
        features = np.asarray(features, dtype=np.float64)
        correct = np.asarray(correct, dtype=np.int64)
        if features.ndim != 2 or features.shape[1] != len(FEATURES) or len(features) != len(correct):
            raise ValueError(f"features must be (n, {len(FEATURES)}) with one correct flag per row")
        n_right = int(correct.sum())
        if len(correct) < MIN_SAMPLES or n_right in (0, len(correct)):
            raise StoreError(f"need at least {MIN_SAMPLES} leave-one-out answers, some right and some wrong, to "
                             f"calibrate; got {len(correct)} with {n_right} right (label more logos, of 2+ labels)")
        weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
        scaler = StandardScaler().fit(features)
        model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(features), correct,
                                                              sample_weight=weights)
        calibrator = cls(model_id=model_id, k=k, machine_weight=machine_weight,
                         mean=tuple(scaler.mean_.tolist()), scale=tuple(scaler.scale_.tolist()),
                         coef=tuple(model.coef_[0].tolist()), intercept=float(model.intercept_[0]),
                         n_samples=len(correct), max_distance=max_distance)
        probs = calibrator.probabilities(features)
        clipped = np.clip(probs, 1e-7, 1 - 1e-7)
        stats = {
            "fitted_at": time.time(),
            "right": n_right,
            "wrong": len(correct) - n_right,
            "log_loss": float(-np.average(correct * np.log(clipped) + (1 - correct) * np.log(1 - clipped),
                                          weights=weights)),
            "brier": float(np.average((probs - correct) ** 2, weights=weights)),
            "ece": expected_calibration_error(probs, correct, weights=weights),
        }
        return replace(calibrator, stats=stats)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Probability that each answer is right, in [0, 1]; 0 where no neighbour was labelled.

        Args:
            features: ``(n, len(FEATURES))`` features of :func:`vote_features`.
        """
        features = np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURES))
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale) @ np.asarray(self.coef) + self.intercept
        return np.where(features[:, NEAREST_SAME] < NO_NEIGHBOUR, _sigmoid(z), 0.0)

    def probability(self, features: np.ndarray) -> float:
        """Probability that one answer is right (see :meth:`probabilities`)."""
        return float(self.probabilities(features)[0])

    def predict(self, neighbours: Sequence[Neighbour]) -> Prediction:
        """The calibrated answer for a query: like :func:`pipeline.knn.predict_label`, confidence = P(right).

        Unknown (``label=None``, confidence 0) when no neighbour is labelled or the winner's nearest logo is
        farther than ``max_distance``; unknown with its probability when below the label's threshold.
        ``scores`` keeps the vote shares; ``guess`` the winner with its probability, whether given or not.

        Args:
            neighbours: The query's ``k`` nearest logos, labelled or not.
        """
        vote, features = _vote(neighbours, self.machine_weight)
        if vote.label is None:
            return Prediction(None, 0.0)
        probability = self.probability(features)
        if features[NEAREST_SAME] > self.max_distance:
            return Prediction(None, 0.0, guess=vote.label, guess_probability=probability)
        if probability < self.thresholds.get(vote.label, self.min_probability):
            return Prediction(None, probability, vote.scores, vote.label, probability)
        return Prediction(vote.label, probability, vote.scores, vote.label, probability)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: numbers and names only, safe to load."""
        return {"format": FORMAT, "features": list(FEATURES), **asdict(self),
                "mean": list(self.mean), "scale": list(self.scale), "coef": list(self.coef)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Calibrator:
        """Read :meth:`to_json`'s output.

        Raises:
            StoreError: Another format or feature set, or a malformed value.
        """
        if value.get("format") != FORMAT or tuple(value.get("features", ())) != FEATURES:
            raise StoreError(f"calibration of format {value.get('format')!r} with features {value.get('features')!r}"
                             f" cannot be used; calibrate again")
        try:
            return cls(model_id=str(value["model_id"]), k=int(value["k"]),
                       machine_weight=float(value["machine_weight"]),
                       mean=tuple(float(v) for v in value["mean"]), scale=tuple(float(v) for v in value["scale"]),
                       coef=tuple(float(v) for v in value["coef"]), intercept=float(value["intercept"]),
                       n_samples=int(value["n_samples"]), max_distance=float(value["max_distance"]),
                       min_probability=float(value["min_probability"]),
                       thresholds={str(label): float(t) for label, t in value["thresholds"].items()},
                       stats={str(key): float(v) for key, v in value["stats"].items()},
                       labels_version=str(value.get("labels_version", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"malformed calibration ({exc!r}); calibrate again") from None

    def save(self, path: Path) -> None:
        """Write the calibrator atomically (readers see the old file or the new one)."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path, model_id: str) -> Calibrator | None:
        """The calibrator saved at ``path`` for ``model_id``; None (and a warning) when fitted for another model.

        Raises:
            StoreError: The file is not a calibrator this code can use.
        """
        try:
            value = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"calibration file {path} is not JSON ({exc}); calibrate again") from None
        calibrator = cls.from_json(value)
        if calibrator.model_id != model_id:
            log.warning("ignoring the calibration in %s: fitted for model %s, not %s", path, calibrator.model_id,
                        model_id)
            return None
        return calibrator


def precision_threshold(probabilities: np.ndarray, correct: np.ndarray, target_precision: float,
                        weights: np.ndarray | None = None, z: float = _Z) -> float | None:
    """A probability threshold as low as the answers allow whose answers are right ``target_precision`` of the
    time, with 95 % confidence; None when no threshold gets there.

    The precision of the answers at or above each threshold (counted by ``weights``) is judged by its Wilson
    score lower bound (one-sided 95 %) over the number of those answers, not by the point estimate: taking
    the lowest threshold where a noisy estimate touches the target picks the threshold where the noise was
    kindest, and a small store's threshold then falls short on new photos. With many answers the bound
    meets the estimate; with few it asks for a margin (20 answers all right bound the precision at 0.88, 60 at
    0.957). ``z=0`` judges by the point estimate instead.

    Every threshold between the lowest answer that keeps the precision and the next answer down gives the
    same answers. When the target itself lies in that gap, it is the threshold: a calibrated probability at
    the target is right that often, and no answer of the store says otherwise. Without this, a store whose
    answers all sit far from one another (right ones near 1, open-set ones near 0: big brands, few of them)
    got the probability of its farthest right answer as threshold, 0.98-0.99 on real photos, and turned
    away new logos at 0.98.

    Example:
        >>> right = np.r_[np.full(40, 0.99), 0.2]  # 40 answers at 0.99, all right; then a wrong one at 0.2
        >>> precision_threshold(right, np.r_[np.ones(40), 0], 0.9)
        0.9
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    sorted_probs = probabilities[order]
    precision = np.cumsum(correct[order] * weights[order]) / np.cumsum(weights[order])
    lower = wilson_lower_bound(precision, np.arange(1, len(order) + 1), z)
    last_of_tie = np.append(sorted_probs[1:] != sorted_probs[:-1], True)  # a threshold takes all equal probs
    good = np.flatnonzero(last_of_tie & (lower >= target_precision))
    if not good.size:
        return None
    lowest_kept = float(sorted_probs[good[-1]])
    next_down = float(sorted_probs[good[-1] + 1]) if good[-1] + 1 < len(sorted_probs) else -math.inf
    return float(target_precision) if next_down < target_precision <= lowest_kept else lowest_kept


def expected_precision_threshold(probabilities: np.ndarray, target_precision: float,
                                 weights: np.ndarray | None = None) -> float | None:
    """The lowest probability threshold at which the answers given are expected to be right
    ``target_precision`` of the time, judged by their calibrated probabilities; None when no answer reaches it.

    Answers given at a threshold t are right, on average, as often as the mean probability of the answers
    at or above t: when the probabilities are calibrated, that mean is the precision the store's answers
    get, without the noise of counting right and wrong ones (which :func:`precision_threshold` must bound,
    and which lifts a small store's threshold towards 1). It is never above ``target_precision`` itself:
    every answer there is at least that likely.

    Example:
        >>> expected_precision_threshold(np.r_[np.full(9, 0.99), 0.6, 0.1], 0.95)  # (9 x 0.99 + 0.6) / 10
        0.6
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    weights = np.ones(len(probabilities)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    sorted_probs = probabilities[order]
    expected = np.cumsum(sorted_probs * weights[order]) / np.maximum(np.cumsum(weights[order]), 1e-12)
    last_of_tie = np.append(sorted_probs[1:] != sorted_probs[:-1], True)
    good = np.flatnonzero(last_of_tie & (expected >= target_precision))
    return float(sorted_probs[good[-1]]) if good.size else None


def wilson_lower_bound(share: np.ndarray, count: np.ndarray, z: float = _Z) -> np.ndarray:
    """Wilson score lower bound of a proportion ``share`` observed over ``count`` trials (one-sided, ``z``)."""
    share, count = np.asarray(share, dtype=np.float64), np.asarray(count, dtype=np.float64)
    z2 = z * z
    centre = share + z2 / (2 * count)
    spread = z * np.sqrt(np.clip(share * (1 - share), 0, None) / count + z2 / (4 * count * count))
    return (centre - spread) / (1 + z2 / count)


def suggest_thresholds(probabilities: np.ndarray, correct: np.ndarray, winners: Sequence[str],
                       target_precision: float = 0.95, min_samples: int = 10,
                       weights: np.ndarray | None = None) -> dict[str, float]:
    """Per-label probability thresholds, as Robotoff keeps them.

    For each label given as an answer at least ``min_samples`` times, the lowest threshold at which its
    answers are right at least ``target_precision`` of the time. Labels with fewer answers, or that never
    reach the precision, are left out: the global default applies to them.

    Args:
        probabilities: Calibrated probability of each leave-one-out answer.
        correct: 1 where that answer was right.
        winners: The label each answer gave.
        target_precision: Share of a label's given answers that must be right.
        min_samples: Answers a label needs to get its own threshold.
        weights: Weight of each answer in the precision (all 1 when None).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    winners_array = np.asarray(winners, dtype=object)
    thresholds = {}
    for label, count in Counter(winners).items():
        if count < min_samples:
            continue
        given = winners_array == label
        threshold = precision_threshold(probabilities[given], correct[given], target_precision, weights[given])
        if threshold is not None:
            thresholds[label] = threshold
    return thresholds


def reliability_curve(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10,
                      weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, share right, and count (summed weight), of each non-empty equal-width bin.

    A calibrated model has share right == mean probability in every bin (the diagonal of a reliability plot).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    weights = np.ones(len(correct)) if weights is None else np.asarray(weights, dtype=np.float64)
    which = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, weights=weights, minlength=bins)
    filled = counts > 0
    mean_prob = np.bincount(which, weights=probabilities * weights, minlength=bins)[filled] / counts[filled]
    share_right = np.bincount(which, weights=correct * weights, minlength=bins)[filled] / counts[filled]
    return mean_prob, share_right, counts[filled]


def expected_calibration_error(probabilities: np.ndarray, correct: np.ndarray, bins: int = 10,
                               weights: np.ndarray | None = None) -> float:
    """Count-weighted mean gap between predicted probability and share right over the bins (0 = calibrated)."""
    mean_prob, share_right, counts = reliability_curve(probabilities, correct, bins, weights)
    if counts.sum() == 0:
        return 0.0
    return float(np.sum(counts * np.abs(mean_prob - share_right)) / counts.sum())


def calibrate(ids: np.ndarray, vectors: np.ndarray, labels: Sequence[str | None],
              sources: Sequence[LabelSource | None], *, model_id: str, k: int = 10, machine_weight: float = 0.5,
              target_precision: float = 0.95, open_set_share: float = 0.5, distance_quantile: float = 0.99,
              photos: Sequence[str | None] | None = None, traffic: np.ndarray | None = None) -> Calibrator:
    """Fit everything from a store's logos: leave-one-out answers, distance limit, calibrator, thresholds.

    Args:
        ids, vectors, labels, sources, k, machine_weight, photos: As for :func:`leave_one_out`.
        model_id: Embedding model of ``vectors``.
        target_precision: Precision the global and per-label thresholds aim at.
        open_set_share: Share of searched logos assumed to be of brands the store does not hold
            (:meth:`LeaveOneOut.weights`): the higher, the more a label must stand out to be given. The
            assumption until the store has traffic to estimate it from.
        distance_quantile: Share of labelled logos within the open-set distance limit (:func:`distance_limit`).
        traffic: Features of answers the store gives to the logos it is asked to name
            (:func:`traffic_answers`); with :data:`MIN_TRAFFIC` or more, their open-set share is estimated
            (:func:`open_set_share_of`) and used instead of ``open_set_share``.

    Raises:
        StoreError: Too few human labels, or answers all right or all wrong.
    """
    data = leave_one_out(ids, vectors, labels, sources, k, machine_weight, photos)
    traffic = np.zeros((0, len(FEATURES))) if traffic is None else np.asarray(traffic, dtype=np.float64)
    share = open_set_share_of(traffic, data) if len(traffic) >= MIN_TRAFFIC else open_set_share
    weights = data.weights(min(share, MAX_OPEN_SET_SHARE))
    max_distance = distance_limit(data.nearest_same, distance_quantile)
    calibrator = Calibrator.fit(data.features, data.correct, model_id=model_id, k=k, machine_weight=machine_weight,
                                max_distance=max_distance, weights=weights)
    kept = data.features[:, NEAREST_SAME] <= max_distance  # answers beyond the limit are never given
    probs = calibrator.probabilities(data.features[kept])
    correct = data.correct[kept]
    # the lowest threshold that the store's answers show reaches the target: counted (with a margin for few
    # answers), or expected from calibrated probabilities; never above the target (answers a calibrated model
    # gives at P >= target are right that often on average)
    shown = precision_threshold(probs, correct, target_precision, weights[kept])
    if shown is None:  # too few answers to show the target with confidence: the best estimate
        shown = precision_threshold(probs, correct, target_precision, weights[kept], z=0.0)
    expected = (expected_precision_threshold(probs, target_precision, weights[kept])
                if calibrator.stats.get("ece", 1.0) <= MAX_ECE else None)
    global_threshold = min(t for t in (shown, expected, target_precision) if t is not None)
    thresholds = suggest_thresholds(probs, correct, [w for w, keep in zip(data.winners, kept) if keep],
                                    target_precision, weights=weights[kept])
    stats = {**calibrator.stats, "open_set": int(data.open_set.sum()), "open_set_share": open_set_share,
             "open_set_share_used": round(float(share), 4), "traffic": len(traffic),
             "target_precision": target_precision, "distance_quantile": distance_quantile}
    return replace(calibrator, min_probability=global_threshold, thresholds=thresholds, stats=stats)

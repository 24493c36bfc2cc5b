"""The features of a kNN vote that the calibration turns into P(right): how near the winning label is, and how
clear of the runner-up (:data:`FEATURES`). Shared by the leave-one-out answers a calibration is fitted on
(:mod:`pipeline.leave_one_out`) and by every search it names (:class:`pipeline.calibration.Calibrator`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.knn import VoteConfig, predict_label
from pipeline.types import Neighbour, Prediction

NO_NEIGHBOUR = 2.0  # the largest angular distance: "no such neighbour"
# Names of the features of :func:`vote_features`, in order; stored with a calibrator so that one fitted on
# another feature set is never used.
FEATURES = ("nearest_same", "margin")
NEAREST_SAME, MARGIN = range(len(FEATURES))


def plain_vote(neighbours: Sequence[Neighbour], machine_weight: float) -> tuple[Prediction, np.ndarray]:
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
    vote, features = plain_vote(neighbours, machine_weight)
    return vote.label, features

"""Cluster health: how clean each label is, which logos look mislabelled, what to label next.

* **Purity** of a label: over its logos, the mean share of each logo's nearest
  neighbours (in embedding space, itself excluded) that carry the same label;
  a label with n logos is judged on the first min(k, n - 1) neighbours, the
  most it could fill, so a perfect cluster scores 1 whatever its size. A
  label of fewer than three logos is not judged: one slot says nothing.
* **Suspects**: labelled logos whose labelled neighbours mostly (two thirds) carry another
  label; ranked by how strongly they disagree.
* **Unlabelled clusters**: HDBSCAN over the map coordinates of unlabelled logos;
  dense, large clusters first, since one label there names many logos at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.types import LabelSource


MIN_JUDGED_LOGOS = 3  # logos a label needs before its purity and its logos' suspicion mean something
# share of a logo's labelled neighbours that must agree on one other label to call it a suspect: in a store of
# thousands of brands, a logo whose brand's other prints are far has two unrelated brands among four neighbours
# ("50 % vs 0 %"), which says it is alone, not that it is mislabelled
SUSPECT_SHARE = 2 / 3


@dataclass(frozen=True)
class LabelHealth:
    """One label's purity and size."""

    label: str
    logos: int
    purity: float
    suspects: int


@dataclass(frozen=True)
class Suspect:
    """A logo whose neighbours say it is something else."""

    logo_id: int
    label: str
    source: LabelSource | None
    neighbours_say: str
    agreement: float  # share of its labelled neighbours that share its label
    disagreement: float  # share of its labelled neighbours with the winning other label


@dataclass(frozen=True)
class Cluster:
    """A dense group of unlabelled logos on the map."""

    ids: list[int]
    centre: tuple[float, float]
    spread: float  # mean distance to the centre, in map units

    @property
    def size(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class HealthReport:
    """Cluster health of a store; ``sampled`` of its ``logos`` had their neighbours searched."""

    labels: list[LabelHealth]
    suspects: list[Suspect]
    clusters: list[Cluster]
    sampled: int = 0
    logos: int = 0
    too_few: int = 0  # labels with fewer than MIN_JUDGED_LOGOS logos, not judged


def label_health(neighbours: Mapping[int, list[int]], labels: Mapping[int, tuple[str | None, LabelSource | None]],
                 min_votes: int = 3, label_sizes: Mapping[str, int] | None = None
                 ) -> tuple[list[LabelHealth], list[Suspect]]:
    """Purity per label and the suspect logos, from each logo's nearest neighbours.

    A label of fewer than :data:`MIN_JUDGED_LOGOS` logos is not judged: with two logos, each has one
    neighbour slot its label could fill, and a mark printed in two colourways whose prints are not each
    other's nearest logo would read as "purity 0 %" and two suspects. Such labels are counted apart
    (:func:`too_few_to_judge`).

    Args:
        neighbours: ``logo id -> ids of its k nearest neighbours`` (itself excluded).
        labels: ``logo id -> (label, source)`` for every id that appears.
        min_votes: Labelled neighbours a logo needs before it can be called a suspect.
        label_sizes: Logos per label in the store (default: counted among ``neighbours``' keys, which is the
            store when every logo is a key, not when they are a sample).

    Example:
        >>> labels = {i: ("a", None) for i in range(1, 5)} | {i: ("b", None) for i in range(5, 8)}
        >>> nn = {1: [2, 3, 4], 2: [1, 3, 5], 3: [1, 2, 4], 4: [1, 2, 3], 5: [1, 2, 3], 6: [7, 5, 1], 7: [6, 5, 2]}
        >>> per_label, suspects = label_health(nn, labels)
        >>> [(h.label, round(h.purity, 2)) for h in per_label], [(s.logo_id, s.neighbours_say) for s in suspects]
        ([('b', 0.67), ('a', 0.92)], [(5, 'a')])
    """
    sizes = Counter(label_sizes) if label_sizes is not None else Counter(
        labels.get(i, (None, None))[0] for i in neighbours)
    shares: dict[str, list[float]] = {}
    suspects: list[Suspect] = []
    for logo_id, near in neighbours.items():
        label, source = labels.get(logo_id, (None, None))
        if label is None or not near or sizes[label] < MIN_JUDGED_LOGOS:
            continue
        # a label with n logos can fill at most n - 1 neighbour slots: judge it on those
        slots = min(len(near), sizes[label] - 1)
        near_labels = [labels.get(n, (None, None))[0] for n in near]
        if slots:
            shares.setdefault(label, []).append(sum(lab == label for lab in near_labels[:slots]) / slots)
        votes = Counter(lab for lab in near_labels[:max(slots, min_votes + 1)] if lab is not None)
        total = sum(votes.values())
        if total < min_votes:
            continue
        winner, count = max(((lab, c) for lab, c in votes.items() if lab != label), key=lambda p: (p[1], p[0]),
                            default=(None, 0))
        own = votes.get(label, 0)
        if winner is not None and count > own and count / total >= SUSPECT_SHARE:
            suspects.append(Suspect(logo_id, label, source, winner, own / total, count / total))
    per_label = [LabelHealth(label, len(values), float(np.mean(values)),
                             sum(s.label == label for s in suspects)) for label, values in shares.items()]
    per_label.sort(key=lambda h: (h.purity, -h.logos, h.label))
    suspects.sort(key=lambda s: (-(s.disagreement - s.agreement), s.logo_id))
    return per_label, suspects


def too_few_to_judge(label_sizes: Mapping[str, int]) -> int:
    """How many labels have too few logos for :func:`label_health` to judge them.

    Example:
        >>> too_few_to_judge({"a": 2, "b": 5, "c": 1})
        2
    """
    return sum(1 for count in label_sizes.values() if count < MIN_JUDGED_LOGOS)


def unlabelled_clusters(ids: np.ndarray, xy: np.ndarray, min_cluster_size: int = 5,
                        limit: int = 50) -> list[Cluster]:
    """Dense clusters of unlabelled logos on the map, largest and tightest first.

    Args:
        ids: Ids of the unlabelled logos.
        xy: Their map coordinates (``[n, 2]``).
        min_cluster_size: HDBSCAN's smallest cluster.
        limit: Clusters returned at most.
    """
    from sklearn.cluster import HDBSCAN

    if len(ids) < max(2, min_cluster_size):
        return []
    assignment = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(np.asarray(xy, np.float64))
    clusters = []
    for number in set(assignment.tolist()) - {-1}:
        members = assignment == number
        points = xy[members]
        centre = points.mean(axis=0)
        clusters.append(Cluster([int(i) for i in ids[members]], (float(centre[0]), float(centre[1])),
                                float(np.linalg.norm(points - centre, axis=1).mean())))
    clusters.sort(key=lambda c: (-c.size, c.spread))
    return clusters[:limit]

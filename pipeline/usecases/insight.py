"""Insight: what the pages read about the store (counts, thumbnails, the map, cluster health, its accuracy on its
own labels, exports), made by background workers and never on a page load."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.derived import Derived
from pipeline.errors import BadInputError
from pipeline.exports import ExportOptions, ExportReport, export_archive, export_store
from pipeline.health import HealthReport, label_health, too_few_to_judge, unlabelled_clusters
from pipeline.projection import MapPoints, MapStatus
from pipeline.store_evaluation import StoreEvaluation, evaluate_store
from pipeline.types import StoreStats
from pipeline.usecases.parts import MAX_LOGO_ID, Parts
from pipeline.util import chunked

log = logging.getLogger(__name__)
T = TypeVar("T")

HEALTH_SAMPLE = 20_000  # logos whose neighbours cluster health searches (all of them in a smaller store)
EVALUATION_SAMPLE = 5_000  # logos the background store evaluation searches (each among all the others)
HEALTH_SETTLE_S = 3.0  # quiet seconds after the last add before cluster health is recomputed
MIN_CLUSTER_SIZE = 5  # the smallest group of unlabelled logos reported as a cluster


@dataclass(frozen=True)
class NeighbourTable:
    """Each sampled logo's nearest neighbours (itself excluded)."""

    table: dict[int, list[int]]
    logos: int  # logos in the store when computed (the table covers all of them, or a sample)


class NeighbourTableResult(Derived[NeighbourTable]):
    """Nearest neighbours of every stored logo, or of a seeded sample of :data:`HEALTH_SAMPLE` in a bigger store.

    Labels are not part of it (they change far more often than the logos and are read when a report is made), so
    the table lasts until logos are added or removed, or the vote's k changes.
    """

    name = "neighbour table"

    def __init__(self, parts: Parts) -> None:
        super().__init__()
        self.parts = parts

    def fingerprint(self) -> str:
        return f"{self.parts.store.content_version()}|k={self.parts.settings.k}"

    def make(self) -> NeighbourTable:
        store, index, k = self.parts.store, self.parts.index, self.parts.settings.k
        ids = np.array(store.ids(), dtype=np.int64)
        queries = ids
        if len(ids) > HEALTH_SAMPLE:
            seed = zlib.crc32(store.content_version().encode())
            queries = np.sort(np.random.default_rng(seed).choice(ids, HEALTH_SAMPLE, replace=False))
        table: dict[int, list[int]] = {}
        model_id = store.model_id or ""
        for chunk in chunked(queries.tolist(), 1000):
            for logo_id, vector in zip(chunk, store.vectors(chunk), strict=True):
                pairs = index.search(vector, k + 1, model_id)
                table[logo_id] = [i for i, _ in pairs if i != logo_id][:k]
        return NeighbourTable(table, len(ids))


class _AfterQuiet(Derived[T]):
    """A report made once the logos stop changing for :data:`HEALTH_SETTLE_S` (a bulk import adds for minutes)."""

    def __init__(self, parts: Parts) -> None:
        super().__init__()
        self.parts = parts

    @property
    def settle_s(self) -> float:  # type: ignore[override]  # read at each run: tests shorten it
        return HEALTH_SETTLE_S


class HealthReportResult(_AfterQuiet[HealthReport]):
    """Purity per label, suspect logos and dense unlabelled clusters on the map: made from the neighbour table, the
    labels and the map, once per state of the three, and shared by every reader."""

    name = "cluster health"

    def __init__(self, parts: Parts, neighbours: NeighbourTableResult) -> None:
        super().__init__(parts)
        self.neighbours = neighbours

    def fingerprint(self) -> str:
        status = self.parts.map.status()
        return (f"{self.neighbours.fingerprint()}|{self.parts.store.labels_version()}|{status.state}|{status.fitted}"
                f"|{status.placed}|{status.seconds}|{MIN_CLUSTER_SIZE}")

    def make(self) -> HealthReport:
        store = self.parts.store
        made = self.neighbours.refresh()
        table = made.table
        seen = set(table) | {n for near in table.values() for n in near}
        labels = store.labels(sorted(seen))
        sizes = store.label_counts()
        per_label, suspects = label_health(table, labels, label_sizes=sizes)
        clusters = []
        points = self.parts.map.points()
        if points is not None:
            frame = store.label_frame()
            unlabelled = np.isin(points.ids, frame.id[frame.label.isna()].to_numpy())
            ids, xy = points.ids[unlabelled], points.xy[unlabelled]
            if len(ids) > HEALTH_SAMPLE:  # HDBSCAN on millions of points would take minutes: a seeded sample
                keep = np.sort(np.random.default_rng(0).choice(len(ids), HEALTH_SAMPLE, replace=False))
                ids, xy = ids[keep], xy[keep]
            clusters = unlabelled_clusters(ids, xy, MIN_CLUSTER_SIZE)
        return HealthReport(per_label, suspects, clusters, sampled=len(table), logos=made.logos,
                            too_few=too_few_to_judge(sizes))


class StoreEvaluationResult(_AfterQuiet[StoreEvaluation]):
    """The store's leave-one-out accuracy at ``settings.k`` (at most :data:`EVALUATION_SAMPLE` queries), once per
    state of the logos and labels; "nothing to evaluate" is kept as the answer for those labels."""

    name = "store evaluation"

    def __init__(self, parts: Parts, insight: Insight) -> None:
        super().__init__(parts)
        self.insight = insight

    def fingerprint(self) -> str:
        store = self.parts.store
        return f"{store.content_version()}|{store.labels_version()}|k={self.parts.settings.k}"

    def make(self) -> StoreEvaluation:
        return self.insight.evaluate(self.parts.settings.k, max_queries=EVALUATION_SAMPLE)


class Insight:
    """Counts, thumbnails, the map, cluster health, the store evaluation and exports."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.neighbours = NeighbourTableResult(parts)
        self.health = HealthReportResult(parts, self.neighbours)
        self.evaluation = StoreEvaluationResult(parts, self)

    # -- counts and thumbnails -----------------------------------------------------------
    def count(self) -> int:
        """How many logos are stored."""
        return self.parts.store.count()

    def stats(self) -> StoreStats:
        indexed, pending = self.parts.index.counts()
        base = self.parts.store.stats()
        return StoreStats(**{**base.__dict__, "indexed": indexed, "pending": pending})

    def thumbnail(self, logo_id: int) -> bytes | None:
        """A stored logo's WebP thumbnail (None for an unknown id)."""
        return self.parts.store.thumbnail(logo_id) if 0 < int(logo_id) <= MAX_LOGO_ID else None

    def export(self, fmt: str, options: ExportOptions | None = None) -> tuple[Path, ExportReport]:
        """The store exported as a ZIP file in a new temporary folder (the caller removes ``path.parent``)."""
        return export_archive(self.parts.store, fmt, options)

    def export_to(self, fmt: str, out: Path, options: ExportOptions | None = None) -> ExportReport:
        """The store exported to ``out`` (a folder for COCO, YOLO and LabelMe, a file for CSV and Parquet)."""
        return export_store(self.parts.store, fmt, out, options)

    # -- the map -------------------------------------------------------------------------
    def start_map(self, refit: bool = False) -> None:
        """Fit the map in the background (or read it from its cache); ``refit`` fits again on every logo.

        Not while the store's build runs: a map of part of the store would be fitted again at once (the build
        starts it when it ends).
        """
        if not self.parts.build.status().building:
            self.parts.map.start(refit=refit)

    def map_status(self) -> MapStatus:
        return self.parts.map.status()

    def wait_for_map(self, timeout: float | None = None) -> MapStatus:
        """Block until a running map fit ends (scripts and notebooks; the app never waits)."""
        return self.parts.map.wait(timeout)

    def map_points(self) -> MapPoints | None:
        """Every stored logo's map coordinates (None until the map is fitted)."""
        return self.parts.map.points()

    # -- cluster health and the store evaluation -----------------------------------------
    def logos_added(self) -> None:
        """After logos were added: cluster health is made again in the background, if anyone has asked for it."""
        if self.health.current() is not None or self.health.state() == "making":
            self.request_health()

    def neighbour_table(self) -> NeighbourTable:
        """Nearest neighbours (itself excluded) of the stored logos at ``settings.k``; made now if stale."""
        return self.neighbours.refresh()

    def request_health(self) -> None:
        """Make cluster health and the store evaluation again in the background once the logos stop changing for
        a few seconds, if anything they depend on changed; never on a page load (a visitor reads what the last run
        left). Safe to ask for at any time."""
        self.health.request()
        self.evaluation.request()

    def cluster_health(self, *, wait: bool = True) -> HealthReport | None:
        """Purity per label, suspect logos, and dense unlabelled clusters on the map (if fitted), at ``settings.k``.

        Args:
            wait: Make the report now if the logos, labels or map changed since the last one; with False, answer
                None instead and have the background worker make it, so that a page load never computes it.
        """
        if wait:
            return self.health.refresh()
        report = self.health.fresh()
        if report is None:
            self.health.request()
        return report

    def evaluate(self, k: int = 10, max_queries: int | None = None, confused: int | None = 20) -> StoreEvaluation:
        """Leave-one-out accuracy of the store on its human labels (:func:`pipeline.store_evaluation.evaluate_store`),
        with its ``confused`` most frequent (label, label given instead) pairs (None: every one).

        Raises:
            BadInputError: the store is empty, or no label has two human-labelled logos.
        """
        if not self.parts.store.count():
            raise BadInputError("the store is empty")
        return evaluate_store(self.parts.store_vectors(), machine_weight=self.parts.settings.machine_label_weight,
                              k=k, confused=confused, max_queries=max_queries)

    def store_evaluation(self, *, wait: bool = True) -> StoreEvaluation | None:
        """The store's leave-one-out accuracy at ``settings.k`` (:class:`StoreEvaluationResult`), shared by every
        reader.

        With ``wait=False`` (pages, anonymous requests) nothing is computed: the answer is the report for the
        current logos and labels, or None while the background worker makes it.

        Raises:
            BadInputError: the store has nothing to evaluate (no label with two human-labelled logos).
        """
        if wait:
            return self.evaluation.refresh()
        report = self.evaluation.fresh()
        if report is None:
            problem = self.evaluation.problem()
            if problem is not None:
                raise BadInputError(problem)
            self.evaluation.request()
        return report

"""Insight: what the pages read about the store (counts, thumbnails, the map, cluster health, its accuracy on its
own labels, exports), made by background workers and never on a page load."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import BadInputError
from pipeline.exports import ExportOptions, ExportReport, export_archive, export_store
from pipeline.health import HealthReport, label_health, too_few_to_judge, unlabelled_clusters
from pipeline.projection import MapPoints, MapStatus
from pipeline.store_evaluation import StoreEvaluation, evaluate_store
from pipeline.types import StoreStats
from pipeline.usecases.parts import MAX_LOGO_ID, Parts
from pipeline.util import chunked

log = logging.getLogger(__name__)

HEALTH_SAMPLE = 20_000  # logos whose neighbours cluster health searches (all of them in a smaller store)
EVALUATION_SAMPLE = 5_000  # logos the background store evaluation searches (each among all the others)
HEALTH_SETTLE_S = 3.0  # quiet seconds after the last add before cluster health is recomputed


@dataclass(frozen=True)
class NeighbourTable:
    """Each sampled logo's nearest neighbours, for the store content ``key`` it was computed on."""

    key: tuple[str, int]
    table: dict[int, list[int]]
    logos: int  # logos in the store when computed (the table covers all of them, or a sample)


class Insight:
    """Counts, thumbnails, the map, cluster health, the store evaluation and exports."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self._neighbour_table: NeighbourTable | None = None
        self._health_report: tuple[tuple, HealthReport] | None = None
        self._evaluation: tuple[tuple, StoreEvaluation | str] | None = None
        self._health_wanted = threading.Event()
        self._health_running = threading.Lock()

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
        """After logos were added: cluster health is recomputed in the background, if anyone has asked for it."""
        if self._neighbour_table is not None or self._health_running.locked():
            self.request_health()

    def neighbour_table(self, k: int = 10) -> NeighbourTable:
        """Nearest neighbours (itself excluded) of every stored logo, or of a seeded sample of
        :data:`HEALTH_SAMPLE` of them in a bigger store; cached until the logos change.

        Labels are not part of it (they change far more often than the logos and are read when a report is
        made), so the table lasts until logos are added or removed.
        """
        store, index = self.parts.store, self.parts.index
        key = (store.content_version(), k)
        cached = self._neighbour_table
        if cached is not None and cached.key == key:
            return cached
        ids = np.array(store.ids(), dtype=np.int64)
        queries = ids
        if len(ids) > HEALTH_SAMPLE:
            seed = zlib.crc32(key[0].encode())
            queries = np.sort(np.random.default_rng(seed).choice(ids, HEALTH_SAMPLE, replace=False))
        table: dict[int, list[int]] = {}
        model_id = store.model_id or ""
        for chunk in chunked(queries.tolist(), 1000):
            for logo_id, vector in zip(chunk, store.vectors(chunk), strict=True):
                pairs = index.search(vector, k + 1, model_id)
                table[logo_id] = [i for i, _ in pairs if i != logo_id][:k]
        made = NeighbourTable(key, table, len(ids))
        self._neighbour_table = made
        return made

    def request_health(self) -> None:
        """Recompute the cluster-health neighbours and the store evaluation in the background once the logos
        stop changing for a few seconds; one run at a time, never on a page load (a visitor reads what the
        last run left). A run with nothing changed computes nothing: safe to ask for at any time."""
        self._health_wanted.set()
        if self._health_running.acquire(blocking=False):
            threading.Thread(target=self._health_worker, name="cluster-health", daemon=True).start()

    def _health_worker(self) -> None:
        store = self.parts.store
        try:
            while self._health_wanted.is_set():
                self._health_wanted.clear()
                version = store.content_version()
                time.sleep(HEALTH_SETTLE_S)
                if store.content_version() != version:  # logos still being added: wait for quiet
                    self._health_wanted.set()  # (readers asking again meanwhile do not delay it)
                    continue
                try:
                    self.cluster_health(self.parts.settings.k)  # the neighbours, then the report visitors read
                except Exception:  # a failed run leaves the last table; the next change tries again
                    log.exception("cluster health failed")
                try:
                    self.store_evaluation()
                except BadInputError:
                    pass  # nothing to evaluate yet: kept as the answer for these labels
                except Exception:
                    log.exception("store evaluation failed")
        finally:
            self._health_running.release()
        if self._health_wanted.is_set():  # asked again between the loop's end and the release
            self.request_health()

    def cluster_health(self, k: int = 10, min_cluster_size: int = 5, *, wait: bool = True) -> HealthReport | None:
        """Purity per label, suspect logos, and dense unlabelled clusters on the map (if fitted).

        Args:
            k: Neighbours per logo.
            min_cluster_size: Smallest unlabelled cluster.
            wait: Compute the neighbours and the report now if the logos, labels or map changed since the
                last report; with False, answer None instead and have the background worker
                (:meth:`request_health`) make it, so that a page load never computes it (the dashboard).
        """
        store = self.parts.store
        cached = self._neighbour_table
        if not wait and (cached is None or cached.key != (store.content_version(), k)):
            return None
        made = self.neighbour_table(k) if wait else cached
        status = self.parts.map.status()
        key = (made.key, store.labels_version(), status.state, status.fitted, status.placed, status.seconds,
               min_cluster_size)
        report = self._health_report
        if report is not None and report[0] == key:
            return report[1]  # every visitor reads the same report until logos, labels or the map change
        if not wait:  # labels or the map changed since: the background worker makes the new report
            self.request_health()
            return None
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
            clusters = unlabelled_clusters(ids, xy, min_cluster_size)
        made_report = HealthReport(per_label, suspects, clusters, sampled=len(table), logos=made.logos,
                                   too_few=too_few_to_judge(sizes))
        self._health_report = (key, made_report)
        return made_report

    def evaluate(self, k: int = 10, max_queries: int | None = None) -> StoreEvaluation:
        """Leave-one-out accuracy of the store on its human labels (:func:`pipeline.store_evaluation.evaluate_store`).

        Raises:
            BadInputError: the store is empty, or no label has two human-labelled logos.
        """
        if not self.parts.store.count():
            raise BadInputError("the store is empty")
        return evaluate_store(self.parts.store_vectors(), machine_weight=self.parts.settings.machine_label_weight,
                              k=k, max_queries=max_queries)

    def store_evaluation(self, *, wait: bool = True) -> StoreEvaluation | None:
        """The store's leave-one-out accuracy at ``settings.k`` (at most :data:`EVALUATION_SAMPLE` queries),
        made once per state of the logos and labels and shared by every reader.

        With ``wait=False`` (pages, anonymous requests) nothing is computed: the answer is the report for the
        current logos and labels, or None while the background worker (:meth:`request_health`) makes it.

        Raises:
            BadInputError: the store has nothing to evaluate (no label with two human-labelled logos).
        """
        store, k = self.parts.store, self.parts.settings.k
        key = (store.content_version(), store.labels_version(), k)
        cached = self._evaluation
        if cached is None or cached[0] != key:
            if not wait:
                self.request_health()
                return None
            try:
                made: StoreEvaluation | str = self.evaluate(k, max_queries=EVALUATION_SAMPLE)
            except BadInputError as exc:
                made = str(exc)
            cached = self._evaluation = (key, made)
        if isinstance(cached[1], str):
            raise BadInputError(cached[1])
        return cached[1]

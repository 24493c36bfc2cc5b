"""Calibration: the store's confidence model, fitted on its own human labels, kept fresh in the background."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import numpy as np

from pipeline.calibration import Calibrator, calibrate
from pipeline.leave_one_out import traffic_answers
from pipeline.errors import StoreError
from pipeline.usecases.parts import Parts

log = logging.getLogger(__name__)


def calibration_summary(calibrator: Calibrator) -> dict[str, object]:
    """What a calibration says, in the CLI's and the API's JSON shape."""
    return {"model": calibrator.model_id, "answers": calibrator.n_samples,
            "ece": round(float(calibrator.stats.get("ece", float("nan"))), 4),
            "max_distance": round(calibrator.max_distance, 4),
            "default_threshold": round(calibrator.min_probability, 4),
            "label_thresholds": len(calibrator.thresholds)}


class Calibration:
    """Fit, save, reload and refresh the confidence calibration of one store (``calibration.json``)."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.path = parts.settings.data_dir / "calibration.json"
        self._cached: tuple[tuple[float, str], Calibrator | None] | None = None
        self._fitting = threading.Lock()
        self._wanted = threading.Event()

    def current(self) -> Calibrator | None:
        """The store's calibration for the current embedding model, re-read when its file changes."""
        model_id = self.parts.store.model_id
        try:
            stamp = (self.path.stat().st_mtime, model_id or "")
        except FileNotFoundError:
            return None
        cached = self._cached
        if cached is None or cached[0] != stamp:
            try:
                loaded = Calibrator.load(self.path, model_id) if model_id else None
            except StoreError as exc:
                log.warning("%s", exc)
                loaded = None
            cached = self._cached = (stamp, loaded)
        return cached[1]

    def _fit_settings(self) -> dict[str, float]:
        """The settings a calibration is fitted to, kept in its stats: when one changes, it is refitted."""
        settings = self.parts.settings
        return {"target_precision": settings.target_precision, "open_set_share": settings.open_set_share,
                "distance_quantile": settings.distance_quantile}

    def is_stale(self) -> bool:
        """Whether the labels or the settings it was fitted to (the vote's too) changed since the last
        calibration (or there is none)."""
        calibrator = self.current()
        settings = self.parts.settings
        return (calibrator is None or calibrator.labels_version != self.parts.store.labels_version()
                or (calibrator.k, calibrator.machine_weight) != (settings.k, settings.machine_label_weight)
                or any(calibrator.stats.get(name) != value for name, value in self._fit_settings().items()))

    def fit(self, traffic: np.ndarray | None = None) -> Calibrator:
        """Fit the confidence calibration on the store's human labels (leave-one-out) and save it.

        The share of searched logos of brands the store does not hold is estimated from ``traffic``
        (features of answers, :func:`pipeline.leave_one_out.traffic_answers`; default: the store's own logos
        that no person labelled, such as imported photos'), once there are enough of them; until then it is
        ``settings.open_set_share``.

        Raises:
            StoreError: Too few human labels to calibrate.
        """
        with self._fitting:
            calibrator = self._fit(traffic)
        if self._wanted.is_set():  # asked for while this one ran, and its worker gave way
            self.request()
        return calibrator

    def _fit(self, traffic: np.ndarray | None) -> Calibrator:
        """:meth:`fit` with the lock held."""
        settings = self.parts.settings
        version = self.parts.store.labels_version()
        data = self.parts.store_vectors()
        vote = {"k": settings.k, "machine_weight": settings.machine_label_weight, "photos": data.photos}
        if traffic is None:  # the logos no person labelled: the store's own traffic
            traffic = traffic_answers(data.ids, data.vectors, data.labels, data.sources, **vote)
        calibrator = calibrate(data.ids, data.vectors, data.labels, data.sources, model_id=data.model_id,
                               traffic=traffic, **vote, **self._fit_settings())
        calibrator = replace(calibrator, labels_version=version)
        calibrator.save(self.path)
        log.info("calibrated on %d answers: ECE %.3f, distance limit %.3f, threshold %.2f",
                 calibrator.n_samples, calibrator.stats.get("ece", float("nan")), calibrator.max_distance,
                 calibrator.min_probability)
        return calibrator

    def state(self) -> str:
        """``fitting`` while a calibration is asked for or running, else ``ready`` (one is in use) or ``none``."""
        if self._wanted.is_set() or self._fitting.locked():
            return "fitting"
        return "ready" if self.current() is not None else "none"

    def request(self) -> None:
        """Recalibrate in a background thread (once more if labels change meanwhile); never blocks a caller."""
        self._wanted.set()
        threading.Thread(target=self._fit_when_wanted, name="calibrate", daemon=True).start()

    def _fit_when_wanted(self) -> None:
        while self._wanted.is_set():
            if not self._fitting.acquire(blocking=False):
                return  # the running fit will see the flag and go again
            try:  # held from the flag's clearing to the fit's end: state() reads "fitting" throughout
                self._wanted.clear()
                if self.is_stale():
                    self._fit(None)
            except StoreError as exc:
                log.info("no calibration yet: %s", exc)
            finally:
                self._fitting.release()

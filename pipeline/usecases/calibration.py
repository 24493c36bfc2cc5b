"""Calibration: the store's confidence model, fitted on its own human labels, kept fresh in the background."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from pipeline.calibration import Calibrator, calibrate
from pipeline.derived import Derived, Made
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


class CalibrationResult(Derived[Calibrator]):
    """The store's calibration as a derived result: kept in ``calibration.json``, made from the human labels
    with the vote's and the fit's settings (:meth:`fingerprint`), re-read when another process rewrites it."""

    name = "calibration"
    expected = (StoreError,)  # too few human labels
    on_disk = True  # the CLI or another worker may fit it

    def __init__(self, parts: Parts) -> None:
        super().__init__()
        self.parts = parts
        self.path = parts.settings.data_dir / "calibration.json"
        self._read: tuple[tuple[float, str], Made[Calibrator] | None] | None = None

    def fit_settings(self) -> dict[str, float]:
        """The settings a calibration is fitted to, kept in its stats (a change refits it)."""
        settings = self.parts.settings
        return {"target_precision": settings.target_precision, "open_set_share": settings.open_set_share,
                "distance_quantile": settings.distance_quantile}

    @staticmethod
    def _fingerprint(model_id: str, labels_version: str, k: int, machine_weight: float,
                     fit_settings: dict[str, float]) -> str:
        return repr((model_id, labels_version, k, machine_weight, sorted(fit_settings.items())))

    def fingerprint(self) -> str:
        settings = self.parts.settings
        return self._fingerprint(self.parts.store.model_id or "", self.parts.store.labels_version(), settings.k,
                                 settings.machine_label_weight, self.fit_settings())

    def make(self, traffic: np.ndarray | None = None) -> Calibrator:
        """Fit on the store's human labels (leave-one-out); the open-set share from ``traffic`` (default: the
        store's own logos that no person labelled, such as imported photos')."""
        settings = self.parts.settings
        version = self.parts.store.labels_version()
        data = self.parts.store_vectors()
        vote = {"k": settings.k, "machine_weight": settings.machine_label_weight, "photos": data.photos}
        if traffic is None:  # the logos no person labelled: the store's own traffic
            traffic = traffic_answers(data.ids, data.vectors, data.labels, data.sources, **vote)
        calibrator = calibrate(data.ids, data.vectors, data.labels, data.sources, model_id=data.model_id,
                               traffic=traffic, **vote, **self.fit_settings())
        log.info("calibrated on %d answers: ECE %.3f, distance limit %.3f, threshold %.2f",
                 calibrator.n_samples, calibrator.stats.get("ece", float("nan")), calibrator.max_distance,
                 calibrator.min_probability)
        return replace(calibrator, labels_version=version)

    def save(self, made: Made[Calibrator]) -> None:
        if made.value is not None:
            made.value.save(self.path)

    def load(self) -> Made[Calibrator] | None:
        """The calibration file for the store's current model, read again only when the file changes."""
        model_id = self.parts.store.model_id
        try:
            stamp = (self.path.stat().st_mtime, model_id or "")
        except FileNotFoundError:
            return None
        read = self._read
        if read is None or read[0] != stamp:
            try:
                calibrator = Calibrator.load(self.path, model_id) if model_id else None
            except StoreError as exc:
                log.warning("%s", exc)
                calibrator = None
            made = None if calibrator is None else Made(self._fingerprint(
                calibrator.model_id, calibrator.labels_version, calibrator.k, calibrator.machine_weight,
                {name: calibrator.stats.get(name) for name in self.fit_settings()}), calibrator)
            read = self._read = (stamp, made)
        return read[1]


class Calibration:
    """The confidence calibration of one store (``calibration.json``): read by every search, refitted in the
    background when the labels or its settings change (:class:`CalibrationResult`)."""

    def __init__(self, parts: Parts) -> None:
        self.result = CalibrationResult(parts)
        self.path = self.result.path

    def current(self) -> Calibrator | None:
        """The store's calibration for the current embedding model (None: uncalibrated)."""
        return self.result.current()

    def is_stale(self) -> bool:
        """Whether the labels or the settings it was fitted to (the vote's too) changed since the last
        calibration (or there is none)."""
        return self.result.is_stale()

    def fit(self, traffic: np.ndarray | None = None) -> Calibrator:
        """Fit the confidence calibration on the store's human labels (leave-one-out) and save it.

        The share of searched logos of brands the store does not hold is estimated from ``traffic``
        (features of answers, :func:`pipeline.leave_one_out.traffic_answers`; default: the store's own logos
        that no person labelled, such as imported photos'), once there are enough of them; until then it is
        ``settings.open_set_share``.

        Raises:
            StoreError: Too few human labels to calibrate.
        """
        return self.result.refresh(force=True, make=lambda: self.result.make(traffic))

    def state(self) -> str:
        """``fitting`` while a calibration is asked for or running, else ``ready`` (one is in use) or ``none``."""
        state = self.result.state()
        if state == "making":
            return "fitting"
        return "ready" if self.current() is not None else "none"

    def request(self) -> None:
        """Recalibrate in the background if the labels or settings changed; never blocks a caller."""
        self.result.request()

"""How far the store's first build has come, for ``/health`` and the pages while it runs.

The app serves at once and builds the demo store in the background
(:func:`pipeline.demo.start_demo`); a :class:`BuildTracker` is what the build
writes its progress to and what every front end reads. It knows nothing of what
is built: only done, total, a message and whether it ended.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

BUILDING, READY, FAILED = "building", "ready", "failed"


@dataclass(frozen=True)
class BuildStatus:
    """A snapshot of the build: ``state`` is ``building``, ``ready`` or ``failed``."""

    state: str
    done: int
    total: int
    message: str

    @property
    def progress(self) -> float:
        """0..1; 1 once the build ended."""
        if self.state != BUILDING:
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def building(self) -> bool:
        return self.state == BUILDING

    def sentence(self) -> str:
        """The build's progress as a person reads it, e.g. ``Building the store: 42 % (2,900 of 6,900 logos).``"""
        if self.state == FAILED:
            return f"The store's build failed: {self.message}"
        if self.state == READY:
            return "The store is ready."
        counted = f" ({self.done:,} of {self.total:,} logos)" if self.total else ""
        return f"Building the store: {self.progress:.0%}{counted}, {self.message}."


class BuildTracker:
    """Thread-safe progress of one build; ``ready`` until :meth:`start` (a store that needs no build is ready).

    Example:
        >>> tracker = BuildTracker()
        >>> tracker.start(total=200, message="importing the bundled logos")
        >>> tracker.advance(50)
        >>> tracker.status().progress
        0.25
        >>> tracker.finish()
        >>> tracker.status().state
        'ready'
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = BuildStatus(READY, 0, 0, "")

    def status(self) -> BuildStatus:
        with self._lock:
            return self._status

    def start(self, total: int, message: str) -> None:
        with self._lock:
            self._status = BuildStatus(BUILDING, 0, total, message)

    def advance(self, done: int, message: str | None = None) -> None:
        """``done`` more logos are in; ``message`` (if given) says what is being done now."""
        with self._lock:
            status = self._status
            self._status = BuildStatus(status.state, status.done + done, status.total, message or status.message)

    def say(self, message: str) -> None:
        """What is being done now (a step that adds no logo, such as building the index)."""
        self.advance(0, message)

    def finish(self) -> None:
        with self._lock:
            self._status = BuildStatus(READY, self._status.total, self._status.total, "")

    def fail(self, message: str) -> None:
        with self._lock:
            self._status = BuildStatus(FAILED, self._status.done, self._status.total, message)

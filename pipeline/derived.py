"""One lifecycle for everything computed from the store: the index, the calibration, the map, cluster health and
the store evaluation.

Each such result says three things, and this module decides the rest in one place:

* :meth:`Derived.fingerprint`: a short string of its inputs (the store's model, logos or labels, the settings it
  depends on); a result made from other inputs is stale;
* :meth:`Derived.make`: how it is computed (may take minutes);
* :meth:`Derived.save` and :meth:`Derived.load`: where it is kept beside the data (by default, in memory only).

The base keeps what was made with the fingerprint it was made for, answers readers without computing
(:meth:`Derived.current`: the last result, stale or not; :meth:`Derived.fresh`: only an up-to-date one), and
refreshes in one background worker per result (:meth:`Derived.request`: coalesced, one run at a time, again if
the inputs changed meanwhile, after the inputs have been quiet for ``settle_s``). A page or an anonymous request
reads; only the worker, a script or an admin makes.

Example:
    >>> class Doubled(Derived[int]):
    ...     name = "doubled"
    ...     def __init__(self, source: list[int]) -> None:
    ...         super().__init__()
    ...         self.source = source
    ...     def fingerprint(self) -> str:
    ...         return str(self.source)
    ...     def make(self) -> int:
    ...         return 2 * sum(self.source)
    >>> source = [1, 2]
    >>> doubled = Doubled(source)
    >>> doubled.current(), doubled.is_stale()
    (None, True)
    >>> doubled.refresh()
    6
    >>> source.append(4)
    >>> doubled.is_stale(), doubled.current(), doubled.fresh()
    (True, 6, None)
    >>> doubled.request(); doubled.wait(5.0).value
    14
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from pipeline.errors import BadInputError, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_WAIT_S = 3.0  # how long a process that ends waits for running makes to reach a stop point
_EXITING = threading.Event()
_WORKING: weakref.WeakSet[Derived] = weakref.WeakSet()  # results whose worker may be running


class Stopped(Exception):
    """The process is ending: a make gives up at its next :meth:`Derived.stop_point`."""


@atexit.register
def _stop_workers() -> None:
    """Let running makes stop before the interpreter goes: a worker thread still inside ONNX Runtime or SQLite
    while the process is torn down aborts it (a CLI search that asked for a result in the background would exit
    with SIGABRT instead of 0)."""
    _EXITING.set()
    deadline = time.monotonic() + EXIT_WAIT_S
    for result in list(_WORKING):
        worker = result._worker
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True)
class Made(Generic[T]):
    """One result and the fingerprint of the inputs it was made from.

    ``problem`` is set instead of ``value`` when the inputs cannot give a result (an empty store, too few
    labels): that answer is kept for those inputs like any other, so that nobody asks again until they change.
    """

    fingerprint: str
    value: T | None
    seconds: float = 0.0
    problem: str | None = None


class Derived(ABC, Generic[T]):
    """A result computed from the store, with one lifecycle: fingerprint, make, save, load, stale, refresh.

    Subclasses set :attr:`name` and implement :meth:`fingerprint` and :meth:`make`; results kept on disk override
    :meth:`save` and :meth:`load` too. A long :meth:`make` can tell how far it is with :meth:`report`.
    """

    name: ClassVar[str] = "result"
    settle_s: ClassVar[float] = 0.0  # quiet seconds of unchanged inputs before the worker makes it
    expected: ClassVar[tuple[type[Exception], ...]] = (BadInputError, StoreError)  # inputs that give no result
    on_disk: ClassVar[bool] = False  # True: what :meth:`load` reads is the truth (other processes write it too)

    def __init__(self) -> None:
        self._made: Made[T] | None = None
        self._loaded = False
        self._making = threading.Lock()  # one make at a time, whoever asks
        self._wanted = threading.Event()
        self._forced = False
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._failure: str | None = None
        self.progress, self.message = 0.0, ""

    # -- what a result says ----------------------------------------------------------
    @abstractmethod
    def fingerprint(self) -> str:
        """A short string of everything the result depends on; a change makes the last result stale."""

    @abstractmethod
    def make(self) -> T:
        """Compute the result from the store now.

        Raises:
            BadInputError, StoreError: the inputs give no result (kept as this fingerprint's answer).
        """

    def save(self, made: Made[T]) -> None:
        """Keep ``made`` beside the data (default: memory only, made again after a restart)."""

    def load(self) -> Made[T] | None:
        """What :meth:`save` kept, as it is now on disk (another process may have made it); None if nothing.
        Read on every :meth:`made` when :attr:`on_disk`: cache it by the file's stamp."""
        return None

    # -- readers: never compute ----------------------------------------------------------
    def made(self) -> Made[T] | None:
        """The last result with its fingerprint: as :meth:`load` reads it now for an :attr:`on_disk` result, else
        the one made in this process (or, before any, the one :meth:`load` finds from an earlier run)."""
        if self.on_disk:
            return self.load()
        if not self._loaded:
            self._loaded = True
            self._made = self._made or self.load()
        return self._made

    def is_stale(self) -> bool:
        """Whether there is no result for the inputs as they are now: the one place this is decided."""
        made = self.made()
        return made is None or made.fingerprint != self.fingerprint()

    def current(self) -> T | None:
        """The last result made, even if its inputs changed since (a page shows it while the next is made)."""
        made = self.made()
        return None if made is None else made.value

    def fresh(self) -> T | None:
        """The result only if it is up to date with its inputs; else None."""
        made = self.made()
        return made.value if made is not None and made.fingerprint == self.fingerprint() else None

    def problem(self) -> str | None:
        """Why the current inputs give no result (too few labels...), if that is the answer made for them."""
        made = self.made()
        return made.problem if made is not None and made.fingerprint == self.fingerprint() else None

    def state(self) -> str:
        """``making`` while asked for or running, ``failed`` if the last run raised, else ``ready`` (a result
        exists) or ``none``."""
        if self._wanted.is_set() or self._making.locked():
            return "making"
        if self._failure is not None:
            return "failed"
        return "ready" if self.current() is not None else "none"

    @property
    def failure(self) -> str | None:
        """The last run's unexpected error, until a run succeeds."""
        return self._failure

    # -- makers ----------------------------------------------------------------------------
    def refresh(self, force: bool = False, make: Callable[[], T] | None = None) -> T | None:
        """Make the result now if it is stale (or ``force``), save it and return it; the caller waits.

        Args:
            force: Make it even if the last result is up to date.
            make: Make it this way this once (the same inputs, another method: a benchmark's own traffic).

        Raises:
            BadInputError, StoreError: the inputs give no result (kept as their answer, see :class:`Made`).
        """
        with self._making:
            fingerprint = self.fingerprint()
            made = self.made()
            if not force and make is None and made is not None and made.fingerprint == fingerprint:
                return self._answer(made)
            started = time.perf_counter()
            self.progress, self.message = 0.0, "starting"
            try:
                made = Made(fingerprint, (make or self.make)(), time.perf_counter() - started)
            except self.expected as exc:
                self._made = Made(fingerprint, None, time.perf_counter() - started, problem=str(exc))
                self.message = str(exc)
                raise
            self.save(made)
            self._made = made
            self._failure = None
            self.progress, self.message = 1.0, "ready"
            return made.value

    @staticmethod
    def _answer(made: Made[T]) -> T | None:
        if made.problem is not None:
            raise BadInputError(made.problem)
        return made.value

    def report(self, progress: float, message: str) -> None:
        """How far a running :meth:`make` is (0-1) and what it does: read by status lines."""
        self.progress, self.message = progress, message

    @staticmethod
    def stop_point() -> None:
        """A place where a long :meth:`make` may give up because the process is ending.

        Raises:
            Stopped: the process is ending.
        """
        if _EXITING.is_set():
            raise Stopped("the process is ending")

    def request(self, force: bool = False) -> None:
        """Make the result in the background if it is stale (or ``force``); never blocks the caller.

        Requests while a run is going are coalesced into one more run after it.
        """
        if _EXITING.is_set():
            return
        self._forced = self._forced or force
        self._wanted.set()
        with self._worker_lock:
            if self._worker is None:
                _WORKING.add(self)
                self._worker = threading.Thread(target=self._work, name=f"derived-{self.name}", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            while self._wanted.is_set():
                self._run_once()
            with self._worker_lock:  # a request after this check starts a new worker
                if not self._wanted.is_set():
                    self._worker = None
                    return

    def _run_once(self) -> None:
        fingerprint = self.fingerprint()
        if self.settle_s:
            time.sleep(self.settle_s)
            if self.fingerprint() != fingerprint:
                return  # the inputs are still changing: wait for quiet (still wanted)
        self._wanted.clear()
        force, self._forced = self._forced, False
        try:
            self.refresh(force)
        except Stopped:
            self._wanted.clear()
        except self.expected as exc:  # kept as the answer for these inputs (see refresh)
            log.info("no %s yet: %s", self.name, exc)
        except Exception as exc:  # the last result stays in use; the next request tries again
            log.exception("making the %s failed", self.name)
            self._failure = str(exc)
            self.message = f"the {self.name} failed: {exc}"

    def wait(self, timeout: float | None = None) -> Made[T] | None:
        """Block until the background worker is idle (scripts and tests; the app never waits); the last result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (worker := self._worker) is not None:
            worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                break
        return self.made()

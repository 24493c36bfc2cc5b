"""Back-pressure for the routes that burn CPU.

A photo search takes the CPU for a fraction of a second; twenty at once would
each take twenty times longer, hold twenty threads of the pool, and make
``/health`` wait behind them until a probe restarts the server. So the heavy
routes pass through one :class:`RequestGate`: a few run at once, a bounded
number wait their turn, and the rest are told at once to come back later
(503 with ``Retry-After``), as a load balancer expects.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

from pipeline.errors import LogoError


class OverloadedError(LogoError):
    """Too many requests are running or waiting: the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestGate:
    """At most ``active`` requests run at once, at most ``queued`` wait, none waits longer than ``timeout`` s.

    Use it as a FastAPI dependency (``Depends(gate)``) on CPU-bound routes: it is
    async, so waiting requests hold no thread, and the route's own thread is only
    taken once the request is admitted.

    Example:
        >>> gate = RequestGate(active=2, queued=4, timeout=10.0)
        >>> gate.retry_after()
        1
    """

    def __init__(self, active: int, queued: int, timeout: float) -> None:
        self.active = max(1, active)
        self.queued = max(0, queued)
        self.timeout = timeout
        self._slots: asyncio.Semaphore | None = None
        self._inside = 0  # admitted or waiting; counted before any await, so the check cannot race
        self._seconds = 0.5  # running mean of a request's duration, for Retry-After

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained (at least 1)."""
        return max(1, math.ceil(max(self._inside, self.active) * self._seconds / self.active))

    async def __call__(self) -> AsyncIterator[None]:
        if self._slots is None:  # made on first use, inside the server's event loop
            self._slots = asyncio.Semaphore(self.active)
        if self._inside >= self.active + self.queued:
            raise OverloadedError(f"the server is busy ({self.active} running, {self._inside - self.active}"
                                  " waiting); retry later", self.retry_after())
        self._inside += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.timeout)
            except TimeoutError:
                raise OverloadedError(f"the server is busy: no turn within {self.timeout:.0f} s; retry later",
                                      self.retry_after()) from None
            started = time.perf_counter()
            try:
                yield
            finally:
                self._slots.release()
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)
        finally:
            self._inside -= 1

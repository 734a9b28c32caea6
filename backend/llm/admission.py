"""Who may wait for the embedded model: at most `max_queue` requests in all, and a fair share per user.

Both embedded engines admit a request before any work is done for it and hold its place until its
generation is over (finished, failed, refused or cancelled), so concurrent arrivals see each other.
A full queue is a 503 for everyone, checked before any one user's share (a 429).
"""

from __future__ import annotations

import contextlib

from backend.llm.port import BackendBusy
from backend.metrics import Metrics
from backend.per_user_limits import PerUserLimit


class Admission:
    def __init__(self, *, max_queue: int, max_queue_per_user: int | None, metrics: Metrics) -> None:
        self.max_queue = max_queue
        self.per_user = PerUserLimit(
            "generations on the embedded model", min(max_queue_per_user or max_queue, max_queue)
        )
        self.in_queue = 0
        self._metrics = metrics

    def admit(self, user: str | None) -> contextlib.ExitStack:
        """The request's place, held until the returned stack is closed; raises if there is no room."""
        if self.in_queue >= self.max_queue:
            raise BackendBusy(f"The embedded model has {self.in_queue} requests queued; retry shortly.", 2)
        holds = contextlib.ExitStack()
        self.in_queue += 1
        self._metrics.queue_depth.inc()
        holds.callback(self._leave)
        if user is not None:
            try:
                holds.enter_context(self.per_user.hold(user))
            except BaseException:
                holds.close()
                raise
        return holds

    def _leave(self) -> None:
        self.in_queue -= 1
        self._metrics.queue_depth.dec()

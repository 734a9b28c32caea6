"""LastFailure: the internet tools' shared memory of why their last call failed."""

from __future__ import annotations

from backend.tools.base import Availability
from backend.tools.internet.failure_memory import LastFailure


def test_a_failure_is_reported_until_a_call_succeeds() -> None:
    memory = LastFailure()
    assert memory.availability() == Availability(True)

    memory.failed("cannot connect to Wikipedia at 127.0.0.1:9")
    assert memory.availability() == Availability(True, "last call failed: cannot connect to Wikipedia at 127.0.0.1:9")

    memory.failed("HTTP 500")
    assert memory.availability() == Availability(True, "last call failed: HTTP 500")

    memory.succeeded()
    assert memory.availability() == Availability(True)

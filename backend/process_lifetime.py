"""Child processes that cannot outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def stop_when_parent_dies(stop_signal: int = signal.SIGTERM) -> None:
    """In the child before exec (`preexec_fn`): the kernel sends `stop_signal` when the parent ends, however it
    ends, even by SIGKILL (Linux). It fires when the forking thread ends, so fork from a long-lived thread."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, stop_signal)

"""Kill a child process at a chosen point, for the tests of interrupted jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(
    proc: subprocess.Popen, ready: Callable[[], bool], what: str, limit_s: float = 60
) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds, and check that the kill ended it.

    Fails if ``proc`` ends by itself first, or if ``ready()`` does not hold within
    ``limit_s`` seconds; ``proc`` is killed and reaped either way.
    """
    deadline = time.monotonic() + limit_s
    try:
        while not ready():
            assert proc.poll() is None, f"{what} ended before it could be killed"
            assert time.monotonic() < deadline, f"{what} did not get there in {limit_s:g} s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()  # a no-op once it is dead; otherwise an assertion above failed
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

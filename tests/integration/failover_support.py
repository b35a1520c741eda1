"""Shared pieces of the failover tests (sensing partitions, camera leases): hub
processes started by name, their logs, waiting, and stopping them all."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def log_tail(tmp: Path, name: str) -> str:
    """The end of process ``name``'s log, for an assertion's message."""
    return (tmp / f"{name}.log").read_text(errors="replace")[-3000:]


def stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process still running, then wait for each (a kill after 20 s)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()

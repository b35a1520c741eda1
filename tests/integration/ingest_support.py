"""Shared pieces of the ingest fault and fuzz tests: a dedicated broker, ingest
processes, waiting."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from hub.config import Site
from hub.embedded import start_mosquitto
from hub.services import Broker

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def dedicated_broker(workdir: Path) -> Iterator[Broker]:
    """A Mosquitto of our own with the project's broker settings: the machine's
    shared one runs Mosquitto's defaults, which keep only 1000 unacknowledged
    messages per client and drop QoS 1 messages past that - a loss no ingest can
    prevent, and not what the fault tests are about."""
    b = start_mosquitto(workdir)
    try:
        yield b
    finally:
        b.stop()


def wait_for(pred: Callable[[], bool], timeout: float = 30.0, every: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()


def write_site(site: Site, path: Path) -> Path:
    path.write_text(yaml.safe_dump(site.model_dump(mode="json", exclude_defaults=True),
                                   allow_unicode=True), encoding="utf-8")
    return path


class IngestProcess:
    """``python -m hub.ingest`` in a subprocess, its stdout read by a thread."""

    def __init__(self, *, db_url: str, broker: Broker, site_file: Path, client_id: str,
                 group: str, batch_wait_ms: int = 20) -> None:
        self.client_id = client_id
        cmd = [sys.executable, "-m", "hub.ingest", "--db", db_url, "--mqtt",
               f"mqtt://{broker.host}:{broker.port}", "--site", str(site_file),
               "--client-id", client_id, "--group", group,
               "--batch-wait-ms", str(batch_wait_ms), "--log-level", "WARNING",
               "--session-expiry-s", "600"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_ready(self, timeout: float = 30.0) -> None:
        try:
            first = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"ingest {self.client_id} not ready: {''.join(self.stderr[-20:])}"
            ) from None
        assert first.get("ready"), first

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> dict:
        """SIGTERM; returns the stats line the process prints on its way out."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        try:
            return self.lines.get(timeout=5)
        except queue.Empty:
            raise AssertionError(
                f"ingest {self.client_id} printed no stats: {''.join(self.stderr[-20:])}"
            ) from None

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

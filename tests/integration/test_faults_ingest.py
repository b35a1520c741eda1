"""Faults under load, each ending with stored == sent and no duplicates:
an ingest process killed with SIGKILL and restarted, PostgreSQL unreachable for 30 s,
and two ingest processes sharing one subscription."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from hub.ingest.service import Ingest
from hub.services import Broker, free_port
from hub.store import readings as store
from hubtools import loadgen
from tests.integration.ingest_support import IngestProcess, dedicated_broker, wait_for, write_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with dedicated_broker(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


def check_all_stored(db_url: str, devices: list[str], seqs: range) -> None:
    with psycopg.connect(db_url) as c:
        keys = store.message_keys(c, devices)["telemetry"]
        want = {(d, s) for d in devices for s in seqs}
        assert keys == want, f"missing {len(want - keys)}, unexpected {len(keys - want)}"
        assert store.count_readings(c, devices) == loadgen.expected_readings(devices, seqs)
        assert store.duplicate_rows(c) == 0


def stored(db_url: str, devices: list[str]) -> int:
    with psycopg.connect(db_url) as c:
        return store.count_messages(c, devices)


def publish_in_background(broker: Broker, site_id: str, devices: list[str], seqs: range,
                          rate: float) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        out["result"] = loadgen.publish_telemetry(broker, site_id, devices, seqs, rate=rate)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_sigkill_mid_stream_then_restart_loses_nothing(db_url, own_broker, site_id, tmp_path):
    site = loadgen.make_site(site_id, 20)
    site_file = write_site(site, tmp_path / "site.yaml")
    devices = [d.id for d in site.devices]
    seqs = range(150)  # 3000 messages at 1000/s
    cid = f"ing-{site_id}"
    p = IngestProcess(db_url=db_url, broker=own_broker, site_file=site_file, client_id=cid,
                      group=site_id)
    p2 = None
    try:
        p.wait_ready()
        pub, out = publish_in_background(own_broker, site_id, devices, seqs, rate=1000)
        assert wait_for(lambda: stored(db_url, devices) > 300, 20)
        p.kill()
        at_kill = stored(db_url, devices)
        assert 0 < at_kill < len(devices) * len(seqs), "the kill must land mid-stream"
        time.sleep(1.0)  # messages keep coming while no ingest runs
        p2 = IngestProcess(db_url=db_url, broker=own_broker, site_file=site_file,
                           client_id=cid, group=site_id)
        p2.wait_ready()
        pub.join(60)
        assert out["result"].sent == len(devices) * len(seqs)
        assert wait_for(lambda: stored(db_url, devices) == out["result"].sent, 60)
        stats = p2.terminate()
        check_all_stored(db_url, devices, seqs)
        assert stats["rejected_total"] == 0
    finally:
        p.ensure_stopped()
        if p2:
            p2.ensure_stopped()


def test_two_processes_share_the_subscription(db_url, own_broker, site_id, tmp_path):
    site = loadgen.make_site(site_id, 10)
    site_file = write_site(site, tmp_path / "site.yaml")
    devices = [d.id for d in site.devices]
    seqs = range(200)
    procs = [IngestProcess(db_url=db_url, broker=own_broker, site_file=site_file,
                           client_id=f"ing{i}-{site_id}", group=site_id) for i in range(2)]
    try:
        for p in procs:
            p.wait_ready()
        res = loadgen.publish_telemetry(own_broker, site_id, devices, seqs)
        assert wait_for(lambda: stored(db_url, devices) == res.sent, 60)
        stats = [p.terminate() for p in procs]
        check_all_stored(db_url, devices, seqs)
        shares = [s.get("stored", 0) for s in stats]
        assert all(n > 0.2 * res.sent for n in shares), shares  # both did real work
        assert sum(shares) == res.sent
        assert sum(s.get("duplicates", 0) for s in stats) == 0
    finally:
        for p in procs:
            p.ensure_stopped()


class CuttableProxy:
    """A TCP proxy to PostgreSQL that can cut every connection and refuse new ones,
    as a database outage looks to a client, without touching the shared server."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.up = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        assert started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            started.set()
            await self._server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not self.up:
            w.close()
            return
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        self._writers |= {w, uw}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))
        self._writers -= {w, uw}

    def cut(self) -> None:
        def do() -> None:
            self.up = False
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(do)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(lambda: setattr(self, "up", True))

    def close(self) -> None:
        async def shutdown() -> None:
            self.up = False
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._thread.join(5)


def test_database_outage_of_30_s_under_load(db_url, own_broker, site_id):
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(db_url)
    proxy = CuttableProxy(u.hostname or "127.0.0.1", u.port or 5432)
    via_proxy = urlunsplit((u.scheme, f"{u.username}@127.0.0.1:{proxy.port}", u.path, "", ""))
    site = loadgen.make_site(site_id, 10)
    devices = [d.id for d in site.devices]
    seqs = range(400)  # 4000 messages at 100/s: 40 s of load
    ing = Ingest(db_url=via_proxy, broker=own_broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, batch_wait_ms=20, session_expiry_s=600, retry_max_s=2.0)
    ing.start()
    try:
        assert ing.wait_connected(10)
        pub, out = publish_in_background(own_broker, site_id, devices, seqs, rate=100)
        assert wait_for(lambda: stored(db_url, devices) > 200, 20)
        proxy.cut()
        cut_at = stored(db_url, devices)
        time.sleep(30)
        during = stored(db_url, devices)
        assert during == cut_at, "nothing can be stored while the database is unreachable"
        assert ing.stats()["db_errors"] > 0
        assert ing.stats()["pending"] > 1000  # held, unacknowledged, not dropped
        proxy.restore()
        pub.join(60)
        assert wait_for(lambda: stored(db_url, devices) == out["result"].sent, 60)
        check_all_stored(db_url, devices, seqs)
        assert ing.stats()["rejected_total"] == 0
    finally:
        ing.stop()
        proxy.close()

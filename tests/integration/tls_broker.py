"""A real Mosquitto with TLS listeners and a test CA made with openssl (not a test
module): one listener with a server certificate only, one that also requires a client
certificate signed by the CA. The server certificate is issued for 127.0.0.1 and
localhost."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hub.embedded import _terminate, _wait_tcp
from hub.services import free_port
from tests.integration.secure_broker import mosquitto_exe


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    return d / "ca.crt", d / "ca.key"


def issue(d: Path, ca: tuple[Path, Path], name: str, *, server: bool) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: for 127.0.0.1 and localhost when ``server``."""
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr), cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                   if server else "extendedKeyUsage=clientAuth\n", encoding="ascii")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt), cwd=d)
    return crt, key


@dataclass
class TlsBroker:
    port: int  # TLS, server certificate only
    mutual_port: int  # TLS, a client certificate signed by the CA required
    ca: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of this broker's
    log: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None


def openssl_missing() -> str | None:
    if shutil.which("openssl") is None:
        return "openssl is not installed (it makes the test CA)"
    if mosquitto_exe() is None:
        return "mosquitto is not installed"
    return None


def start_tls_broker(workdir: Path) -> TlsBroker:
    exe = mosquitto_exe()
    assert exe is not None
    certs = workdir / "certs"
    ca = make_ca(certs, "hub-test-ca")
    server = issue(certs, ca, "broker", server=True)
    client = issue(certs, ca, "hub-client", server=False)
    other = make_ca(workdir / "other", "another-ca")
    port, mutual = free_port(), free_port()
    log = workdir / "mosquitto.log"
    lines = [
        "per_listener_settings false",
        "allow_anonymous true",
        "persistence false",
        f"log_dest file {log}",
        "log_type all",
    ]
    for p, require in ((port, False), (mutual, True)):
        lines += [f"listener {p} 127.0.0.1", f"cafile {ca[0]}", f"certfile {server[0]}",
                  f"keyfile {server[1]}", "tls_version tlsv1.2",
                  f"require_certificate {'true' if require else 'false'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto', which cannot read these
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="ascii")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for p in (port, mutual):
        _wait_tcp(proc, "127.0.0.1", p, 10, f"mosquitto ({conf})", log)
    return TlsBroker(port, mutual, ca[0], client[0], client[1], other[0], log, proc)

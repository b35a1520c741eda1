"""A real Mosquitto run with the project's production config, ``deploy/mosquitto/
mosquitto.conf``, and the credentials ``hub-edge credentials`` generates for a site
(not a test module).

The file is used as it is; only what names the host is replaced: each listener gets
a free port on 127.0.0.1, ``/etc/mosquitto/hub/`` becomes the generated directory,
persistence and the log go to the work directory. Which listener is the hub's and
which the devices' is read from the file: the hub's is the one whose password file is
``hub.passwd`` (with a single listener, both are that one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edge.credentials import make_credentials
from hub.config import Site
from hub.embedded import _sbin, _terminate, _wait_tcp
from hub.services import Broker, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
CRED_DIR_IN_CONF = "/etc/mosquitto/hub/"


def mosquitto_exe() -> str | None:
    return shutil.which("mosquitto") or _sbin("mosquitto")


@dataclass
class SecureBroker:
    devices: Broker  # where devices connect (no credentials in it)
    hub: Broker  # where the hub connects, with the hub user's credentials
    passwords: dict[str, str]
    cred_dir: Path
    log: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc)
            self._proc = None


def render(text: str, cred_dir: Path, workdir: Path, *, as_root: bool
           ) -> tuple[str, list[int], int | None, int | None]:
    """The config with local paths and free ports; the listeners' ports in order, the
    hub's listener and the devices' (None when the file does not say)."""
    out: list[str] = []
    ports: list[int] = []
    hub_port = dev_port = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            out.append(line)
            continue
        key, _, rest = s.partition(" ")
        if key == "listener":
            ports.append(free_port())
            out.append(f"listener {ports[-1]} 127.0.0.1")
            continue
        if key in ("password_file", "acl_file"):
            rest = rest.replace(CRED_DIR_IN_CONF, f"{cred_dir}/")
            if key == "password_file" and ports:
                if rest.endswith("/hub.passwd"):
                    hub_port = ports[-1]
                else:
                    dev_port = ports[-1]
        elif key == "persistence_location":
            rest = f"{workdir}/"
        elif key == "log_dest":
            rest = f"file {workdir / 'mosquitto.log'}"
        elif key == "user":
            continue
        out.append(f"{key} {rest}")
    if as_root and hasattr(os, "geteuid") and os.geteuid() == 0:
        # As in hub.embedded: as root Mosquitto drops to 'mosquitto', which cannot
        # write the test's work directory.
        out.append("user root")
    return "\n".join(out) + "\n", ports, hub_port, dev_port


def start_secure_broker(workdir: Path, site: Site, *, as_root: bool = True,
                        cred_dir: Path | None = None) -> SecureBroker:
    exe = mosquitto_exe()
    assert exe is not None, "mosquitto is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    cred_dir = cred_dir or workdir / "cred"
    pw = make_credentials(site, cred_dir)
    conf_text, ports, hub_port, dev_port = render(DEPLOY_CONF.read_text(encoding="utf-8"),
                                                  cred_dir, workdir, as_root=as_root)
    conf = workdir / "mosquitto.conf"
    conf.write_text(conf_text, encoding="utf-8")
    log = workdir / "mosquitto.log"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for p in ports:
        _wait_tcp(proc, "127.0.0.1", p, 10, f"mosquitto ({conf})", log)
    dev_port = dev_port or ports[0]
    hub_port = hub_port or dev_port
    return SecureBroker(
        devices=Broker("127.0.0.1", dev_port, kind="mosquitto"),
        hub=Broker("127.0.0.1", hub_port, "hub", pw["hub"], kind="mosquitto"),
        passwords=pw, cred_dir=cred_dir, log=log, _proc=proc)

"""MQTT session identity. With any device's credentials and ``client_id='hub-ingest'``,
``clean_start=False``, Mosquitto used to kick the hub and hand the attacker the hub's
queued QoS 1 messages; a device could likewise kick another device and make the
broker publish that device's Last Will (a false offline). Issue 11, hole 3.

The class: a client id is bound to a user name at the broker. These tests run a real
Mosquitto with the production config (``deploy/mosquitto/mosquitto.conf``) and the
files ``hub-edge credentials`` generates, and try the hijacks as a device."""

from __future__ import annotations

import grp
import json
import os
import stat
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from edge.credentials import make_credentials
from hub.config import load_site
from hub.ingest.service import Ingest
from hub.protocol import DeviceState, Event, EventType, Kind, Status, encode, topic
from hub.services import Broker
from hub.store import readings as store
from tests.integration.ingest_support import wait_for
from tests.integration.secure_broker import REPO, SecureBroker, mosquitto_exe, start_secure_broker
from tests.integration.security_support import RecordingClient

pytestmark = pytest.mark.skipif(mosquitto_exe() is None, reason="mosquitto not installed")

SITE = REPO / "deploy" / "sites" / "demo.yaml"
ATTACKER = "smoke-6-3-601"  # any device's credentials will do
SENDER = "pir-3-2-501"


@pytest.fixture
def secure(tmp_path: Path):  # type: ignore[no-untyped-def]
    sb = start_secure_broker(tmp_path / "broker", load_site(SITE))
    yield sb
    sb.stop()


def client(b: Broker, cid: str, user: str | None, password: str | None, *,
           clean_start: bool = True, will: tuple[str, bytes] | None = None) -> RecordingClient:
    """A recording client on ``b`` with a persistent session (an hour) that reconnects
    quickly."""
    return RecordingClient(b.host, b.port, cid, user, password, clean_start=clean_start,
                           will=will)


def _event(device: str, seq: int) -> bytes:
    return encode(Event(device=device, seq=seq, ts=datetime.now(UTC), type=EventType.MOTION))


def test_a_device_cannot_take_the_hubs_session(secure: SecureBroker, db_url: str) -> None:
    """The probe: the hub's ingest holds its persistent session; a device connects as
    'hub-ingest' with clean_start=False while another device sends 40 events. The
    hub keeps its session and stores all 40; the attacker gets none of them."""
    site = load_site(SITE)
    pw = secure.passwords
    ing = Ingest(db_url=db_url, broker=secure.hub, site=site, client_id="hub-ingest",
                 shared_group="hub", session_expiry_s=600, batch_wait_ms=10)
    ing.start()
    attackers: list[RecordingClient] = []
    sender = None
    try:
        assert ing.wait_connected(10)
        # The hub's other clients, as one hub process runs them, connected at once.
        others = [client(secure.hub, cid, "hub", pw["hub"])
                  for cid in ("hub-ingest-vision-0", "hub-notify-1a2b3c4d")]
        assert all(o.accepted for o in others)
        # Every hub client id, tried by a device on the devices' listener ...
        for cid in ("hub-ingest", "hub-ingest-vision-0", "hub-notify-1a2b3c4d"):
            attackers.append(client(secure.devices, cid, ATTACKER, pw[ATTACKER],
                                    clean_start=False))
        # ... and on the hub's listener, where a device's credentials are refused.
        if secure.hub.port != secure.devices.port:
            inside = client(secure.hub, "hub-ingest", ATTACKER, pw[ATTACKER], clean_start=False)
            assert not inside.accepted
            inside.close()
        sender = client(secure.devices, "edge-demo-pir", SENDER, pw[SENDER])
        assert sender.accepted
        for seq in range(1, 41):
            sender.c.publish(topic("demo", SENDER, Kind.EVENT), _event(SENDER, seq), qos=1)
        assert wait_for(lambda: ing.stats().get("events_stored", 0) >= 40, 20), ing.stats()
        time.sleep(0.5)
        assert ing.stats()["events_stored"] == 40
        assert ing.stats()["connected"]
        assert all(not o.disconnects for o in others), "a hub client was kicked"
        assert [a.messages for a in attackers] == [[], [], []]
        with psycopg.connect(db_url) as conn:
            assert store.count_events(conn, [SENDER]) == 40
        for o in others:
            o.close()
    finally:
        for a in attackers:
            a.close()
        if sender is not None:
            sender.close()
        ing.stop()


def test_a_device_cannot_kick_another_device_and_fake_its_last_will(
    secure: SecureBroker,
) -> None:
    pw = secure.passwords
    victim_id = "sos-3-2-501"
    status = topic("demo", victim_id, Kind.STATUS)
    watcher = client(secure.hub, "hub-watch", "hub", pw["hub"])
    watcher.c.subscribe(status, qos=1)
    time.sleep(0.3)
    will = encode(Status(device=victim_id, seq=2, ts=datetime.now(UTC),
                         state=DeviceState.OFFLINE, reason="lwt"))
    victim = client(secure.devices, "edge-demo-sos-3-2-501-abc123", victim_id, pw[victim_id],
                    will=(status, will))
    attackers: list[RecordingClient] = []
    try:
        assert victim.accepted
        # The victim's own client id, and its user name (what the broker binds to).
        for cid in ("edge-demo-sos-3-2-501-abc123", victim_id):
            attackers.append(client(secure.devices, cid, ATTACKER, pw[ATTACKER]))
        time.sleep(1.0)
        assert not victim.disconnects, "the victim was kicked off"
        offline = [p for t, p in watcher.messages
                   if json.loads(p).get("state") == "offline"]
        assert offline == [], "the victim's Last Will was published"
    finally:
        for a in attackers:
            a.close()
        victim.close()
        watcher.close()


def test_credentials_keep_hub_and_devices_apart(tmp_path: Path) -> None:
    site = load_site(SITE)
    pw = make_credentials(site, tmp_path / "cred")
    dev_users = [ln.split(":", 1)[0] for ln in
                 (tmp_path / "cred" / "passwd").read_text().splitlines()]
    hub_users = [ln.split(":", 1)[0] for ln in
                 (tmp_path / "cred" / "hub.passwd").read_text().splitlines()]
    assert hub_users == ["hub"]
    # Devices, and the Zigbee2MQTT bridge of the site file's adapters: (its own user).
    assert sorted(dev_users) == sorted([d.id for d in site.devices]
                                       + [a.mqtt_user for a in site.adapters])
    assert "zigbee2mqtt" in dev_users
    assert set(pw) == {"hub", *dev_users}
    # The hub's client ids start with "hub": no device may be named so.
    raw = site.model_dump(mode="json")
    raw["devices"][0]["id"] = "hub-ingest"
    from hub.config import Site

    with pytest.raises(ValueError, match="hub"):
        make_credentials(Site.model_validate(raw), tmp_path / "other")


def test_the_hubs_client_id_is_reserved(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from hub.config import Settings

    assert Settings().mqtt_client_id.startswith("hub")
    monkeypatch.setenv("HUB_MQTT_CLIENT_ID", "ingest-1")
    with pytest.raises(ValidationError, match="hub"):
        Settings()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to start Mosquitto as its own user")
def test_mosquitto_as_its_own_user_reads_the_generated_files() -> None:
    """As root, Mosquitto drops to the 'mosquitto' user before it reads the password
    and ACL files: files only root can read stop it from starting."""
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto group")
    top = Path(tempfile.mkdtemp(prefix="hub-cred-"))
    try:
        top.chmod(0o755)  # tmp_path's parents are root's alone
        work = top / "broker"
        work.mkdir()
        work.chmod(0o777)  # the broker writes its log and persistence here
        sb = start_secure_broker(work, load_site(SITE), as_root=False,
                                 cred_dir=top / "cred")
        try:
            for name in ("passwd", "acl", "hub.passwd", "hub.acl"):
                st = (top / "cred" / name).stat()
                assert stat.S_IMODE(st.st_mode) & 0o007 == 0, name  # not world-readable
            hub = client(sb.hub, "hub-perm", "hub", sb.passwords["hub"])
            dev = client(sb.devices, "x", SENDER, sb.passwords[SENDER])
            assert hub.accepted and dev.accepted
            hub.close()
            dev.close()
        finally:
            sb.stop()
    finally:
        import shutil

        shutil.rmtree(top, ignore_errors=True)

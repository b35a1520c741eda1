"""``hub demo``: the whole loop on one machine, with nothing installed beforehand.

Starts (or finds) a broker and PostgreSQL, the hub with every role, simulated edge
agents for the sensors of ``deploy/sites/demo.yaml`` driven by a scripted scenario,
camera agents playing real footage, and two demo "people": an operator who registers
and dispatches, and a grid worker who accepts and handles one incident inside the
grid, while another incident is left alone and escalates up to the street.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hub import demodb
from hub.alerts.notifiers.channels import SECRET_PREFIX
from hub.categories import CategoryConfig
from hub.config import CameraConfig, Settings, Site, load_site
from hub.domain import Category, IncidentState
from hub.services import Broker, Postgres, ensure_broker, ensure_postgres, tcp_open
from hub.store import readings as store

log = logging.getLogger("hub.demo")

# The demo shows the loop on these: the smoke alarm is handled inside its grid,
# the SOS is left unanswered so that it escalates up to the street.
HANDLED_IN_GRID = Category.SMOKE
MEDIA_DIR = Path("var") / "media"
LEFT_TO_ESCALATE = Category.SOS
# The longest the demo waits for the hub's MQTT subscriptions before it gives up.
HUB_READY_TIMEOUT_S = 120.0


class HubNotReady(RuntimeError):
    """The hub's MQTT consumers were not all subscribed within the wait."""


def wait_hub_ready(mqtt: Any, timeout: float, *, poll_s: float = 0.05,
                   monotonic: Any = time.monotonic, sleep: Any = time.sleep) -> float:
    """Wait until the process's MQTT connection is up and every consumer's
    subscriptions are acknowledged; returns the seconds waited.

    ``HubNode.start`` returns once the connection is started, not once the broker has
    acknowledged the subscriptions. The demo gives each run a fresh client id and
    shared group, so a broker drops what the sensors publish before that: the
    scenario's history (the inactive household's past) lost that way leaves the
    hub no last sign of life, and no inactivity incident comes within the run. On a
    cold machine (first imports compiling, a loaded CPU) the gap is long enough for
    the edge agent to publish into it."""
    t0 = monotonic()
    while True:
        st = mqtt.stats()
        consumers = st["consumers"]
        if st["connected"] and consumers and all(consumers.values()):
            return monotonic() - t0
        if monotonic() - t0 >= timeout:
            waiting = sorted(n for n, ok in consumers.items() if not ok)
            raise HubNotReady(
                f"the hub's MQTT consumers were not subscribed within {timeout:g} s"
                f" (connected: {st['connected']}; waiting: {', '.join(waiting) or 'none'})")
        sleep(poll_s)


def scaled_site(site: Site, sla_scale: float) -> Site:
    """The same site with every category's time limits multiplied by ``sla_scale``,
    so escalation can be watched in minutes instead of hours."""
    if sla_scale == 1.0:
        return site
    cats = {}
    for c in site.registry:
        own = site.categories.get(c.code) or CategoryConfig()
        cats[c.code] = own.model_copy(update={"accept_s": max(5.0, c.accept_s * sla_scale),
                                              "handle_s": max(5.0, c.handle_s * sla_scale)})
    # The family's answer windows too (not under 10 s, the site file's floor).
    family = site.family.model_copy(update={
        "window_s": max(10.0, site.family.window_s * sla_scale)})
    return site.model_copy(update={"categories": cats, "family": family})


class DemoStaff:
    """Plays the operator and the grid worker through the same service calls the
    console and the phone view make."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.done: set[int] = set()
        self.actions: Counter[str] = Counter()

    def _worker_of(self, grid_code: str) -> str:
        people = self.node.tree.recipients(grid_code, 0, self.node.clock.now())
        return people[0].person_id if people else "demo-worker"

    def step(self) -> None:
        from hub.store.incidents import Filters, list_incidents

        with self.node.pool.connection() as conn:
            items, _ = list_incidents(
                conn, Filters(category=(HANDLED_IN_GRID.value,), state=("open",)), limit=20)
        for inc in items:
            if inc.id in self.done or not inc.state.is_open:
                continue
            self._handle(inc)

    def _handle(self, inc: Any) -> None:
        svc = self.node.alerts
        worker = self._worker_of(inc.grid_code)
        plan = [
            (IncidentState.REPORTED, "register", "operator", {}),
            (IncidentState.REGISTERED, "dispatch", "operator", {"assignee": worker}),
            (IncidentState.DISPATCHED, "accept", worker, {}),
            (IncidentState.ACCEPTED, "handle", worker,
             {"reason": "到场查看：厨房烧水干锅，已关火通风，老人无恙"}),
            # A life-safety category is closed after an on-site check (核查) by
            # someone other than the handler.
            (IncidentState.HANDLED, "verify", "operator",
             {"reason": "现场核查：已关火通风，无明火隐患"}),
            (IncidentState.HANDLED, "close", "operator",
             {"reason": "核查：现场已处置，回访老人确认安全"}),
        ]
        state = inc.state
        for from_state, action, actor, kw in plan:
            if state != from_state:
                continue
            try:
                changed = svc.transition(inc.id, action, actor, source="demo", **kw)
            except Exception as e:  # noqa: BLE001 — the demo goes on; the log says why
                log.warning("demo action failed", extra={"incident": inc.id, "action": action,
                                                         "error": str(e)})
                return
            state = changed.incident.state
            self.actions[action] += 1
            log.info("demo action", extra={"incident": inc.id, "action": action, "actor": actor})
        if state == IncidentState.CLOSED:
            self.done.add(inc.id)


ZIGBEE_SUMMARY = ("battery", "linkquality", "contact", "occupancy")


def summary(node: Any, edge_stats: dict[str, Any] | None = None) -> dict[str, Any]:
    with node.pool.connection() as conn:
        readings = store.count_readings(conn)
        online = dict(conn.execute(
            "SELECT state, count(*) FROM presence GROUP BY state").fetchall())
        by_cat_state: dict[str, dict[str, int]] = {}
        for cat, state, n in conn.execute(
                "SELECT category, state, count(*) FROM incidents GROUP BY 1, 2 ORDER BY 1, 2"):
            by_cat_state.setdefault(cat, {})[state] = n
        alarms = dict(conn.execute(
            "SELECT i.category, count(*) FROM incident_alarms a JOIN incidents i"
            " ON i.id = a.incident_id GROUP BY 1").fetchall())
        esc = conn.execute(
            "SELECT i.category, max(i.escalation_level), count(*) FROM audit a"
            " JOIN incidents i ON i.id = a.incident_id WHERE a.action = 'escalate'"
            " GROUP BY 1").fetchall()
        # What the Zigbee2MQTT-fed sensors report (the device page shows the same).
        family = dict(conn.execute(
            "SELECT action, count(*) FROM audit WHERE action IN"
            " ('family_notified', 'family_answer') GROUP BY 1").fetchall())
        zigbee = {dev: {m: v for m, (_ts, v) in store.latest_readings(conn, dev).items()
                        if m in ZIGBEE_SUMMARY}
                  for a in node.site.adapters for dev in a.devices.values()}
    known = {d.id for d in node.site.devices}
    seen = online.get("online", 0) + online.get("offline", 0)
    out: dict[str, Any] = {
        "readings_stored": readings,
        "devices": {"online": online.get("online", 0),
                    "offline": online.get("offline", 0) + max(0, len(known) - seen)},
        "rejected": node.ingest.stats().get("rejected", {}) if node.ingest else {},
        "alarms": alarms,
        "incidents": {c: {"total": sum(s.values()), **s} for c, s in by_cat_state.items()},
        "escalations": {"total": sum(r[2] for r in esc),
                        "by_category": {r[0]: {"count": r[2], "max_level": r[1]} for r in esc}},
        "zigbee2mqtt": zigbee,
        # The family-first cascade (hub.family): contacts texted, and their answers.
        "contacts_notified": family.get("family_notified", 0),
        "contact_answers": family.get("family_answer", 0),
    }
    if edge_stats:
        out["edge"] = edge_stats
    return out


def _broker(settings: Settings, workdir: Path) -> Broker:
    if settings.mqtt_url:
        return ensure_broker(settings.mqtt_url, workdir)
    if tcp_open("127.0.0.1", 1883):
        log.info("using the MQTT broker already running on 127.0.0.1:1883")
        return ensure_broker("mqtt://127.0.0.1:1883", workdir)
    return ensure_broker(None, workdir)


def run_demo(settings: Settings, duration: float | None, as_json: bool, sla_scale: float = 0.1,
             video: bool = True) -> int:
    from hub import logs

    logs.setup("WARNING" if as_json else settings.log_level, json_lines=False)
    data_dir = Path(settings.data_dir) / "demo" if settings.data_dir == Path("var") else Path(
        settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    site = scaled_site(load_site(settings.site_file), sla_scale)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    broker = _broker(settings, data_dir / "broker")
    pg: Postgres = ensure_postgres(settings.database_url or None, data_dir / "pg")
    run_id = time.strftime("%Y%m%d%H%M%S")
    db_url = pg.url
    if not settings.database_url:
        db_url = _fresh_database(pg.url, f"hub_demo_{run_id}")
    cleanups: list[Any] = [pg.stop, broker.stop]
    site = _demo_family(site, cleanups)
    try:
        demodb.claim(db_url, run_id)
    except demodb.NotDemoDatabase as e:
        print(f"hub demo: {e}", file=sys.stderr)
        for c in cleanups:
            c()
        return 2
    node = None
    edge: list[Any] = []
    try:
        from hub.node import HubNode

        # Before the hub starts: on a fresh machine fetching and composing the footage
        # takes a while, and both clocks must start after it - the hub's, which counts
        # a device that has not been heard from as offline, and the sensors' scenario
        # clock (an SOS at +20 s, a sensor dropping off at +65 s).
        media = _prepare_media(video)

        # Each demo run has a fresh database, so it gets its own MQTT session and
        # shared-subscription group too: a shared development broker may hold another
        # run's (or another hub's) queued messages under the default names.
        # The demo is for looking around, so it serves the API's description too.
        node_settings = settings.model_copy(update={
            "data_dir": data_dir, "mqtt_client_id": f"hub-demo-{run_id}",
            "shared_group": f"demo{run_id}", "api_docs": True})
        node = HubNode(settings=node_settings, site=site, broker=broker, database_url=db_url)
        node.start()
        _print_logins(node, as_json)
        # The scenario's clock starts when the hub can hear it, not at process start.
        try:
            waited = wait_hub_ready(node.mqtt, HUB_READY_TIMEOUT_S)
        except HubNotReady as e:
            print(f"hub demo: {e}", file=sys.stderr)
            return 1
        log.info("hub ready, starting the scenario", extra={"waited_s": round(waited, 3)})
        edge = _start_edge(site, broker, data_dir / "edge" / run_id, media)
        staff = DemoStaff(node)
        t0 = time.monotonic()
        if not as_json:
            print(f"hub demo: console on http://{settings.http_host}:{settings.http_port}/"
                  f" — Ctrl-C to stop", file=sys.stderr)
        while not stop.is_set():
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            stop.wait(1.0)
            try:
                staff.step()
            except Exception:  # noqa: BLE001
                log.exception("demo staff step failed")
        node.alerts.flush(5)
        result = summary(node)
        result["demo_actions"] = dict(staff.actions)
        if as_json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(json.dumps(result, ensure_ascii=False, indent=2), file=sys.stderr)
        return 0
    finally:
        for a in edge:
            try:
                a.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping an edge agent failed")
        if node is not None:
            node.stop()
        for c in cleanups:
            c()


def _demo_family(site: Site, cleanups: list[Any]) -> Site:
    """The site's family channel pointed at the demo's own SMS gateway, where every
    resident's second emergency contact answers "on my way" through the link and the
    first never answers; the demo's secrets when the environment has none."""
    if site.family.channel is None:
        return site
    from hubtools.family_demo import DemoGateway

    answers = {s.emergency_contacts[1].phone: "on_my_way" for s in site.care_subjects
               if len(s.emergency_contacts) >= 2}
    gateway = DemoGateway(answers)
    cleanups.insert(0, gateway.close)
    channels = [c.model_copy(update={"url": gateway.url}) if c.name == site.family.channel
                else c for c in site.channels]
    os.environ.setdefault(SECRET_PREFIX + site.family.link_secret_env, secrets.token_urlsafe(32))
    for c in channels:
        for name in c.secrets():
            os.environ.setdefault(SECRET_PREFIX + name, secrets.token_urlsafe(16))
    return site.model_copy(update={"channels": channels})


def _fresh_database(server_url: str, name: str) -> str:
    import psycopg

    from hub.services import with_database

    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


def _print_logins(node: Any, as_json: bool) -> None:
    try:
        from hub.store.users import ensure_demo_users
    except ImportError:
        return
    with node.pool.connection() as conn:
        logins = ensure_demo_users(conn, node.site)
    if as_json:
        return
    print("demo logins (demo only; production has no default password):", file=sys.stderr)
    for username, password, role, scope in logins:
        print(f"  {username:<16} {password:<14} {role:<12} scope {scope or 'all'}",
              file=sys.stderr)


def _prepare_media(video: bool) -> dict[str, Path] | None:
    """The demo footage by source name (``demo:fall`` -> a file), built once and cached
    under var/media; None when the cameras must be left out."""
    if not video:
        return None
    from hubtools.demo_media import MediaUnavailable, fetch_demo_media

    try:
        return fetch_demo_media(MEDIA_DIR)
    except MediaUnavailable as e:
        log.error("demo cameras not started: %s", e)
        print(f"hub demo: the cameras are left out: {e}", file=sys.stderr)
        return None


def demo_cameras(site: Site, media: dict[str, Path]) -> list[tuple[str, CameraConfig]]:
    """The site's cameras with a source, a ``demo:NAME`` source replaced by its file: the
    camera agent plays files and streams, the demo tooling stays on this side."""
    out = []
    for d in site.devices:
        if d.kind != "camera" or d.camera is None or not d.camera.source:
            continue
        camera = d.camera
        if camera.source in media:
            camera = camera.model_copy(update={"source": str(media[camera.source])})
        out.append((d.id, camera))
    return out


def _start_edge(site: Site, broker: Broker, workdir: Path,
                media: dict[str, Path] | None) -> list[Any]:
    from edge.agent import EdgeAgent
    from edge.demo import demo_edge_config

    agents: list[Any] = [EdgeAgent(demo_edge_config(site, broker, workdir)).start()]
    if media is not None:
        from edge.camera import CameraAgent

        heartbeat = {d.id: d.heartbeat_s for d in site.devices}
        for device_id, camera in demo_cameras(site, media):
            a = CameraAgent(device_id, site.site.id, camera, broker,
                            heartbeat_s=heartbeat[device_id])
            a.start()
            agents.append(a)
    return agents

"""The edge agent: simulated (or injected) sensor messages -> spool -> one MQTT 5
connection per device.

Usable in-process (``EdgeAgent(cfg).start()`` ... ``.stop()``; threads) or through
``hub-edge run --config FILE``.

Time: messages carry *data time*. It starts at the scenario's ``start`` (default: now)
and runs at ``time_factor`` data seconds per wall second; with ``fast_forward`` the
scenario's span is replayed as fast as the spool and broker take it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from edge.alarms import spool_alarm
from edge.config import BRIDGE_SPOOL_KEY, EdgeConfig
from edge.link import DeviceLink
from edge.scenario import Scenario, load_scenario
from edge.simulation import Emission, Simulation
from edge.spool import Spool
from edge.zigbee2mqtt import BridgeLink, BridgeState, Publish
from hub.domain import Alarm
from hub.protocol import Event, EventType, Kind, Reading, Telemetry, encode, topic
from hub.services import parse_mqtt_url

log = logging.getLogger(__name__)

TICK_WALL_S = 0.2  # how often the simulation is advanced in real time
FF_STEP_S = 10.0  # data seconds per step when fast-forwarding
HISTORY_SLICE_S = 1800.0  # data seconds of history acknowledged before the next slice
HISTORY_SLICE_WAIT_S = 30.0
# The simulated Zigbee2MQTT bridge's messages are spooled under this key.
BRIDGE_KEY = BRIDGE_SPOOL_KEY


class EdgeAgent:
    def __init__(self, config: EdgeConfig, *, scenario: Scenario | None = None,
                 start: datetime | None = None, fast_forward: bool = False,
                 simulate: bool = True, wall: Callable[[], float] = time.monotonic) -> None:
        """``scenario`` overrides the config's scenario file. ``simulate=False`` runs
        no simulation: only what :meth:`emit` is given is sent (tests, bridges)."""
        self.cfg = config
        self.tz = ZoneInfo(config.timezone)
        if scenario is None and config.scenario is not None:
            scenario = load_scenario(config.scenario)
        self.scenario = scenario
        self.start_ts = (start or (scenario.start if scenario and scenario.start else None)
                         or datetime.now(UTC)).astimezone(self.tz)
        self.fast_forward = fast_forward
        self.simulate = simulate
        self._wall = wall
        self._wall0 = wall()
        self._ff_now = self.start_ts
        self.spool = Spool(config.spool, max_messages=config.spool_max_messages)
        b = parse_mqtt_url(config.broker)
        # Client ids stay the same across restarts of this agent (same spool) but differ
        # between installations, so two agents for one site never kick each other off.
        tag = hashlib.sha1(str(Path(config.spool).resolve()).encode()).hexdigest()[:6]
        self.links: dict[str, DeviceLink] = {}
        zigbee = [d for d in config.devices if d.zigbee2mqtt]
        # Devices behind a Zigbee2MQTT bridge share its one connection.
        self.bridge = BridgeState(config.zigbee2mqtt, zigbee, config.seed) if zigbee else None
        if self.bridge is not None:
            user, pw = config.bridge_credentials()
            self.links[BRIDGE_KEY] = BridgeLink(
                base_topic=self.bridge.base, site=config.site, device=BRIDGE_KEY, host=b.host,
                port=b.port, username=user, password=pw, spool=self.spool, clock=self.now,
                keepalive=config.keepalive_s, inflight=config.inflight,
                require_subscriber=config.require_subscriber, tls=b.tls,
                client_id=f"edge-{config.site}-zigbee2mqtt-{tag}")
        for d in config.devices:
            if d.zigbee2mqtt:
                continue
            user, pw = config.credentials(d)
            self.links[d.id] = DeviceLink(
                site=config.site, device=d.id, host=b.host, port=b.port, username=user,
                password=pw, spool=self.spool, clock=self.now, keepalive=config.keepalive_s,
                inflight=config.inflight, require_subscriber=config.require_subscriber,
                tls=b.tls, client_id=f"edge-{config.site}-{d.id}-{tag}")
        self.sim = (Simulation(config, scenario, self.start_ts, self.tz) if simulate else None)
        self.emitted = 0
        self.finished = threading.Event()  # fast-forward: the span has been spooled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._final: dict[str, int] | None = None

    # ------------------------------------------------------------ time

    def now(self) -> datetime:
        """The data clock."""
        if self.fast_forward:
            return self._ff_now
        elapsed = (self._wall() - self._wall0) * self.cfg.time_factor
        return self.start_ts + timedelta(seconds=elapsed)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> EdgeAgent:
        self._wall0 = self._wall()
        for link in self.links.values():
            link.start()
        if self.bridge is not None:
            self._spool_bridge(self.bridge.startup(), "event")
        if self.sim is not None:
            self._thread = threading.Thread(target=self._run, name="edge-sim", daemon=True)
            self._thread.start()
        log.info("edge agent started", extra={"site": self.cfg.site,
                                               "devices": len(self.links)})
        return self

    def _publish_history(self) -> None:
        """Send the scenario's history in time slices, each one acknowledged before
        the next is spooled. Devices publish over separate connections, so without
        this a device's reading from an hour ago could reach the hub before another
        device's from ten hours ago, and the hub, clocked by data time, would judge a
        household on a partial past."""
        assert self.sim is not None
        past = self.sim.history()
        if not past:
            return
        ordered = True
        i = 0
        while i < len(past) and not self._stop.is_set():
            end = past[i].ts + timedelta(seconds=HISTORY_SLICE_S)
            while i < len(past) and past[i].ts < end:
                self.emit(past[i])
                i += 1
            if ordered and not self.wait_drained(HISTORY_SLICE_WAIT_S):
                ordered = False
                log.warning("history not acknowledged in time; sending the rest unpaced",
                            extra={"site": self.cfg.site, "spooled": len(self.spool)})
        log.info("history published", extra={"messages": len(past), "ordered": ordered})

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        ts = [threading.Thread(target=link.stop, args=(timeout,)) for link in self.links.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout)
        self._final = self.stats()
        self.spool.close()
        log.info("edge agent stopped", extra={"site": self.cfg.site})

    def wait_connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        for link in self.links.values():
            if not link.connected.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def wait_drained(self, timeout: float = 30.0) -> bool:
        """Wait until every spooled message has been acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.spool) == 0:
                return True
            time.sleep(0.05)
        return len(self.spool) == 0

    def stats(self) -> dict[str, int]:
        if self._final is not None:
            return dict(self._final)
        s = {"emitted": self.emitted, "spooled": len(self.spool),
             "dropped_telemetry": self.spool.counter("dropped_telemetry")}
        for k in ("sent", "acked", "rejected", "connects", "connect_failures"):
            s[k] = sum(getattr(link.stats, k) for link in self.links.values())
        return s

    # ------------------------------------------------------------ messages

    def emit(self, e: Emission) -> int | None:
        """Spool one emission (or act on a control one); returns its seq."""
        if self.bridge is not None and e.device in self.bridge:
            # The bridge's own timers run first, so its messages keep their order.
            pubs = self.bridge.due(e.ts) + self.bridge.emit(e)
            with self._lock:
                self.emitted += 1
            return self._spool_bridge(pubs, "heartbeat" if e.event == "heartbeat" else "event")
        link = self.links.get(e.device)
        if link is None:
            raise KeyError(f"device {e.device!r} is not hosted by this agent")
        if e.kind == "control":
            (link.go_offline if e.event == "offline" else link.go_online)()
            log.info("device %s", e.event, extra={"device": e.device, "scenario": True})
            return None
        site, dev = self.cfg.site, e.device
        if e.kind == "telemetry":
            readings = [Reading(metric=m, value=v, unit=u) for m, v, u in e.readings]

            def build(seq: int) -> bytes:
                return encode(Telemetry(device=dev, seq=seq, ts=e.ts, readings=readings))

            kind, t = "telemetry", topic(site, dev, Kind.TELEMETRY)
        else:
            etype = EventType(e.event)

            def build(seq: int) -> bytes:
                return encode(Event(device=dev, seq=seq, ts=e.ts, type=etype, data=e.data))

            kind = "heartbeat" if etype is EventType.HEARTBEAT else "event"
            t = topic(site, dev, Kind.EVENT)
        _, seq = self.spool.put(dev, kind, t, build, qos=1)
        with self._lock:
            self.emitted += 1
        link.notify()
        if e.kind == "event" and e.event != "heartbeat":
            log.debug("event spooled", extra={"device": dev, "event": e.event, "seq": seq})
        return seq

    def raise_alarm(self, alarm: Alarm) -> int:
        """An alarm a detector running on this agent raised, for the hub's alarm inlet
        (``edge.alarms``): spooled and sent by its device's link."""
        link = self.links.get(alarm.device_id or "")
        if link is None:
            raise ValueError(f"alarm for {alarm.device_id!r}, a device this agent does not"
                             " host")
        row = spool_alarm(self.spool, self.cfg.site, alarm)
        link.notify()
        return row

    def _spool_bridge(self, pubs: list[Publish], kind: str) -> int | None:
        """Spool the bridge's messages (heartbeat reports may be dropped under
        pressure like any device's, state changes never)."""
        seq = None
        for p in pubs:
            _, seq = self.spool.put(BRIDGE_KEY, kind, p.topic, lambda _s, b=p.payload: b,
                                    qos=1, retain=p.retain)
        if pubs:
            self.links[BRIDGE_KEY].notify()
        return seq

    def _bridge_timers(self, now: datetime) -> None:
        if self.bridge is not None:
            self._spool_bridge(self.bridge.due(now), "event")

    def _run(self) -> None:
        assert self.sim is not None
        try:
            self._publish_history()
            if self.fast_forward:
                span = (self.scenario.span_s(self.start_ts, self.tz) if self.scenario else 3600)
                end = self.start_ts + timedelta(seconds=span)
                while not self._stop.is_set() and self._ff_now < end:
                    self._ff_now = min(end, self._ff_now + timedelta(seconds=FF_STEP_S))
                    for e in self.sim.advance(self._ff_now):
                        self.emit(e)
                    self._bridge_timers(self._ff_now)
                self.finished.set()
                log.info("fast-forward finished", extra={"emitted": self.emitted})
                return
            while not self._stop.is_set():
                now = self.now()
                for e in self.sim.advance(now):
                    self.emit(e)
                self._bridge_timers(now)
                self._stop.wait(TICK_WALL_S)
        except Exception:
            log.exception("simulation failed; the links keep sending what is spooled")

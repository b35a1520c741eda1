"""Device presence and the device-offline rule.

Presence is judged on when the hub *heard* a device (hub time: a device replaying
hours of spooled data is alive although its data is old) and on the device's own
Status messages (retained online/offline, the offline one its Last Will). A device
is offline when it stays silent for its offline period (``Presence.offline_after``:
``rules.health.{mains,battery}.offline_s`` by the device's power class, else
``heartbeat_s`` x ``rules.offline.missed_heartbeats``),
or one grace period after an offline Status if it does not come back; it is back
with its first data newer than the outage. Other rules ask this rule, through the
:class:`~hub.sensing.base.Presence` view, whether a household's sensors can see.

Dedup key: ``offline:{device}``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.config import DeviceConfigEntry
from hub.domain import Alarm, Category
from hub.protocol import DeviceState as WireState
from hub.protocol import Status
from hub.sensing.base import (
    Incoming,
    Repair,
    RuleBase,
    SensingContext,
    drop_impossible,
    iso,
    make_alarm,
)
from hub.sensing.state import Jsonable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PresenceState(Jsonable):
    last_seen: datetime | None = None  # newest data time from the device
    # When the hub last received anything from it (hub time). Liveness is judged on
    # this: a device replaying hours of spooled data is alive although its data is old.
    last_heard: datetime | None = None
    offline: bool = False
    offline_since: datetime | None = None
    offline_reason: str | None = None  # "heartbeat" | "status"
    # An offline Status (a Will or a clean shutdown) starts a grace of one heartbeat
    # period: a device that reconnects at once (a hub restart, a flapping link, the
    # stale retained status of its previous session) raises no maintenance incident.
    disconnected_since: datetime | None = None
    disconnect_reason: str | None = None
    disconnect_heard: datetime | None = None  # hub time the offline Status arrived
    # (ts, seq) of the latest Status applied: statuses are ordered by it, so a Last
    # Will from an earlier connection delivered late changes nothing.
    status_ts: datetime | None = None
    status_seq: int = -1
    back_online_at: datetime | None = None


class OfflineRule(RuleBase):
    name = "offline"

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.devices: dict[str, PresenceState] = {}
        self._periods: dict[str, timedelta] = {}

    # ------------------------------------------------------------ the Presence view

    def known(self, device_id: str) -> bool:
        return device_id in self.devices

    def last_seen(self, device_id: str) -> datetime | None:
        ds = self.devices.get(device_id)
        return ds.last_seen if ds else None

    def is_down(self, device_id: str) -> bool:
        ds = self.devices.get(device_id)
        return ds is not None and (ds.offline or ds.disconnected_since is not None)

    def back_online_at(self, device_id: str) -> datetime | None:
        ds = self.devices.get(device_id)
        return ds.back_online_at if ds else None

    def offline_after(self, dev: DeviceConfigEntry) -> timedelta:
        """The device's power class decides (rules.health); without one, missed
        heartbeats do."""
        period = self._periods.get(dev.id)
        if period is None:  # the site file is frozen: once per device
            period = self._periods[dev.id] = (
                timedelta(seconds=self.ctx.rules.health.of(dev.power).offline_s)
                if dev.power is not None else self._heartbeats(dev))
        return period

    def replay_grace(self, dev: DeviceConfigEntry) -> timedelta:
        # A spool replays at the pace of the link, not of the device's reports: a
        # battery sensor's 25 h offline period would keep its household unjudged.
        return self._heartbeats(dev)

    def _heartbeats(self, dev: DeviceConfigEntry) -> timedelta:
        return timedelta(seconds=dev.heartbeat_s * self.ctx.rules.offline.missed_heartbeats)

    # ------------------------------------------------------------ what the host tells it

    def _state(self, device_id: str) -> PresenceState:
        return self.devices.setdefault(device_id, PresenceState())

    def heard(self, device_id: str, heard: datetime) -> None:
        ds = self._state(device_id)
        if ds.last_heard is None or heard > ds.last_heard:
            ds.last_heard = heard

    def on_message(self, m: Incoming) -> list[Alarm]:
        if isinstance(m.msg, Status):
            return self._on_status(m.device, m.msg)
        return self.seen(m.device, m.ts)

    def seen(self, dev: DeviceConfigEntry, ts: datetime) -> list[Alarm]:
        """A sign of life with data time ``ts``."""
        ds = self._state(dev.id)
        if ds.last_seen is None or ts > ds.last_seen:
            ds.last_seen = ts
        if ds.disconnected_since is not None and ts > ds.disconnected_since:
            ds.disconnected_since = ds.disconnect_reason = None
        # Spooled data from before the device dropped out does not bring it back.
        if ds.offline and ds.offline_since is not None and ts > ds.offline_since:
            return self._back_online(dev, ds, ts)
        return []

    def _on_status(self, dev: DeviceConfigEntry, msg: Status) -> list[Alarm]:
        ds = self._state(dev.id)
        # Status messages are ordered by (ts, seq): a connection stamps its online
        # status and its Last Will with the same ts, the Will with the higher seq, so
        # the Will supersedes that connection's online and nothing older.
        if ds.status_ts is not None and (msg.ts, msg.seq) < (ds.status_ts, ds.status_seq):
            return []
        ds.status_ts, ds.status_seq = msg.ts, msg.seq
        if msg.state is WireState.ONLINE:
            return self.seen(dev, msg.ts)
        if ds.offline:
            return []
        # A Will carries its connection's start time; offline counts from last seen.
        since = max(msg.ts, ds.last_seen) if ds.last_seen else msg.ts
        ds.disconnected_since, ds.disconnect_reason = since, msg.reason or "status"
        ds.disconnect_heard = ds.last_heard
        return []

    # ------------------------------------------------------------ deadlines

    def tick(self, now: datetime) -> list[Alarm]:
        out: list[Alarm] = []
        for dev in self.ctx.site.devices:
            out += self.ctx.contained("device", dev.id, now, self.check_device, dev, now)
        return out

    def check_device(self, dev: DeviceConfigEntry, now: datetime) -> list[Alarm]:
        ds = self.devices.get(dev.id)
        if ds is None:
            if not self.ctx.watch_unseen or self.ctx.started is None:
                return []
            ds = self._state(dev.id)
        if ds.offline:
            return []
        if ds.disconnected_since is not None:
            # The grace runs from when the hub heard of it: a retained offline status
            # from a session long gone must still give the device time to come back.
            heard = ds.disconnect_heard or ds.disconnected_since
            if now >= heard + timedelta(seconds=dev.heartbeat_s):
                since, why = ds.disconnected_since, ds.disconnect_reason or "status"
                ds.disconnected_since = ds.disconnect_reason = None
                return self._go_offline(dev, ds, since, why)
        base = ds.last_heard or ds.last_seen or (
            self.ctx.started if self.ctx.watch_unseen else None)
        if base is None:
            return []
        deadline = base + self.offline_after(dev)
        if now >= deadline:
            return self._go_offline(dev, ds, deadline, "heartbeat")
        return []

    # ------------------------------------------------------------ alarms

    def _alarm(self, dev: DeviceConfigEntry, ts: datetime, firing: bool,
               **evidence: Any) -> Alarm:
        # Both edges of one outage: the same key, title and household.
        subject = self.ctx.site.subject(dev.subject) if dev.subject else None
        return make_alarm(
            self.ctx.site, "offline", Category.DEVICE_OFFLINE, f"offline:{dev.id}", ts,
            f"{dev.location.label or dev.id} 设备离线", dev, subject, firing=firing,
            **evidence,
        )

    def _back_online(self, dev: DeviceConfigEntry, ds: PresenceState,
                     ts: datetime) -> list[Alarm]:
        down_s = (ts - ds.offline_since).total_seconds() if ds.offline_since else None
        ds.offline = False
        ds.back_online_at = ts
        ds.offline_reason = None
        log.info("device back online", extra={"device": dev.id, "offline_s": down_s})
        return [self._alarm(dev, ts, firing=False,
                            back_online_at=ts.isoformat(), offline_s=down_s)]

    def _go_offline(self, dev: DeviceConfigEntry, ds: PresenceState, since: datetime,
                    why: str) -> list[Alarm]:
        ds.offline = True
        ds.offline_since = since
        ds.offline_reason = why
        log.info("device offline", extra={"device": dev.id, "reason": why})
        return [self._alarm(
            dev, since, firing=True,
            last_seen=iso(ds.last_seen), reason=why, heartbeat_s=dev.heartbeat_s,
            missed_heartbeats=self.ctx.rules.offline.missed_heartbeats, kind=dev.kind,
            **({"power": dev.power,
                "offline_after_s": self.offline_after(dev).total_seconds()} if dev.power else {}),
        )]

    # ------------------------------------------------------------ memory

    def snapshot(self) -> dict[str, Any]:
        return {k: v.to_json() for k, v in self.devices.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self.devices = {k: PresenceState.from_json(v) for k, v in state.items()}

    def repair(self, limit: datetime, now: datetime) -> list[Repair]:
        out = []
        for dev_id, ds in self.devices.items():
            offline_since = ds.offline_since
            dropped = drop_impossible(ds, limit)
            if "status_ts" in dropped:
                ds.status_seq = -1
            if ds.offline and offline_since is not None and ds.offline_since is None:
                ds.offline_since = now  # so that the device's next data brings it back
            if dropped:
                out.append(Repair("device", dev_id, tuple(dropped)))
        return out

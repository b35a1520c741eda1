"""Simulated households and scenarios, with an injected data clock (no wall time)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.config import DeviceSpec, EdgeConfig, Household
from edge.demo import DEMO_SCENARIO, INACTIVITY_MARGIN_S, adjust_scenario, demo_edge_config
from edge.resident import Resident
from edge.scenario import (
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
    resolve_at,
)
from edge.simulation import Emission, Simulation
from hub.config import load_site
from hub.services import Broker

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)  # a Monday morning
REPO = Path(__file__).resolve().parents[2]
KINDS = ("pir", "door", "water", "sos", "smoke", "wearable")


def _cfg(*houses: tuple[str, str]) -> EdgeConfig:
    devs = [DeviceSpec(id=f"{k}-{addr}", kind=k, subject=hid, heartbeat_s=30)  # type: ignore[arg-type]
            for hid, addr in houses for k in KINDS]  # noqa: E501
    return EdgeConfig(site="t", households=[Household(id=h, address=a) for h, a in houses],
                      devices=devs, spool=Path("/nonexistent"))


def _sim(steps: list[dict] | None = None, history: list[dict] | None = None,
         start: datetime = T0) -> Simulation:
    sc = parse_scenario({"seed": 3, "steps": steps or [], "history": history or []})
    return Simulation(_cfg(("s01", "3-2-501"), ("s02", "2-1-302")), sc, start, TZ)


def _of(ems: list[Emission], device: str, event: str | None = None) -> list[Emission]:
    return [e for e in ems if e.device == device and (event is None or e.event == event)]


def test_durations_and_times() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("11h59m") == 43140
    assert parse_duration(90) == 90 and parse_duration("2.5s") == 2.5
    for bad in ("soon", "5x", "", "-3", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert resolve_at("+40s", T0, TZ) == T0 + timedelta(seconds=40)
    assert resolve_at("09:30", T0, TZ) == T0 + timedelta(minutes=30)
    assert resolve_at("08:00", T0, TZ) == T0 + timedelta(hours=23)  # next occurrence
    assert resolve_at("2026-11-23T01:00:00+00:00", T0, TZ) == T0


def test_bad_scenarios_name_the_key() -> None:
    with pytest.raises(ScenarioError, match=r"steps\.0\.action"):
        parse_scenario({"steps": [{"at": "+1s", "action": "explode", "device": "x"}]})
    with pytest.raises(ScenarioError, match=r"steps\.0\.at"):
        parse_scenario({"steps": [{"at": "tomorrow", "action": "sos", "device": "x"}]})
    with pytest.raises(ScenarioError, match="needs a device or a household"):
        parse_scenario({"steps": [{"at": "+1s", "action": "sos"}]})
    with pytest.raises(ScenarioError, match="unknown household"):
        _sim([{"at": "+1s", "action": "sos", "household": "9-9-999"}])
    with pytest.raises(ScenarioError, match="unknown device"):
        _sim([{"at": "+1s", "action": "offline", "device": "nope"}])


def test_output_is_ordered_and_independent_of_step_size() -> None:
    steps = [{"at": "+40s", "action": "smoke", "household": "2-1-302", "for": "2m"}]
    a, b = _sim(steps), _sim(steps)
    end = T0 + timedelta(minutes=10)
    coarse = a.advance(end)
    fine: list[Emission] = []
    t = T0
    while t < end:
        t += timedelta(seconds=7)
        fine.extend(b.advance(min(t, end)))
    assert coarse == fine
    assert [e.ts for e in coarse] == sorted(e.ts for e in coarse)
    assert all(T0 <= e.ts <= end for e in coarse)


def test_every_kind_reports_in_a_live_hour() -> None:
    ems = _sim().advance(T0 + timedelta(hours=1))
    for k in KINDS:
        beats = _of(ems, f"{k}-3-2-501", "heartbeat")
        assert len(beats) == 120, k  # every 30 s
    wear = [e for e in _of(ems, "wearable-3-2-501") if e.kind == "telemetry"]
    assert len(wear) == 241  # every 15 s, the first at start
    metrics = {m for e in wear for m, _, _ in e.readings}
    assert metrics == {"heart_rate", "spo2", "body_temp"}
    hr = [v for e in wear for m, v, _ in e.readings if m == "heart_rate"]
    assert 50 < min(hr) and max(hr) < 100
    smoke = [v for e in _of(ems, "smoke-3-2-501") for m, v, _ in e.readings]
    assert len(smoke) == 61 and max(smoke) < 0.05
    assert _of(ems, "water-3-2-501")[0].readings[0][0] == "water_meter_l"
    # The resident is up at 09:00 on a weekday: the PIR sees her, at most twice a minute.
    motion = _of(ems, "pir-3-2-501", "motion") + _of(ems, "pir-2-1-302", "motion")
    assert motion
    for dev in ("pir-3-2-501", "pir-2-1-302"):
        ts = [e.ts for e in _of(ems, dev, "motion")]
        assert all((b - a).total_seconds() >= 30 for a, b in zip(ts, ts[1:], strict=False))


def test_a_day_has_a_plausible_rhythm() -> None:
    sim = _sim(start=datetime(2026, 11, 23, 0, 0, tzinfo=TZ))
    ems = sim.advance(datetime(2026, 11, 24, 0, 0, tzinfo=TZ))
    motion_by_hour = [0] * 24
    for e in _of(ems, "pir-3-2-501", "motion"):
        motion_by_hour[e.ts.astimezone(TZ).hour] += 1
    night = sum(motion_by_hour[0:5])
    day = sum(motion_by_hour[8:20])
    assert day > 20 * night + 50  # asleep at night, up during the day
    water = _of(ems, "water-3-2-501", "water_flow")
    litres = sum(e.data["litres"] for e in water)
    assert 50 < litres < 200  # a person living alone uses ~50-150 L a day
    meter = [e.readings[0][1] for e in _of(ems, "water-3-2-501") if e.kind == "telemetry"]
    assert meter == sorted(meter) and meter[-1] - meter[0] == pytest.approx(litres, abs=50)
    opens = _of(ems, "door-3-2-501", "door_open")
    closes = _of(ems, "door-3-2-501", "door_close")
    assert len(opens) == len(closes) and len(opens) % 2 == 0  # out and back


def test_scenario_actions() -> None:
    steps = [
        {"at": "+20s", "action": "sos", "household": "2-1-302"},
        {"at": "+40s", "action": "smoke", "device": "smoke-2-1-302", "for": "3m", "value": 0.5},
        {"at": "+30s", "action": "offline", "device": "pir-3-2-501", "for": "5m"},
        {"at": "+10s", "action": "vitals", "household": "3-2-501", "metric": "heart_rate",
         "value": 150, "for": "1m"},
        {"at": "+50s", "action": "fall", "household": "3-2-501"},
        {"at": "+60s", "action": "door", "household": "2-1-302"},
    ]
    ems = _sim(steps).advance(T0 + timedelta(minutes=10))
    sos = _of(ems, "sos-2-1-302", "sos")
    assert [e.ts for e in sos] == [T0 + timedelta(seconds=20)]
    smoke = _of(ems, "smoke-2-1-302")
    assert [e.ts for e in smoke if e.event == "smoke"] == [T0 + timedelta(seconds=40)]
    assert [e.ts for e in smoke if e.event == "smoke_clear"] == [T0 + timedelta(seconds=220)]
    dens = [(e.ts, v) for e in smoke if e.kind == "telemetry" for _, v, _ in e.readings]
    on, off = T0 + timedelta(seconds=40), T0 + timedelta(seconds=220)
    assert all(v > 0.4 for ts, v in dens if on <= ts < off)
    assert all(v < 0.05 for ts, v in dens if ts > T0 + timedelta(seconds=220))
    # Offline: a control message, silence (no heartbeats), then back online.
    pir = _of(ems, "pir-3-2-501")
    ctl = [(e.ts, e.event) for e in pir if e.kind == "control"]
    assert ctl == [(T0 + timedelta(seconds=30), "offline"),
                   (T0 + timedelta(seconds=330), "online")]
    assert not [e for e in pir if e.kind != "control"
                and T0 + timedelta(seconds=30) < e.ts < T0 + timedelta(seconds=330)]
    assert [e for e in pir if e.event == "heartbeat" and e.ts > T0 + timedelta(seconds=330)]
    hr = [(e.ts, v) for e in _of(ems, "wearable-3-2-501") if e.kind == "telemetry"
          for m, v, _ in e.readings if m == "heart_rate"]
    high = [ts for ts, v in hr if v > 130]
    assert high and min(high) >= T0 + timedelta(seconds=10)
    assert max(high) < T0 + timedelta(seconds=70) and len(high) == 4  # 15 s apart for 1 min
    assert [e.ts for e in _of(ems, "wearable-3-2-501", "fall")] == [T0 + timedelta(seconds=50)]
    door = [(e.ts - T0).total_seconds() for e in _of(ems, "door-2-1-302")
            if e.event in ("door_open", "door_close") and e.ts < T0 + timedelta(seconds=70)]
    assert door == [60, 66]


def test_stop_moving_silences_motion_door_and_water_until_resume() -> None:
    steps = [{"at": "+0s", "action": "stop_moving", "household": "3-2-501"},
             {"at": "+2h", "action": "resume", "household": "3-2-501"}]
    ems = _sim(steps).advance(T0 + timedelta(hours=4))
    quiet = T0 + timedelta(hours=2)
    for dev in ("pir-3-2-501", "door-3-2-501", "water-3-2-501"):
        assert not [e for e in _of(ems, dev) if e.event not in ("heartbeat", "")
                    and e.ts < quiet], dev
    assert [e for e in _of(ems, "pir-3-2-501", "motion") if e.ts > quiet]
    # Devices still live: heartbeats and vitals go on.
    assert len([e for e in _of(ems, "pir-3-2-501", "heartbeat") if e.ts < quiet]) == 239


def test_history_ends_at_start_with_the_last_sign_of_life_just_under_the_window() -> None:
    hist = [{"household": "3-2-501", "hours": 13, "inactive_for": "11h59m"}]
    sim = _sim(history=hist)
    past = sim.history()
    assert past and all(T0 - timedelta(hours=13) <= e.ts <= T0 for e in past)
    assert [e.ts for e in past] == sorted(e.ts for e in past)
    assert not [e for e in past if e.event == "heartbeat"]  # presence is only live
    assert {e.device for e in past} <= {f"{k}-3-2-501" for k in KINDS}
    signs = [e for e in past if e.event in ("motion", "door_open", "door_close", "water_flow")]
    assert max(e.ts for e in signs) == T0 - timedelta(hours=11, minutes=59)
    assert len(signs) > 5  # a normal life before that
    live = sim.advance(T0 + timedelta(minutes=5))
    assert not [e for e in live if e.device.endswith("3-2-501")
                and e.event in ("motion", "door_open", "water_flow")]
    assert _of(live, "pir-2-1-302", "motion")  # the neighbour goes on


def test_no_water_history_keeps_the_resident_moving() -> None:
    hist = [{"household": "2-1-302", "hours": 13, "no_water_for": "11h59m"}]
    past = _sim(history=hist).history()
    flows = _of(past, "water-2-1-302", "water_flow")
    assert flows and max(e.ts for e in flows) <= T0 - timedelta(hours=11, minutes=59)
    assert max(e.ts for e in _of(past, "pir-2-1-302", "motion")) > T0 - timedelta(minutes=30)


def test_resident_is_deterministic_whatever_the_steps() -> None:
    r = Resident("s01", TZ, seed=5)
    whole = r.acts(T0, T0 + timedelta(hours=3))
    parts = []
    t = T0
    for _ in range(18):
        parts.extend(r.acts(t, t + timedelta(minutes=10)))
        t += timedelta(minutes=10)
    assert whole == parts


def test_demo_scenario_fits_the_demo_site_and_window(tmp_path: Path) -> None:
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    night = datetime(2026, 11, 23, 23, 30, tzinfo=TZ)
    sc = adjust_scenario(load_scenario(DEMO_SCENARIO), site, night)
    h = next(h for h in sc.history if h.inactive_for is not None)
    assert h.inactive_for == site.rules.inactivity.night_window_s - INACTIVITY_MARGIN_S
    # No history is longer than a window: the hub would judge it before it all came.
    limit = min(site.rules.inactivity.day_window_s, site.rules.water.none_window_s)
    assert all(0 < x.hours * 3600 < limit for x in sc.history)
    w = next(h for h in sc.history if h.no_water_for is not None)
    assert w.no_water_for == site.rules.water.none_window_s - INACTIVITY_MARGIN_S
    cfg = demo_edge_config(site, Broker("127.0.0.1", 1883), tmp_path, start=T0)
    assert len(cfg.devices) == len([d for d in site.devices if d.kind != "camera"])
    assert cfg.scenario is not None and cfg.scenario.exists()
    sim = Simulation(cfg, load_scenario(cfg.scenario), T0, TZ)
    past = sim.history()
    live = sim.advance(T0 + timedelta(seconds=90))
    events = {e.event for e in live}
    assert {"sos", "smoke", "offline", "fall"} <= events
    last = max(e.ts for e in past if e.device == "pir-3-2-501")
    assert last == T0 - timedelta(
        seconds=site.rules.inactivity.day_window_s - INACTIVITY_MARGIN_S)
    hr = [v for e in live if e.device == "wearable-12-1-203" for m, v, _ in e.readings
          if m == "heart_rate"]
    assert sum(v > site.rules.vitals.heart_rate[1] for v in hr) >= site.rules.vitals.consecutive

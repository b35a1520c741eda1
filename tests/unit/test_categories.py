"""The category registry: built-ins, plug-ins, site-file overrides, and what the
engine, the routing and the lifecycle take from it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from hub import categories
from hub.alerts import lifecycle
from hub.alerts.engine import IncidentEngine
from hub.alerts.escalation import Escalator
from hub.alerts.model import Action, DecisionKind, Incident
from hub.alerts.policy import Silence
from hub.categories import (
    CategoryConfig,
    CategoryInfo,
    CategoryRegistry,
    UnknownCategory,
    load_plugins,
)
from hub.clock import ManualClock
from hub.config import ConfigError, Site, load_site
from hub.domain import Alarm, AlarmState, Category, IncidentState, Severity
from hub.grid import GridTree

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml"
RAW = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
T0 = datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC)  # 10:00 in Shanghai
MICRO = "1101050010020103"  # the micro-grid of 3-2-501 (wang-wei's grid)
COMMUNITY = "110105001002"


def site_with(**changes: object) -> Site:
    return Site.model_validate({**RAW, **changes})


def crowding(**kw: object) -> CategoryInfo:
    base: dict[str, object] = dict(
        code="test_crowding", case_code="0310", name_zh="人员聚集", name_en="Crowding",
        severity=Severity.MAJOR, accept_s=300, handle_s=1200, icon="👥", colour="#7c3aed")
    return CategoryInfo(**{**base, **kw})


def alarm(cat: str, key: str, ts: datetime = T0, **kw: object) -> Alarm:
    kw.setdefault("device_id", "sos-3-2-501")
    return Alarm(rule=str(cat), category=cat, severity=Severity.MAJOR,
                 state=AlarmState.FIRING, dedup_key=key, ts=ts, title=f"{cat} test", **kw)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> CategoryRegistry:
    """A private process-wide registry, so a test's plug-ins do not leak (the real
    plug-ins are loaded first, into the real one)."""
    load_plugins()
    reg = CategoryRegistry(categories.REGISTRY)
    monkeypatch.setattr(categories, "REGISTRY", reg)
    monkeypatch.setattr("hub.config.REGISTRY", reg)
    return reg


# ------------------------------------------------------------------ the registry


def test_builtins_are_registered_with_their_constants() -> None:
    reg = load_site(DEMO).registry
    assert {c.value for c in Category} <= set(reg.codes)
    sos = reg.get(Category.SOS)
    assert sos.code == "sos" and type(sos.code) is str
    assert (sos.case_code, sos.name_zh, sos.name_en) == ("0801", "紧急呼叫", "SOS")
    assert sos.life_safety and sos.route == "grid"
    assert {c.code for c in reg if c.life_safety} == {"sos", "smoke", "fall", "inactivity"}
    off = reg.get(Category.DEVICE_OFFLINE)
    assert off.route == "property" and not off.groups and off.inhibits == ("inactivity",)
    api = sos.to_api()
    assert api["labels"] == {"zh": "紧急呼叫", "en": "SOS"} and api["severity"] == "critical"
    assert api["sla"] == {"accept_s": 120, "handle_s": 900, "notify_levels": 3, "group_s": 300}


def test_register_twice_same_is_a_noop_different_is_refused() -> None:
    reg = CategoryRegistry()
    reg.register(crowding())
    v = reg.version
    reg.register(crowding())  # a module imported twice
    assert reg.version == v
    with pytest.raises(ValueError, match="'test_crowding' is already registered"):
        reg.register(crowding(accept_s=1))
    reg.register(crowding(accept_s=1), replace=True)
    assert reg.get("test_crowding").accept_s == 1 and reg.version == v + 1
    with pytest.raises(TypeError, match="takes a CategoryInfo"):
        reg.register({"code": "x"})  # type: ignore[arg-type]


def test_unknown_code_is_a_clear_value_error_not_a_key_error() -> None:
    reg = CategoryRegistry(categories.BUILTIN)
    with pytest.raises(UnknownCategory, match=r"unknown incident category 'crowd'; "
                                              r"registered: device_offline, fall,") as e:
        reg.get("crowd")
    assert isinstance(e.value, ValueError) and not isinstance(e.value, KeyError)
    assert "crowd" not in reg and 5 not in reg


@pytest.mark.parametrize("bad", [
    {"code": "Fall"}, {"code": "x"}, {"case_code": ""}, {"colour": "red"},
    {"icon": "toolong"}, {"severity": "huge"}, {"notify_levels": 6}, {"route": "police"},
])
def test_category_info_refuses_bad_fields(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        crowding(**bad)


# ------------------------------------------------------------------ the site file


def test_site_file_overrides_fields_in_the_old_and_the_new_spelling() -> None:
    site = site_with(categories={
        "sos": {"code": "0811", "name": "一键呼叫", "accept_s": 60},
        "fall": {"case_code": "0833", "name_en": "Fall (camera)", "route": "property"},
    })
    sos, fall = site.category("sos"), site.category("fall")
    assert (sos.case_code, sos.name_zh, sos.accept_s, sos.handle_s) == ("0811", "一键呼叫", 60, 900)
    assert sos.name_en == "SOS" and sos.life_safety  # untouched fields keep the registered value
    assert (fall.case_code, fall.name_en, fall.route) == ("0833", "Fall (camera)", "property")
    # The process-wide registry is not changed by one site.
    assert load_site(DEMO).category("sos").accept_s == 120


def test_site_file_adds_a_category_when_it_is_complete() -> None:
    site = site_with(categories={"parcel": {
        "case_code": "0420", "name": "快递堆放", "name_en": "Parcels piled up",
        "severity": "minor", "inhibits": ["water"], "icon": "📦", "colour": "#a16207",
        "evidence_labels": {"boxes": {"zh": "箱数", "en": "Boxes"}}}})
    p = site.category("parcel")
    assert (p.name_zh, p.severity, p.inhibits, p.route) == ("快递堆放", Severity.MINOR,
                                                            ("water",), "grid")
    assert p.to_api()["evidence_labels"] == {"boxes": {"zh": "箱数", "en": "Boxes"}}
    with pytest.raises(ValueError, match="evidence_labels.Boxes"):
        site_with(categories={"sos": {"evidence_labels": {"Boxes": {"zh": "x", "en": "x"}}}})


def test_site_file_naming_an_unknown_category_fails_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(yaml.safe_dump({**RAW, "categories": {"sso": {"accept_s": 60}}},
                                  allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_site(bad)
    msg = str(e.value)
    assert "categories.sso: unknown incident category 'sso'" in msg
    # Plug-ins register categories too (battery_low sorts first): name one built-in.
    assert "give case_code, name, name_en" in msg and "registered: " in msg
    assert "device_offline" in msg.split("registered: ", 1)[1]


def test_site_file_inhibiting_an_unknown_category_fails_at_load() -> None:
    with pytest.raises(ValueError, match="'sos' inhibits 'inactivty', which is not registered"):
        site_with(categories={"sos": {"inhibits": ["inactivity", "inactivty"]}})


def test_site_file_refuses_bad_values_with_the_key() -> None:
    with pytest.raises(ValueError, match="categories.sos.accept_s"):
        site_with(categories={"sos": {"accept_s": -1}})
    with pytest.raises(ValueError, match="categories.sos.colour"):
        site_with(categories={"sos": {"colour": "red"}})
    with pytest.raises(ValueError, match="categories.sos.labels"):
        site_with(categories={"sos": {"labels": "x"}})
    assert CategoryConfig(code="0801").case_code == "0801"


# ------------------------------------------------------------------ plug-ins


def test_plugin_module_declaring_categories_is_collected(
        registry: CategoryRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    pkg = tmp_path / "fakeplugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "crowd.py").write_text(textwrap.dedent("""
        from hub.categories import CategoryInfo
        CATEGORIES = (CategoryInfo(code="plug_crowd", case_code="0310", name_zh="人员聚集",
                                   name_en="Crowding", life_safety=True),)
    """))
    (pkg / "health.py").write_text(textwrap.dedent("""
        from hub.categories import CategoryInfo, register
        BATTERY = register(CategoryInfo(code="plug_battery", case_code="0902",
                                        name_zh="电池电量低", name_en="Battery low",
                                        route="property", groups=False))
    """))
    (pkg / "broken.py").write_text("raise RuntimeError('missing optional dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="hub.categories"):
        load_plugins(["fakeplugins", "no_such_package_anywhere"])
    assert "plug_crowd" in registry and "plug_battery" in registry
    assert [r.plugin for r in caplog.records] == ["fakeplugins.broken"]  # type: ignore[attr-defined]
    site = load_site(DEMO)
    assert site.category("plug_crowd").life_safety
    # A site file may now tune the plug-in's category like a built-in.
    tuned = site_with(categories={"plug_crowd": {"accept_s": 90}})
    assert tuned.category("plug_crowd").accept_s == 90


def test_a_site_sees_a_plugin_registered_after_it_was_loaded(registry: CategoryRegistry) -> None:
    site = load_site(DEMO)
    assert "late_one" not in site.registry
    categories.register(crowding(code="late_one"))
    assert site.category("late_one").name_en == "Crowding"


# ------------------------------------------------------------------ routing


def property_site() -> Site:
    return load_site(DEMO)  # the demo names 徐海涛 (xu-property) at the community


def test_maintenance_goes_to_property_staff_then_up_the_chain() -> None:
    site = property_site()
    tree = GridTree.from_site(site)
    chain = tree.chain(MICRO, Category.DEVICE_OFFLINE)
    assert chain[0].roles == ("property",) and chain[0].otherwise == ("grid_worker",)
    assert [lv.roles for lv in chain[1:]] == [("grid_leader",), ("community",), ("street",),
                                              ("department",)]
    at = T0
    assert [r.person_id for r in tree.recipients(MICRO, 0, at, Category.DEVICE_OFFLINE)] == [
        "xu-property"]
    assert [r.person_id for r in tree.recipients(MICRO, 1, at, Category.DEVICE_OFFLINE)] == [
        "zhao-min"]
    # The care chain is unchanged: the grid worker first, police with the community.
    assert [r.person_id for r in tree.recipients(MICRO, 0, at, Category.SOS)] == ["wang-wei"]
    assert {r.person_id for r in tree.recipients(MICRO, 2, at, Category.SOS)} == {
        "sun-community", "police-li"}
    assert [r.person_id for r in tree.recipients(MICRO, 2, at, Category.DEVICE_OFFLINE)] == [
        "sun-community"]


def test_maintenance_without_property_staff_reaches_the_grid_worker() -> None:
    people = [p for p in RAW["people"] if p["id"] != "xu-property"]
    tree = GridTree.from_site(site_with(people=people))
    assert [r.person_id for r in tree.recipients(MICRO, 0, T0, Category.DEVICE_OFFLINE)] == [
        "wang-wei"]


def test_property_role_is_accepted_in_the_site_file_and_others_are_not() -> None:
    people = [*RAW["people"], {"id": "p2", "name": "x", "roles": [
        {"role": "propety", "unit": COMMUNITY}]}]
    with pytest.raises(ValueError, match="people.*roles.0.role"):
        site_with(people=people)


def test_a_plugin_category_routes_by_its_registry_entry(registry: CategoryRegistry) -> None:
    categories.register(crowding(code="plug_safe", life_safety=True))
    categories.register(crowding(code="plug_maint", route="property"))
    tree = GridTree.from_site(load_site(DEMO))
    assert "police" in tree.chain(MICRO, "plug_safe")[2].roles
    assert "police" not in tree.chain(MICRO, "test_unknown")[2].roles
    assert [r.person_id for r in tree.recipients(MICRO, 0, T0, "plug_maint")] == ["xu-property"]


def test_maintenance_incident_escalates_to_the_grid_leader_on_time() -> None:
    site = property_site()
    tree = GridTree.from_site(site)
    eng = IncidentEngine(site, tree, ManualClock(T0))
    d = eng.decide(alarm(Category.DEVICE_OFFLINE, "offline:pir-3-2-501",
                         device_id="pir-3-2-501"), None, [], now=T0)
    assert d.kind is DecisionKind.CREATE
    assert [r.person_id for r in d.notifications[0].recipients] == ["xu-property"]
    inc = d.incident.copy(id=1)
    assert inc.deadline_at == T0 + timedelta(seconds=3600)
    assert eng.due(inc, T0 + timedelta(seconds=3599)) is None
    step = eng.due(inc, T0 + timedelta(seconds=3600))
    assert step is not None and step.to_level == 1
    assert [r.person_id for r in step.notifications[0].recipients] == ["zhao-min"]


# ------------------------------------------------------------------ engine and lifecycle


def test_inhibition_and_grouping_come_from_the_registry(registry: CategoryRegistry) -> None:
    categories.register(crowding(code="plug_quiet", inhibits=("inactivity",),
                                 inhibit_reason="a plug-in says so"))
    site = load_site(DEMO)
    eng = IncidentEngine(site, GridTree.from_site(site), ManualClock(T0))
    quiet = Incident(dedup_key="q:s01", category="plug_quiet", severity=Severity.MAJOR,
                     state=IncidentState.REPORTED, title="q", opened_at=T0, updated_at=T0,
                     subject_id="s01", id=5, device_id="other")
    d = eng.decide(alarm(Category.INACTIVITY, "inactivity:s01", subject_id="s01"), None, [quiet])
    assert d.kind is DecisionKind.INHIBITED and d.reason == "inhibited: a plug-in says so"
    # An SOS inhibits inactivity of the same household, as before the registry.
    sos = Incident(dedup_key="sos:s01", category="sos", severity=Severity.CRITICAL,
                   state=IncidentState.REPORTED, title="s", opened_at=T0, updated_at=T0,
                   subject_id="s01", id=6)
    d = eng.decide(alarm(Category.INACTIVITY, "inactivity:s01", subject_id="s01"), None, [sos])
    assert d.kind is DecisionKind.INHIBITED
    assert d.reason == "inhibited: an SOS of the same household is open"
    # device_offline never groups; another category on the same device does.
    d = eng.decide(alarm("plug_quiet", "q2", device_id="sos-3-2-501"), None, [sos.copy(
        device_id="sos-3-2-501", last_alarm_ts=T0)])
    assert d.kind is DecisionKind.GROUP
    d = eng.decide(alarm(Category.DEVICE_OFFLINE, "offline:sos-3-2-501"), None, [sos.copy(
        device_id="sos-3-2-501", last_alarm_ts=T0)])
    assert d.kind is DecisionKind.CREATE


def test_engine_refuses_an_unregistered_category_clearly() -> None:
    site = load_site(DEMO)
    eng = IncidentEngine(site, GridTree.from_site(site), ManualClock(T0))
    with pytest.raises(UnknownCategory, match="unknown incident category 'nonesuch'"):
        eng.decide(alarm("nonesuch", "n:1"), None, [])


def test_stored_incident_of_a_category_no_longer_registered_still_escalates() -> None:
    site = load_site(DEMO)
    tree = GridTree.from_site(site)
    inc = Incident(dedup_key="gone:1", category="gone_plugin", severity=Severity.MAJOR,
                   state=IncidentState.DISPATCHED, title="x", opened_at=T0, updated_at=T0,
                   grid_code=MICRO, id=9, deadline_at=T0 + timedelta(seconds=600),
                   deadline_kind="accept")
    step = Escalator(site, tree).due(inc, T0 + timedelta(seconds=600))
    assert step is not None and step.to_level == 1
    assert step.incident.deadline_at == T0 + timedelta(seconds=1200)  # the default 600 s
    t = lifecycle.apply(inc, Action.ACCEPT, at=T0, actor="wang-wei", site=site)
    assert t.incident.deadline_at == T0 + timedelta(seconds=3600)


def test_a_silence_matches_a_plugin_category_by_its_code() -> None:
    s = Silence(start=T0, end=T0 + timedelta(hours=1), reason="施工", category="plug_crowd")
    assert s.matches(alarm("plug_crowd", "c:1"))
    assert not s.matches(alarm(Category.SOS, "s:1"))
    assert Silence.from_dict(s.to_dict()) == s


def test_lifecycle_description_matches_the_rules() -> None:
    d = lifecycle.describe()
    states = {s["code"]: s for s in d["states"]}
    assert set(states) == {s.value for s in IncidentState}
    assert states["reported"]["actions"] == ["register", "cancel", "comment"]
    assert states["dispatched"]["actions"] == ["dispatch", "accept", "comment", "return",
                                               "park", "supervise"]
    assert states["closed"]["actions"] == [] and not states["closed"]["open"]
    assert states["accepted"]["labels"] == {"zh": "签收", "en": "Accepted"}
    moves = {t["action"]: t for t in d["transitions"]}
    assert moves["reopen"] == {"action": "reopen", "from": ["handled"], "to": "dispatched",
                               "needs_reason": True, "needs_assignee": False,
                               "needs_review_at": False}
    assert moves["dispatch"]["needs_assignee"] and moves["comment"]["to"] is None
    assert set(d["actions"]) >= {a.value for a in Action}  # and the notes' labels


def test_loading_a_site_imports_no_plugin_until_its_registry_is_asked_for() -> None:
    """The edge agent loads the site file too: it must not import the hub's rules for
    categories it never uses."""
    probe = textwrap.dedent(f"""
        import sys
        from hub.config import load_site
        site = load_site({str(DEMO)!r})
        sensing = lambda: any(m.startswith("hub.sensing") for m in sys.modules)
        before = sensing()
        n = len(site.registry)
        print(before, n > {len(categories.BUILTIN)}, sensing())
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True, cwd=DEMO.parents[2])
    assert out.stdout.split() == ["False", "True", "True"], out.stderr[-2000:]


def test_entry_point_of_an_installed_package_is_collected(
        registry: CategoryRegistry, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    class EntryPoint:  # the two fields and the method load_plugins uses
        def __init__(self, name: str, value: object) -> None:
            self.name, self.value, self._v = name, f"pkg:{name}", value

        def load(self) -> object:
            if isinstance(self._v, Exception):
                raise self._v
            return self._v

    eps = [EntryPoint("one", crowding(code="ep_one")),
           EntryPoint("many", (crowding(code="ep_two"), crowding(code="ep_three"))),
           EntryPoint("broken", ImportError("no such module")),
           EntryPoint("wrong", ("not a category",))]
    monkeypatch.setattr(categories.importlib.metadata, "entry_points",
                        lambda group: eps if group == "hub.categories" else [])
    monkeypatch.setattr(categories, "_plugins_loaded", set(categories.PLUGIN_PACKAGES))
    with caplog.at_level(logging.ERROR, logger="hub.categories"):
        load_plugins()
    assert {"ep_one", "ep_two", "ep_three"} <= set(registry.codes)
    assert [r.plugin for r in caplog.records] == ["pkg:broken", "pkg:wrong"]  # type: ignore[attr-defined]

"""The incident category registry: one place that says what each category is.

A category (``fall``, ``sos``, ``device_offline``, a plug-in's ``crowding``) is a
:class:`CategoryInfo`: its GB/T 30428-style case code, zh/en names, default
severity, time limits (SLA), whether a life may be at stake, which categories it
inhibits, whom it is routed to (the grid workers' chain or property management) and
how the console draws it. The incident engine, the grid routing, the API and the
console read categories from here and nowhere else.

Where categories come from, in order (a later source overrides an earlier one):

1. the built-ins below (:data:`BUILTIN`);
2. plug-ins: a rule or adapter module calls :func:`register` at import, or declares
   ``CATEGORIES = (CategoryInfo(...), ...)`` in a module of one of
   :data:`PLUGIN_PACKAGES` (or in a module named by a ``hub.categories`` entry point
   of an installed package), which :func:`load_plugins` imports and collects;
3. the site file's ``categories:`` section (:class:`CategoryConfig`): it changes
   fields of a registered category, or adds a category when it gives at least the
   case code and both names.

Pure: nothing here does I/O except :func:`load_plugins` importing modules.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.domain import Category, Severity

log = logging.getLogger(__name__)

CODE_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
CaseCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.\-]{0,15}$")]
Colour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]
Route = Literal["grid", "property"]

# Packages whose modules may declare ``CATEGORIES``; a package that does not exist
# (an install without vision) is skipped.
PLUGIN_PACKAGES: tuple[str, ...] = ("hub.vision.rules", "hub.sensing.rules", "hub.ingest.adapters")
ENTRY_POINT_GROUP = "hub.categories"


def _severity(v: object) -> Severity:
    # Severity.parse raises KeyError for a wrong name, which pydantic would not
    # report as a validation error naming the key.
    if isinstance(v, (str, int, Severity)) and not isinstance(v, bool):
        try:
            return Severity.parse(v)
        except (KeyError, ValueError):
            pass
    raise ValueError(f"severity must be info, minor, major or critical, not {v!r}")


class Labels(BaseModel):
    """A label in both languages the console speaks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: str = Field(min_length=1, max_length=60)
    en: str = Field(min_length=1, max_length=80)


EvidenceKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class CategoryInfo(BaseModel):
    """Everything the hub knows about one incident category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code  # the id in alarms, the API, the site file and the database
    case_code: CaseCode  # GB/T 30428-style case code in reports, e.g. "0803"
    name_zh: str = Field(min_length=1, max_length=40)
    name_en: str = Field(min_length=1, max_length=60)
    severity: Severity = Severity.MAJOR  # what a detector uses unless it knows better
    accept_s: float = Field(default=600, gt=0)  # time limit to accept after dispatch
    handle_s: float = Field(default=3600, gt=0)  # time limit to handle after accept
    notify_levels: int = Field(default=1, ge=1, le=5)  # chain levels told at once
    group_s: float = Field(default=300, ge=0)  # alarms this close about one place join
    # Maintenance work is its own workflow: it never joins a group, nor leads one.
    groups: bool = True
    # A person's life may be at stake: the police contact is told with the community.
    life_safety: bool = False
    # Closing needs an on-site check (核查) by someone other than the handler; unless
    # given, life-safety categories need it (fire_lane sets it itself).
    verify_required: bool = False
    # An open incident of this category suppresses new alarms of these categories
    # about the same care subject (the same household).
    inhibits: tuple[Code, ...] = ()
    inhibit_reason: str = ""  # shown in the decision, e.g. "a sensor ... is offline"
    # "grid": the grid workers' care chain; "property": property management (物业)
    # first, then the same chain upwards (see hub.grid.tree).
    route: Route = "grid"
    icon: str = Field(default="●", min_length=1, max_length=4)
    colour: Colour = "#6b7280"
    # Labels of the evidence numbers its alarms carry (``{"count": Labels(...)}``),
    # for the console's "why it fired"; the built-ins' are the console's own.
    evidence_labels: dict[EvidenceKey, Labels] = Field(default_factory=dict, max_length=40)

    @model_validator(mode="before")
    @classmethod
    def _verify_default(cls, v: object) -> object:
        if isinstance(v, dict) and "verify_required" not in v:
            return v | {"verify_required": bool(v.get("life_safety", False))}
        return v

    @field_validator("severity", mode="before")
    @classmethod
    def _sev(cls, v: object) -> Severity:
        return _severity(v)

    @field_validator("code", mode="before")
    @classmethod
    def _plain(cls, v: object) -> object:
        # Category.FALL and "fall" are the same code; keep the plain string.
        return str(v) if isinstance(v, str) else v

    @field_validator("inhibits", mode="before")
    @classmethod
    def _plain_all(cls, v: object) -> object:
        return tuple(str(x) if isinstance(x, str) else x for x in v) if isinstance(
            v, (list, tuple)) else v

    @property
    def name(self) -> str:
        """The Chinese name, as reports and audit rows use it."""
        return self.name_zh

    def to_api(self) -> dict[str, Any]:
        return {
            "code": self.code, "case_code": self.case_code,
            "labels": {"zh": self.name_zh, "en": self.name_en},
            "severity": self.severity.name.lower(), "life_safety": self.life_safety,
            "verify_required": self.verify_required,
            "route": self.route, "icon": self.icon, "colour": self.colour,
            "inhibits": list(self.inhibits), "groups": self.groups,
            "evidence_labels": {k: v.model_dump() for k, v in self.evidence_labels.items()},
            "sla": {"accept_s": self.accept_s, "handle_s": self.handle_s,
                    "notify_levels": self.notify_levels, "group_s": self.group_s},
        }


class CategoryConfig(BaseModel):
    """One entry of the site file's ``categories:`` section, keyed by category code.
    Every field is optional: what is given replaces the registered value. A code
    that is not registered adds a category, and then needs ``case_code``, ``name``
    and ``name_en``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # ``code`` is the key's older spelling (site files before the registry).
    case_code: CaseCode | None = Field(
        default=None, validation_alias=AliasChoices("case_code", "code"))
    name_zh: str | None = Field(
        default=None, min_length=1, max_length=40, validation_alias=AliasChoices("name", "name_zh"))
    name_en: str | None = Field(default=None, min_length=1, max_length=60)
    severity: Severity | None = None
    accept_s: float | None = Field(default=None, gt=0)
    handle_s: float | None = Field(default=None, gt=0)
    notify_levels: int | None = Field(default=None, ge=1, le=5)
    group_s: float | None = Field(default=None, ge=0)
    groups: bool | None = None
    life_safety: bool | None = None
    verify_required: bool | None = None
    inhibits: tuple[Code, ...] | None = None
    inhibit_reason: str | None = None
    route: Route | None = None
    icon: str | None = Field(default=None, min_length=1, max_length=4)
    colour: Colour | None = None
    evidence_labels: dict[EvidenceKey, Labels] | None = Field(default=None, max_length=40)

    @field_validator("severity", mode="before")
    @classmethod
    def _sev(cls, v: object) -> Severity | None:
        return None if v is None else _severity(v)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class UnknownCategory(ValueError):
    """A category code that no built-in, plug-in or site file registered."""

    def __init__(self, code: object, known: Iterable[str]) -> None:
        super().__init__(
            f"unknown incident category {code!r}; registered: {', '.join(sorted(known))}"
            " (a plug-in registers one with hub.categories.register, a site file adds one"
            " under categories: with case_code, name and name_en)")
        self.code = code


class CategoryRegistry:
    """Categories by code. Registering the same code twice with different content is
    an error unless ``replace`` is given (a plug-in must not silently redefine
    ``sos``); registering identical content again is a no-op (re-imports)."""

    def __init__(self, infos: Iterable[CategoryInfo] = ()) -> None:
        self._by_code: dict[str, CategoryInfo] = {}
        self._lock = threading.Lock()
        self.version = 0  # goes up with every change; sites cache their merge on it
        for info in infos:
            self.register(info)

    def register(self, info: CategoryInfo, *, replace: bool = False) -> CategoryInfo:
        if not isinstance(info, CategoryInfo):
            raise TypeError(f"register() takes a CategoryInfo, not {type(info).__name__}")
        with self._lock:
            old = self._by_code.get(info.code)
            if old is not None and old != info and not replace:
                raise ValueError(
                    f"category {info.code!r} is already registered with different content;"
                    " pass replace=True to redefine it, or override fields in the site file")
            if old != info:
                self._by_code[info.code] = info
                self.version += 1
        return info

    def get(self, code: str) -> CategoryInfo:
        info = self._by_code.get(code)
        if info is None:
            raise UnknownCategory(code, self._by_code)
        return info

    def resolve(self, code: str) -> CategoryInfo:
        """The registered category, or for a code that is no longer registered (an
        incident stored while a plug-in or site entry existed) a stand-in with the
        default limits, so its timers and routing keep working."""
        info = self._by_code.get(code)
        if info is not None:
            return info
        log.warning("incident category is not registered; using default limits",
                    extra={"category": code})
        return CategoryInfo(code=code if _valid_code(code) else "unregistered",
                            case_code="0000", name_zh=code or "?", name_en=code or "?")

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def __iter__(self) -> Iterator[CategoryInfo]:
        return iter(list(self._by_code.values()))

    def __len__(self) -> int:
        return len(self._by_code)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._by_code)

    def life_safety(self, code: str | None) -> bool:
        info = self._by_code.get(code) if code else None
        return bool(info and info.life_safety)

    def route(self, code: str | None) -> Route:
        info = self._by_code.get(code) if code else None
        return info.route if info else "grid"

    def groups(self, code: str) -> bool:
        info = self._by_code.get(code)
        return info.groups if info else True

    def with_overrides(self, overrides: Mapping[str, CategoryConfig]) -> CategoryRegistry:
        """A new registry: this one with a site file's ``categories:`` applied. Raises
        ``ValueError`` naming the entry for an unknown code that is not a complete new
        category, or an ``inhibits`` that names no category."""
        out = CategoryRegistry(self)
        for code, cfg in overrides.items():
            given = cfg.given()
            base = out._by_code.get(code)
            if base is None:
                missing = [k for k in ("case_code", "name_zh", "name_en") if k not in given]
                if missing:
                    names = {"case_code": "case_code", "name_zh": "name", "name_en": "name_en"}
                    raise ValueError(
                        f"categories.{code}: {UnknownCategory(code, out._by_code)}; to add it"
                        f" here give {', '.join(names[m] for m in missing)}")
                info = CategoryInfo(code=code, **given)
            else:
                info = CategoryInfo.model_validate({**base.model_dump(), **given})
            out.register(info, replace=True)
        out.check()
        return out

    def check(self) -> None:
        """Every ``inhibits`` names a registered category."""
        for info in self._by_code.values():
            for target in info.inhibits:
                if target not in self._by_code:
                    raise ValueError(
                        f"category {info.code!r} inhibits {target!r}, which is not registered")


def _valid_code(code: object) -> bool:
    return isinstance(code, str) and re.fullmatch(CODE_PATTERN, code) is not None


BUILTIN: tuple[CategoryInfo, ...] = (
    CategoryInfo(
        code=Category.SOS, case_code="0801", name_zh="紧急呼叫", name_en="SOS",
        severity=Severity.CRITICAL, accept_s=120, handle_s=900, notify_levels=3,
        life_safety=True, inhibits=(Category.INACTIVITY, Category.WATER),
        inhibit_reason="an SOS of the same household is open", icon="🚨", colour="#dc2626"),
    CategoryInfo(
        code=Category.SMOKE, case_code="0802", name_zh="烟感报警", name_en="Smoke",
        severity=Severity.CRITICAL, accept_s=120, handle_s=900, notify_levels=3,
        life_safety=True, icon="🔥", colour="#ea580c"),
    CategoryInfo(
        code=Category.FALL, case_code="0803", name_zh="老人跌倒", name_en="Fall",
        severity=Severity.CRITICAL, accept_s=180, handle_s=1800, notify_levels=2,
        life_safety=True, inhibits=(Category.INACTIVITY, Category.WATER),
        inhibit_reason="a fall of the same household is open", icon="🧓", colour="#b91c1c"),
    CategoryInfo(
        code=Category.FIRE_LANE, case_code="0301", name_zh="消防通道占用",
        name_en="Fire lane blocked", severity=Severity.MAJOR, accept_s=900, handle_s=7200,
        verify_required=True,
        icon="🚒", colour="#f59e0b"),
    CategoryInfo(
        code=Category.INACTIVITY, case_code="0804", name_zh="长时间无活动",
        name_en="Inactivity", severity=Severity.MAJOR, accept_s=600, handle_s=3600,
        life_safety=True, icon="⏳", colour="#d97706"),
    CategoryInfo(
        code=Category.WATER, case_code="0805", name_zh="用水异常", name_en="Water use",
        severity=Severity.MINOR, accept_s=1800, handle_s=7200, icon="💧", colour="#0284c7"),
    CategoryInfo(
        code=Category.VITALS, case_code="0806", name_zh="生命体征异常", name_en="Vitals",
        severity=Severity.MAJOR, accept_s=300, handle_s=1800, icon="❤️", colour="#db2777"),
    # A sensor that is offline cannot see activity: its silence is not the resident's
    # (water is left to the sensing rules, which know whether the offline device is
    # the water meter itself).
    CategoryInfo(
        code=Category.DEVICE_OFFLINE, case_code="0901", name_zh="设备离线",
        name_en="Device offline", severity=Severity.MINOR, accept_s=3600, handle_s=86400,
        groups=False, inhibits=(Category.INACTIVITY,),
        inhibit_reason="a sensor of the same household is offline", route="property",
        icon="📡", colour="#64748b"),
)

REGISTRY = CategoryRegistry(BUILTIN)

# Re-entrant: a plug-in that loads a site file at import asks for the plug-ins again.
_plugins_lock = threading.RLock()
_plugins_loaded: set[str] = set()


def register(info: CategoryInfo, *, replace: bool = False) -> CategoryInfo:
    """Add a category to the process-wide registry (a plug-in calls this at import).
    Returns ``info`` so a module can write ``CROWDING = register(CategoryInfo(...))``."""
    return REGISTRY.register(info, replace=replace)


def _collect(obj: Any, where: str) -> None:
    items = obj.CATEGORIES if hasattr(obj, "CATEGORIES") else obj
    if isinstance(items, CategoryInfo):
        items = (items,)
    for info in items:
        if not isinstance(info, CategoryInfo):
            raise TypeError(f"{where}: CATEGORIES holds {type(info).__name__}, not CategoryInfo")
        REGISTRY.register(info)


def load_plugins(packages: Iterable[str] = PLUGIN_PACKAGES) -> None:
    """Import the modules of the plug-in packages and the ``hub.categories`` entry
    points once each, registering what they declare. A module that fails to import
    is logged with its name and skipped: its categories stay unregistered, so its
    alarms are refused at the inlet instead of the whole hub failing."""
    with _plugins_lock:
        for pkg_name in packages:
            if pkg_name in _plugins_loaded:
                continue
            _plugins_loaded.add(pkg_name)
            try:
                pkg = importlib.import_module(pkg_name)
            except ModuleNotFoundError as e:
                if e.name and pkg_name.startswith(e.name):
                    continue  # this install has no such package
                log.exception("category plug-in package failed to import",
                              extra={"plugin": pkg_name})
                continue
            except Exception:  # noqa: BLE001 - one broken plug-in must not stop the hub
                log.exception("category plug-in package failed to import",
                              extra={"plugin": pkg_name})
                continue
            _collect_module(pkg, pkg_name)
            for m in pkgutil.iter_modules(getattr(pkg, "__path__", []), pkg_name + "."):
                try:
                    mod = importlib.import_module(m.name)
                except Exception:  # noqa: BLE001
                    log.exception("category plug-in failed to import", extra={"plugin": m.name})
                    continue
                _collect_module(mod, m.name)
        if ENTRY_POINT_GROUP not in _plugins_loaded:
            _plugins_loaded.add(ENTRY_POINT_GROUP)
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    _collect(ep.load(), f"entry point {ep.name}")
                except Exception:  # noqa: BLE001
                    log.exception("category entry point failed", extra={"plugin": ep.value})


def _collect_module(mod: Any, name: str) -> None:
    if hasattr(mod, "CATEGORIES"):
        try:
            _collect(mod, name)
        except (TypeError, ValueError):
            log.exception("category plug-in declares bad CATEGORIES", extra={"plugin": name})


__all__ = [
    "BUILTIN",
    "REGISTRY",
    "CategoryConfig",
    "CategoryInfo",
    "CategoryRegistry",
    "Labels",
    "UnknownCategory",
    "load_plugins",
    "register",
]

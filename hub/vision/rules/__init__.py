"""The camera rules, one module each, found by name in this package.

Every module here that declares ``PLUGIN`` (a :class:`~hub.vision.rules.base.RulePlugin`)
is a rule: :func:`build_rules` makes each camera's rules from them, and
:func:`parse_settings` validates a camera's ``rules:`` section of the site file with
each rule's own model. Adding a rule is adding a module; nothing else lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from hub.config import ZoneConfig
    from hub.vision.rules.base import Camera, RulePlugin, VisionRule


def names() -> list[str]:
    """The modules of this package that may be rules (not imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name != "base")


@cache
def plugin(name: str) -> RulePlugin | None:
    """The rule called ``name``, or None when no module of this package declares it."""
    if name not in names():
        return None
    mod = importlib.import_module(f"{__name__}.{name}")
    p = getattr(mod, "PLUGIN", None)
    return p if p is not None and p.name == name else None


def plugins() -> list[RulePlugin]:
    """Every rule, in the order they run on a frame."""
    found = [p for n in names() if (p := plugin(n)) is not None]
    return sorted(found, key=lambda p: (p.order, p.name))


def parse_settings(raw: Mapping[str, Any], zones: Sequence[ZoneConfig]) -> dict[str, BaseModel]:
    """A camera's ``rules:`` section, each entry validated by its rule's model and
    checked against the camera's zones. Raises ``ValueError`` naming the rule and key."""
    out: dict[str, BaseModel] = {}
    for name, value in raw.items():
        p = plugin(name) if isinstance(name, str) and name.isidentifier() else None
        if p is None:
            known = ", ".join(q.name for q in plugins())
            raise ValueError(f"unknown camera rule {name!r} (known: {known})")
        if p.settings is None:
            raise ValueError(f"rule {name!r} takes no camera settings")
        if isinstance(value, p.settings):
            settings = value
        else:
            try:
                settings = p.settings.model_validate(value)
            except ValidationError as e:
                raise ValueError("; ".join(_describe(name, err) for err in e.errors()[:5])) \
                    from None
        if p.check is not None:
            try:
                p.check(settings, zones)
            except ValueError as e:
                raise ValueError(f"{name}.{e}") from None
        out[name] = settings
    return out


def _describe(rule: str, err: Any) -> str:
    where = ".".join(str(x) for x in (rule, *err["loc"]))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against docs/configuration.md)"
    return f"{where}: {msg}"


def build_rules(camera: Camera, settings: Mapping[str, BaseModel],
                tuning: Mapping[str, Mapping[str, Any]] | None = None) -> list[VisionRule]:
    """The camera's rules: every rule that finds something to watch on it, given
    the camera's validated settings (by rule name) and, for evaluation, keyword
    arguments per rule."""
    tuning = tuning or {}
    out: list[VisionRule] = []
    for p in plugins():
        rule = p.build(camera, settings.get(p.name), tuning.get(p.name, {}))
        if rule is not None:
            out.append(rule)
    return out

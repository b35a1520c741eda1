"""Rules' memory as plain data that round-trips through JSON, so the host can save
it (``SensingEngine.snapshot()`` / ``restore()``): a dataclass deriving from
:class:`Jsonable` writes its datetimes as ``{"$dt": iso}`` and reads them back."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, Self


def encode(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"$dt": v.isoformat()}
    if isinstance(v, list | tuple):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        return {k: encode(x) for k, x in v.items()}
    return v


def decode(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"$dt"}:
            return datetime.fromisoformat(v["$dt"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


class Jsonable:
    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        return {f.name: encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Self:
        # Keys this version does not know (written by a newer one) are left out.
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: decode(v) for k, v in d.items() if k in names})

"""A maintenance condition kept per device (battery low, weak link): one state per
device, its problem named to the care rules while it holds, saved and restored with
the rule, and repaired like every rule's states. Each subclass judges its own
readings."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from hub.sensing.base import Repair, RuleBase, SensingContext, repair_states
from hub.sensing.state import Jsonable

S = TypeVar("S", bound=Jsonable)


class DeviceHealthRule(RuleBase, Generic[S], ABC):
    problem: ClassVar[str]  # the category code named while the condition holds
    state_type: ClassVar[type[Jsonable]]

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.devices: dict[str, S] = {}

    @abstractmethod
    def holds(self, st: S) -> bool:
        """Whether the condition is raised in this state."""

    def device_problems(self, device_id: str) -> list[str]:
        st = self.devices.get(device_id)
        return [self.problem] if st is not None and self.holds(st) else []

    def snapshot(self) -> dict[str, Any]:
        return {k: v.to_json() for k, v in self.devices.items()}

    def restore(self, state: dict[str, Any]) -> None:
        self.devices = {k: self.state_type.from_json(v)  # type: ignore[misc]
                        for k, v in state.items()}

    def repair(self, limit: datetime, now: datetime) -> list[Repair]:
        return repair_states("device", self.devices, limit)

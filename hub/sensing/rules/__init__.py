"""The sensing rules, one module per family. ``DEFAULT_RULES`` is what the engine
hosts unless it is given its own list; device presence and the offline rule
(``offline.OfflineRule``) are the host's own and always run."""

from __future__ import annotations

from collections.abc import Callable

from hub.sensing.base import SensingContext, SensingRule
from hub.sensing.rules.battery import BatteryRule
from hub.sensing.rules.inactivity import InactivityRule
from hub.sensing.rules.leak import LeakRule
from hub.sensing.rules.link import LinkRule
from hub.sensing.rules.smoke import SmokeRule
from hub.sensing.rules.sos import SosRule
from hub.sensing.rules.tamper import TamperRule
from hub.sensing.rules.vitals import VitalsRule
from hub.sensing.rules.water import WaterRule
from hub.sensing.rules.wearable_fall import WearableFallRule

RuleFactory = Callable[[SensingContext], SensingRule]

# The order is the order in which a message's alarms come out.
DEFAULT_RULES: tuple[RuleFactory, ...] = (
    InactivityRule,
    WaterRule,
    SosRule,
    WearableFallRule,
    SmokeRule,
    VitalsRule,
    LeakRule,
    # Device health: maintenance incidents for property management.
    TamperRule,
    BatteryRule,
    LinkRule,
)

__all__ = ["DEFAULT_RULES", "RuleFactory"]

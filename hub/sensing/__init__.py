"""Non-visual rules: elderly care (inactivity, water, SOS, falls from wearables,
vitals), safety (smoke, water leaks) and device health (offline, battery, link,
tamper) — one module per family under ``hub.sensing.rules``, hosted by
:class:`SensingEngine` behind the :class:`SensingRule` protocol."""

from hub.sensing.base import Incoming, SensingRule
from hub.sensing.engine import SensingEngine

__all__ = ["Incoming", "SensingEngine", "SensingRule"]

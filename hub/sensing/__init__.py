"""Non-visual elderly-care and safety rules: inactivity, water, SOS, smoke, falls
from wearables, vitals, device offline — one module per family under
``hub.sensing.rules``, hosted by :class:`SensingEngine` behind the
:class:`SensingRule` protocol."""

from hub.sensing.base import Incoming, SensingRule
from hub.sensing.engine import SensingEngine

__all__ = ["Incoming", "SensingEngine", "SensingRule"]

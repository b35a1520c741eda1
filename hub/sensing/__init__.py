"""Non-visual elderly-care and safety rules: inactivity, water, SOS, smoke, falls
from wearables, vitals, device offline."""

from hub.sensing.engine import SensingEngine

__all__ = ["SensingEngine"]

"""The limits the sensing rules hold a device's readings to, per metric, for charts
to draw as lines: the vitals ranges (``rules.vitals``), the battery-low level and the
weak-link LQI of the device's power class (``rules.health``). The same settings the
rules read, so a line on the chart is where an incident is raised."""

from __future__ import annotations

from hub.config import PowerClass, Rules


def reading_thresholds(rules: Rules, power: PowerClass | None) -> dict[str, list[float]]:
    v = rules.vitals
    h = rules.health.of(power)
    return {
        "heart_rate": [v.heart_rate[0], v.heart_rate[1]],
        # SpO2 cannot be too high: only the lower limit means anything on a chart.
        "spo2": [v.spo2[0]],
        "body_temp": [v.body_temp[0], v.body_temp[1]],
        "battery": [h.battery_low_pct],
        "linkquality": [h.weak_link_lqi],
    }

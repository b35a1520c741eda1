"""Prometheus metrics of the alert worker's parts (applier, timers, dispatcher,
sensing host), on the process's default registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALARMS = Counter("hub_alarms_total", "Alarms received by the alert worker", ["outcome"])
INCIDENTS = Counter("hub_incidents_opened_total", "Incidents opened", ["category"])
ESCALATIONS = Counter("hub_escalations_total", "Time limits that ran out", ["category"])
DELIVERIES = Counter("hub_notifications_total", "Outbox deliveries", ["channel", "result"])
APPLY_SECONDS = Histogram(
    "hub_alarm_batch_seconds", "Time to apply and commit one batch of alarms",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ALARM_TO_STREAM = Histogram(
    "hub_alarm_to_stream_seconds", "Alarm received to incident change on the live stream",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
)
BAD_ALARMS = Counter("hub_alarms_rejected_total", "Alarms that could not be applied", ["reason"])
SENSING_PROBLEMS = Counter(
    "hub_sensing_problems_total",
    "Problems the sensing rules contained to one device, household or rule (device_failed,"
    " subject_failed, rule_failed, future_ts_repaired, message_ignored,"
    " reading_out_of_range)", ["kind"],
)

"""Prometheus metrics of the ingest path, on the process's default registry (which
``/metrics`` serves). Other parts keep their own metrics in their own modules."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter(
    "hub_messages_received_total", "MQTT messages received by the ingest", ["kind"]
)
MESSAGES_REJECTED = Counter(
    "hub_messages_rejected_total",
    "Messages dropped as malformed (bad_json, invalid, oversized, unknown_device,"
    " bad_topic, device_mismatch, ts_future, ts_past, unstorable)",
    ["reason"],
)
READINGS_STORED = Counter("hub_readings_stored_total", "Readings newly stored")
EVENTS_STORED = Counter("hub_events_stored_total", "Events newly stored")
DUPLICATES = Counter(
    "hub_messages_duplicate_total",
    "Messages received again after they were stored (redelivery); stored once",
    ["kind"],
)
STATUS_APPLIED = Counter("hub_status_messages_total", "Status messages applied", ["state"])
BATCH_MESSAGES = Histogram(
    "hub_ingest_batch_messages",
    "Messages per committed batch",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
COMMIT_SECONDS = Histogram(
    "hub_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG_SECONDS = Histogram(
    "hub_ingest_lag_seconds",
    "Receive time minus the device's own timestamp",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DB_ERRORS = Counter(
    "hub_ingest_db_errors_total", "Failed batch writes (retried; nothing is acked)", ["kind"]
)
PENDING = Gauge("hub_ingest_pending_messages", "Messages received but not yet committed")
CALLBACK_ERRORS = Counter(
    "hub_ingest_callback_errors_total", "Exceptions raised by on_committed subscribers"
)

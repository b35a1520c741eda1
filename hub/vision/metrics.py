"""Prometheus metrics of the frame transport and the vision workers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES_RECEIVED = Counter(
    "hub_vision_frames_received_total", "Frames that arrived for an owned camera", ["camera"]
)
FRAMES_DROPPED = Counter(
    "hub_vision_frames_dropped_total",
    "Frames dropped before analysis (stale: a newer frame replaced it; rate_limited: the "
    "camera sent more than its allowed rate)",
    ["camera", "reason"],
)
FRAMES_REJECTED = Counter(
    "hub_vision_frames_rejected_total",
    "Bad frames by reason (bad_frame, invalid, oversized, device_mismatch, bad_topic, "
    "decode_error, size_mismatch, size_changed, unknown_camera)",
    ["reason"],
)
FRAMES_PROCESSED = Counter(
    "hub_vision_frames_processed_total",
    "Frames fully analysed, by whether the pose model ran on them (run) or the motion "
    "gate let the last people stand (skipped)",
    ["camera", "pose"],
)
ALARMS = Counter("hub_vision_alarms_total", "Alarms emitted by the analyzers", ["camera", "rule"])
POSE_SECONDS = Histogram(
    "hub_vision_pose_seconds", "Pose model time per frame",
    buckets=(0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
FRAME_SECONDS = Histogram(
    "hub_vision_frame_seconds", "Whole analysis time per frame (decode, gate, pose, rules)",
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.12, 0.2, 0.3, 0.5, 1.0, 2.0),
)
CAMERA_HEALTHY = Gauge(
    "hub_vision_camera_healthy", "1 when the camera's frames are usable", ["camera"]
)
ERRORS = Counter("hub_vision_errors_total", "Unexpected errors while analysing a frame", ["camera"])

"""The settings a camera streams with (hub/stream_settings.py), to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.config import CameraConfig
from hub.protocol import MAX_BOOST_S, DeviceConfig, LiveBoost, decode_config, encode
from hub.stream_settings import base_config, boost_end, boosted_config, effective

T0 = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)
CAM = CameraConfig(source="rtsp://cam/1", fps=1, jpeg_quality=70, max_width=640)


def test_without_a_pushed_config_the_site_files_settings_hold() -> None:
    s = effective(CAM, None, T0)
    assert (s.fps, s.jpeg_quality, s.max_width, s.gate, s.boosted_until) == (
        1, 70, 640, True, None)


def test_pushed_fields_replace_the_site_files_and_absent_ones_keep_them() -> None:
    s = effective(CAM, DeviceConfig(fps=3.0, gate=False), T0)
    assert (s.fps, s.jpeg_quality, s.max_width, s.gate) == (3.0, 70, 640, False)


def test_a_boost_holds_until_its_end_to_the_second_then_ends_by_itself() -> None:
    until = T0 + timedelta(seconds=30)
    cfg = boosted_config(CAM, until, fps=5.0)
    ends = boost_end(cfg.live, T0)  # type: ignore[arg-type]
    assert ends == until
    during = effective(CAM, cfg, T0 + timedelta(seconds=29), ends)
    assert (during.fps, during.gate, during.boosted_until) == (5.0, False, until)
    after = effective(CAM, cfg, T0 + timedelta(seconds=30), ends)
    assert (after.fps, after.gate, after.boosted_until) == (1, True, None)


def test_a_boost_from_a_clock_far_ahead_is_cut_to_the_longest_boost() -> None:
    cfg = DeviceConfig(live=LiveBoost(fps=5.0, until=T0 + timedelta(days=365)))
    ends = boost_end(cfg.live, T0)  # type: ignore[arg-type]
    assert ends == T0 + timedelta(seconds=MAX_BOOST_S)
    assert effective(CAM, cfg, ends - timedelta(seconds=1), ends).boosted_until == ends
    assert effective(CAM, cfg, ends, ends).fps == 1


def test_a_boost_never_lowers_the_frame_rate() -> None:
    fast = CAM.model_copy(update={"fps": 10.0})
    cfg = boosted_config(fast, T0 + timedelta(seconds=10), fps=5.0)
    assert effective(fast, cfg, T0, boost_end(cfg.live, T0)).fps == 10.0  # type: ignore[arg-type]


def test_base_config_round_trips_over_the_wire_with_the_zones() -> None:
    cam = CameraConfig.model_validate({"source": "x.mp4", "fps": 2, "zones": [
        {"name": "lane", "polygon": [[0, 0], [1, 0], [1, 1]]}]})
    cfg = decode_config(encode(base_config(cam)))
    assert cfg.fps == 2 and cfg.gate is True and cfg.live is None
    assert [z.name for z in cfg.zones] == ["lane"]
    assert decode_config(b"") == DeviceConfig()

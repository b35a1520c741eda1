"""What a camera agent streams with: its site file's camera settings, overridden by
what the hub pushed on the camera's retained ``config`` topic, overridden while it
lasts by a live-view boost. Pure (the time is passed in); the edge agent and the
hub's live view both use it, so the edge imports nothing heavier than the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.config import CameraConfig
from hub.protocol import MAX_BOOST_S, DeviceConfig, LiveBoost, Zone


@dataclass(frozen=True, slots=True)
class StreamSettings:
    fps: float
    jpeg_quality: int
    max_width: int
    gate: bool  # the motion gate decides which frames go out
    boosted_until: datetime | None = None  # a live-view boost holds until then


def boost_end(boost: LiveBoost, received_at: datetime) -> datetime:
    """When a boost read at ``received_at`` ends on this device: at its ``until``, but
    never more than MAX_BOOST_S later (a hub clock far ahead of the camera's must not
    make a boost last for ever)."""
    return min(boost.until, received_at + timedelta(seconds=MAX_BOOST_S))


def effective(camera: CameraConfig, pushed: DeviceConfig | None, now: datetime,
              boost_ends: datetime | None = None) -> StreamSettings:
    """The settings in force at ``now``. ``boost_ends``: :func:`boost_end` of the
    pushed boost, computed when it was received."""
    fps, quality, width, gate = camera.fps, camera.jpeg_quality, camera.max_width, True
    until = None
    if pushed is not None:
        fps = pushed.fps if pushed.fps is not None else fps
        quality = pushed.jpeg_quality if pushed.jpeg_quality is not None else quality
        width = pushed.max_width if pushed.max_width is not None else width
        gate = pushed.gate if pushed.gate is not None else gate
        if pushed.live is not None and boost_ends is not None and now < boost_ends:
            fps, gate, until = max(fps, pushed.live.fps), pushed.live.gate, boost_ends
    return StreamSettings(fps=fps, jpeg_quality=quality, max_width=width, gate=gate,
                          boosted_until=until)


def base_config(camera: CameraConfig) -> DeviceConfig:
    """The retained config the hub pushes for a camera nobody watches: its site file's
    frame rate, JPEG settings and zones, motion gate on."""
    return DeviceConfig(fps=camera.fps, jpeg_quality=camera.jpeg_quality,
                        max_width=camera.max_width, gate=True,
                        zones=[Zone(name=z.name, kind=z.kind, polygon=list(z.polygon))
                               for z in camera.zones])


def boosted_config(camera: CameraConfig, until: datetime, fps: float) -> DeviceConfig:
    """The base config with a live-view boost (``fps``, motion gate off) until ``until``."""
    return base_config(camera).model_copy(
        update={"live": LiveBoost(fps=max(fps, camera.fps), gate=False, until=until)})


# The frame rate a watched camera is asked for (the live view's boost); the vision
# worker's per-camera flood limit leaves room for it.
LIVE_BOOST_FPS = 5.0

"""The boundary between a camera's analyzer and its rules (fire lane, fall, crowding...).

A :class:`VisionRule` gets one :class:`Frame` at a time, in order, and returns
:class:`~hub.domain.Alarm` objects. What the frames are analysed with is the
analyzer's job, done once for all rules: every rule gets the pose model's people, and
says in :class:`Needs` whether it also uses the tracker, a mask of where people are
or the rotated "lying" look.
Between frames the analyzer asks each rule what it wants of the pose stage next
(:class:`PoseDemand`): the motion gate in front skips the model on still frames
unless a rule asks for them.

A rule module in this package declares ``PLUGIN = RulePlugin(...)``: its name (the
key of the camera's ``rules:`` section in the site file), the pydantic model of its
per-camera settings, and ``build``, which makes the rule for one camera (or returns
None when the camera gives it nothing to watch). See docs/architecture.md, *Adding a
detector*.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel

from hub.domain import Alarm
from hub.vision import evidence
from hub.vision.people import Person
from hub.vision.zones import Zone

if TYPE_CHECKING:
    from hub.config import ZoneConfig
    from hub.vision.firelane import ReferenceStore
    from hub.vision.tracker import Track, Tracker

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Needs:
    """What a rule uses of the analysis the analyzer does for all rules."""

    tracks: bool = False  # people followed across frames (the camera's tracker)
    people_mask: bool = False  # a work-size mask of where people are (frame.people_mask)
    lying_pass: bool = False  # the rotated look for people lying (PoseDemand.lying_every_s)


@dataclass(frozen=True, slots=True)
class PoseDemand:
    """What a rule wants of the pose stage for the coming frames.

    ``every_frame``: a decision waits on fresh sightings (a fall being confirmed), so
    the model runs on every frame, past the pipeline's rate cap. ``lying_every_s``: a
    rotated look for people lying is wanted at most this often (frame time; 0 = on
    every frame), and on a frame where one is due the model runs even when nothing
    moved; None: no look is wanted."""

    every_frame: bool = False
    lying_every_s: float | None = None


NO_DEMAND = PoseDemand()


class Evidence:
    """Where a camera's evidence snapshots go (``data_dir/evidence/<camera>/``)."""

    def __init__(self, folder: Path, camera_id: str) -> None:
        self.folder = Path(folder)
        self.camera_id = camera_id

    def save(self, ts: datetime, tag: str, image: np.ndarray) -> str | None:
        """Write the JPEG; its path relative to the data directory, or None when it
        could not be written (logged; the alarm goes without it)."""
        return evidence.write(self.folder, self.camera_id, ts, tag, image)


@dataclass(frozen=True)
class Camera:
    """What a rule knows of its camera: who and where it is, its zones, where its
    evidence and learnt references go."""

    camera_id: str
    label: str  # where the camera is, as people say it ("3号楼东侧消防通道"): alarm titles
    grid_code: str
    zones: tuple[Zone, ...]
    evidence: Evidence
    references: ReferenceStore | None = None

    def zones_of(self, kind: str) -> list[Zone]:
        return [z for z in self.zones if z.kind == kind]

    def zone(self, name: str) -> Zone | None:
        return next((z for z in self.zones if z.name == name), None)

    def zone_drawing(self) -> list[tuple[str, str, list[tuple[float, float]]]]:
        """Every zone as :func:`hub.vision.evidence.draw` takes them."""
        return [(z.name, z.kind, list(z.config.polygon)) for z in self.zones]


@dataclass(frozen=True, slots=True)
class Frame:
    """One analysed frame as every rule of the camera sees it."""

    ts: datetime  # the frame's own timestamp (the edge's): every dwell runs on it
    image: np.ndarray  # the whole frame, BGR
    size: tuple[int, int]  # (width, height) of ``image``
    gray: np.ndarray  # the small blurred grey image (hub.vision.firelane.work_gray)
    work_size: tuple[int, int]  # (width, height) of ``gray``
    # Everyone on the frame: this frame's sightings, or the last ones when the pose
    # model did not run (``posed`` False: nothing moved), plus people the last lying
    # look found while it still matters.
    people: list[Person]
    posed: bool
    tracks: list[Track] = field(default_factory=list)  # Needs.tracks: seen on this frame
    dropped: list[Track] = field(default_factory=list)  # and those given up on it
    people_mask: np.ndarray | None = None  # Needs.people_mask: bool, work size


class VisionRule(Protocol):
    """One detector on one camera."""

    name: str  # the rule's name in alarms (``Alarm.rule``) and in the site file
    needs: Needs

    def start(self, size: tuple[int, int], work_size: tuple[int, int]) -> None:
        """Before the first frame, and again when the camera's frame size changes:
        every pixel model and track of another size is void."""

    def process(self, frame: Frame) -> list[Alarm]:
        """The alarms this frame raises or clears (usually none)."""

    def pose_demand(self, ts: datetime) -> PoseDemand:
        """What the rule wants of the pose stage now (read-only)."""

    def lying_regions(self, ts: datetime, people: list[Person],
                      tracker: Tracker) -> list[Box] | None:
        """For a due lying look (``Needs.lying_pass``): where to look closer, most
        important first (an empty list turns the whole frame), or None when the look
        could find nobody who matters to this rule. ``people``: this frame's
        sightings; ``tracker``: the camera's tracker before this frame."""

    def rebaseline(self, ts: datetime) -> None:
        """An operator accepts the current view as normal (the empty fire lane);
        rules that learn no background ignore it."""


# build(camera, settings, tuning) -> the rule for that camera, or None
Build = Callable[[Camera, Any, Mapping[str, Any]], VisionRule | None]
# check(settings, zones) raises ValueError when the settings do not fit the camera
Check = Callable[[Any, Sequence["ZoneConfig"]], None]


@dataclass(frozen=True)
class RulePlugin:
    """A rule module's declaration (``PLUGIN = RulePlugin(...)``).

    ``settings``: the pydantic model of the camera's ``rules.<name>`` entry in the site
    file (None: the rule takes none there). ``build(camera, settings, tuning)``:
    ``settings`` is the validated entry or None when the camera has none, ``tuning``
    keyword arguments for the rule's internals (the evaluation's variants; empty in
    the hub). ``check``: cross-checks of the settings against the camera's zones.
    ``order``: rules run in this order on each frame (their alarms come in it)."""

    name: str
    build: Build
    settings: type[BaseModel] | None = None
    check: Check | None = None
    order: int = 100


class BaseRule(ABC):
    """Defaults for the parts of :class:`VisionRule` most rules do not use: nothing
    to reset, nothing asked of the pose stage, no lying look, no background."""

    name: str = ""
    needs: Needs = Needs()

    def start(self, size: tuple[int, int], work_size: tuple[int, int]) -> None:
        return None

    @abstractmethod
    def process(self, frame: Frame) -> list[Alarm]:
        """The frame's alarms (each rule's own analysis)."""

    def pose_demand(self, ts: datetime) -> PoseDemand:
        return NO_DEMAND

    def lying_regions(self, ts: datetime, people: list[Person],
                      tracker: Tracker) -> list[Box] | None:
        return None

    def rebaseline(self, ts: datetime) -> None:
        return None

"""Shared pieces of the vision worker tests: a pose model that finds nobody and an
analyzer without detectors, for tests where only frame delivery or camera health
matters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from hub.domain import Alarm


class NoPose:
    def detect(self, frame: np.ndarray) -> list:
        return []


class NullAnalyzer:
    def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list[Alarm]:
        return []

    def rebaseline(self, ts: datetime) -> None:
        return None

    def needs_still_frames(self, ts: datetime) -> bool:
        return False

    def needs_every_frame(self, ts: datetime) -> bool:
        return False

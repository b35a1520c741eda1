"""Households split into partitions (hub.sensing.partitions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import load_site
from hub.sensing.partitions import household_key, partition_of, partition_site, partitioner

SITE = load_site(Path(__file__).resolve().parents[2] / "deploy/sites/demo.yaml")


def test_a_households_devices_share_its_partition() -> None:
    part = partitioner(SITE, 8)
    for d in SITE.devices:
        assert part(d.id) == partition_of(d.subject or d.id, 8)
    s01 = [d.id for d in SITE.devices if d.subject == "s01"]
    assert len(s01) > 1 and len({part(d) for d in s01}) == 1


def test_the_partition_is_stable_across_processes() -> None:
    # CRC-32, not the salted hash(): the same number in every ingest and alert worker.
    assert partition_of("s01", 16) == 2  # zlib.crc32(b"s01") % 16
    assert partition_of("s01", 1) == 0
    with pytest.raises(ValueError):
        partition_of("s01", 0)


def test_the_partitions_views_cover_the_site_once() -> None:
    parts = 4
    assert SITE.device("pir-3-2-501") and SITE.subject("s01")  # the whole site's lookups built
    views = [partition_site(SITE, p, parts) for p in range(parts)]
    devices = [d.id for v in views for d in v.devices]
    subjects = [s.id for v in views for s in v.care_subjects]
    assert sorted(devices) == sorted(d.id for d in SITE.devices)
    assert sorted(subjects) == sorted(s.id for s in SITE.care_subjects)
    for p, v in enumerate(views):
        assert all(partition_of(household_key(d), parts) == p for d in v.devices)
        # Its lookups are its own, not the whole site's (model_copy kept those).
        assert set(v.devices_by_id) == {d.id for d in v.devices}
        assert set(v.subjects_by_id) == {s.id for s in v.care_subjects}

"""Which partition of the households a device belongs to.

The sensing rules reason per household (a care subject and the devices in their
home), so a household's devices share one partition: the ingest writes each message
to the sensing feed under its partition (``hub.store.sensing_feed``), and the one
worker holding that partition's lease runs the rules on them. A device that belongs
to no household (a corridor's smoke detector) is a partition key of its own. CRC-32
is stable across processes and Python versions (``hash()`` is salted per process).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from hub.config import DeviceConfigEntry, Site


def household_key(device: DeviceConfigEntry) -> str:
    return device.subject or device.id


def partition_of(key: str, parts: int) -> int:
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    return zlib.crc32(key.encode()) % parts


def partitioner(site: Site, parts: int) -> Callable[[str], int]:
    """device id -> partition, for the site's devices (the ingest stores no others)."""
    table = {d.id: partition_of(household_key(d), parts) for d in site.devices}
    return lambda device_id: table.get(device_id, partition_of(device_id, parts))


def partition_site(site: Site, part: int, parts: int) -> Site:
    """The site as partition ``part`` sees it: its households' devices and subjects
    only, so that its rules judge nobody whose data another partition reads (an
    inactivity deadline for a resident it never heard from would be false)."""
    devices = [d for d in site.devices if partition_of(household_key(d), parts) == part]
    subjects = [s for s in site.care_subjects if partition_of(s.id, parts) == part]
    sub = site.model_copy(update={"devices": devices, "care_subjects": subjects})
    # model_copy keeps the cached lookups of the whole site; clear them (functools'
    # documented way) so the partition's lookups are built from its own lists.
    for name in ("devices_by_id", "subjects_by_id"):
        if name in sub.__dict__:
            delattr(sub, name)
    return sub

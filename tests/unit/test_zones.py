from __future__ import annotations

from hub.config import ZoneConfig
from hub.vision.zones import Zone, contains, polygon_mask


def test_mask_covers_the_polygon_share() -> None:
    m = polygon_mask([(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)], 200, 100)
    assert m.shape == (100, 200)
    assert abs(m.mean() - 0.5) < 0.02
    assert not m[10, 100] and m[90, 100]


def test_contains_normalised_point() -> None:
    tri = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert contains(tri, 0.2, 0.2)
    assert not contains(tri, 0.8, 0.8)


def test_zone_caches_masks_per_size_and_tests_pixels() -> None:
    z = Zone(ZoneConfig(name="bed", kind="no_fall", polygon=[(0.5, 0.5), (1, 0.5), (1, 1)]))
    assert z.mask(64, 48) is z.mask(64, 48)
    assert z.contains_px(60, 40, 64, 48)
    assert not z.contains_px(5, 5, 64, 48)

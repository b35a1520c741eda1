"""Demo footage composition (on a stand-in for vtest, so no download is needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.config import load_site
from hub.demo import demo_cameras
from hubtools import demo_media
from hubtools.demo_media import MediaUnavailable, _write, fall_frames, obstruction_frames


@pytest.fixture
def plaza(tmp_path: Path) -> Path:
    """768x576 at 10 fps, 25 s, like vtest: a textured scene with a white 'van'."""
    rng = np.random.default_rng(0)
    base = rng.integers(60, 160, (576, 768, 3), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (9, 9), 0)
    x1, y1, x2, y2 = demo_media.VAN_BOX
    base[y1 + 5:y2 - 5, x1 + 5:x2 - 5] = 235
    out = cv2.VideoWriter(str(tmp_path / "plaza.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                          (768, 576))
    for _ in range(250):
        out.write(base)
    out.release()
    return tmp_path / "plaza.avi"


def test_the_van_parks_in_the_lane_from_20_s_on(plaza: Path) -> None:
    frames = list(obstruction_frames(plaza))
    ax, ay = demo_media.VAN_AT
    region = (slice(ay + 20, ay + 80), slice(ax + 20, ax + 110))
    before = frames[199][region].astype(int)
    after = frames[200][region].astype(int)
    assert np.abs(frames[0][region].astype(int) - before).mean() < 8  # lane empty before
    assert (after > 200).mean() > 0.5  # the white van stands there from 20 s
    assert np.abs(frames[-1][region].astype(int) - after).mean() < 8  # and stays


def test_the_fall_clip_has_a_person_standing_then_lying(plaza: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    frames = list(fall_frames(plaza, seconds=8.0, start_s=0.0))
    assert len(frames) == 80
    ok, background = cv2.VideoCapture(str(plaza)).read()
    assert ok

    def person_box(f: np.ndarray) -> tuple[int, int]:
        diff = np.abs(f.astype(int) - background.astype(int)).sum(axis=2) > 60
        ys, xs = np.nonzero(diff)
        return int(xs.max() - xs.min()), int(ys.max() - ys.min())

    w0, h0 = person_box(frames[20])  # 2 s: standing
    w1, h1 = person_box(frames[70])  # 7 s: lying since 4.6 s
    assert h0 > 2 * w0 and w1 > 2 * h1
    path = _write(tmp_path / "fall.mp4", 10.0, iter(frames))
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 80


def test_without_apt_the_error_says_what_to_do(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_media, "_find_vtest", lambda: None)
    monkeypatch.setattr(demo_media.shutil, "which", lambda name: None)
    with pytest.raises(MediaUnavailable, match="opencv-doc"):
        demo_media.fetch_vtest(tmp_path)


def test_a_user_supplied_fall_clip_is_used(tmp_path: Path, plaza: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "vtest.avi").write_bytes(plaza.read_bytes())
    (tmp_path / "media" / "obstruction.mp4").write_bytes(b"cached")
    monkeypatch.setenv(demo_media.FALL_ENV, str(plaza))
    media = demo_media.fetch_demo_media(tmp_path / "media")
    assert media["demo:fall"] == plaza
    assert media["demo:obstruction"] == tmp_path / "media" / "obstruction.mp4"
    monkeypatch.setenv(demo_media.FALL_ENV, str(tmp_path / "nope.mp4"))
    with pytest.raises(MediaUnavailable, match="not a file"):
        demo_media.fetch_demo_media(tmp_path / "media")


def test_the_demo_hands_its_cameras_files_not_demo_names(tmp_path: Path) -> None:
    site = load_site(Path(__file__).resolve().parents[2] / "deploy" / "sites" / "demo.yaml")
    media = {name: tmp_path / f"{name[5:]}.mp4" for name in
             ("demo:adl", "demo:obstruction", "demo:fall")}
    cams = dict(demo_cameras(site, media))
    assert {k: c.source for k, c in cams.items()} == {
        "cam-b3-lane": str(tmp_path / "obstruction.mp4"),
        "cam-b3-stair2": str(tmp_path / "fall.mp4"),
        "cam-b7-stair1": str(tmp_path / "adl.mp4")}
    # Only the source changes: zones, rate and looping are the site file's.
    original = {d.id: d.camera for d in site.devices if d.camera is not None}
    for k, c in cams.items():
        assert c.model_copy(update={"source": original[k].source}) == original[k]

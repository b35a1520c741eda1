"""Fall rule with synthetic keypoints and timestamps to the second (no model, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from hub.config import FallRule, ZoneConfig
from hub.domain import AlarmState, Severity
from hub.vision.fall import FallDetector
from hub.vision.people import Person
from hub.vision.posture import Posture, classify
from hub.vision.tracker import Tracker
from hub.vision.zones import Zone

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
FPS = 5
SIZE = (640, 480)


def upright(cx: float = 320, top: float = 100, h: float = 300) -> Person:
    """A standing person: head at the top, torso and legs vertical."""
    k = np.zeros((17, 3), np.float32)
    k[:, 2] = 0.9
    k[0:5] = [cx, top + 0.06 * h, 0.9]
    k[5], k[6] = [cx - 30, top + 0.2 * h, 0.9], [cx + 30, top + 0.2 * h, 0.9]
    k[7], k[8] = [cx - 35, top + 0.35 * h, 0.9], [cx + 35, top + 0.35 * h, 0.9]
    k[9], k[10] = [cx - 35, top + 0.5 * h, 0.9], [cx + 35, top + 0.5 * h, 0.9]
    k[11], k[12] = [cx - 20, top + 0.52 * h, 0.9], [cx + 20, top + 0.52 * h, 0.9]
    k[13], k[14] = [cx - 20, top + 0.75 * h, 0.9], [cx + 20, top + 0.75 * h, 0.9]
    k[15], k[16] = [cx - 20, top + 0.98 * h, 0.9], [cx + 20, top + 0.98 * h, 0.9]
    return Person((cx - 45, top, cx + 45, top + h), 0.9, k)


def lying(cx: float = 320, cy: float = 400, length: float = 300) -> Person:
    """A person flat on the floor, head to the left."""
    k = np.zeros((17, 3), np.float32)
    x0 = cx - length / 2
    k[0:5] = [x0 + 0.06 * length, cy, 0.8]
    k[5], k[6] = [x0 + 0.2 * length, cy - 25, 0.8], [x0 + 0.2 * length, cy + 25, 0.8]
    k[7:11] = [x0 + 0.35 * length, cy, 0.8]
    k[11], k[12] = [x0 + 0.52 * length, cy - 18, 0.8], [x0 + 0.52 * length, cy + 18, 0.8]
    k[13], k[14] = [x0 + 0.75 * length, cy - 18, 0.8], [x0 + 0.75 * length, cy + 18, 0.8]
    k[15], k[16] = [x0 + 0.98 * length, cy - 18, 0.8], [x0 + 0.98 * length, cy + 18, 0.8]
    return Person((x0, cy - 45, x0 + length, cy + 45), 0.8, k)


class Scene:
    """Feeds one person's frames at FPS through tracker + fall rule, collecting decisions."""

    def __init__(self, rule: FallRule | None = None, zones: list[Zone] | None = None) -> None:
        self.tracker = Tracker()
        self.fall = FallDetector(rule or FallRule(confirm_s=1.0, severity_raise_s=60),
                                 zones or [])
        self.decisions: list = []
        self.t = 0.0

    def play(self, seconds: float, make) -> None:
        for _ in range(round(seconds * FPS)):
            ts = T0 + timedelta(seconds=self.t)
            people = [make(self.t)] if make is not None else []
            seen, dropped = self.tracker.update(ts, people)
            self.decisions += self.fall.update(ts, seen, dropped, SIZE)
            self.t = round(self.t + 1 / FPS, 6)

    def fired(self) -> list:
        return [d for d in self.decisions if d.state is AlarmState.FIRING]


def test_posture_of_synthetic_people() -> None:
    assert classify(upright()).posture is Posture.UPRIGHT
    assert classify(lying()).posture is Posture.LYING


def test_fast_fall_fires_once_lying_is_confirmed() -> None:
    s = Scene()
    s.play(5, lambda t: upright())  # 0.0 .. 4.8
    s.play(10, lambda t: lying())  # lands at 5.0
    fired = s.fired()
    assert len(fired) == 1
    # First lying frame 5.0; confirmed after confirm_s = 1.0 s.
    assert fired[0].ts == T0 + timedelta(seconds=6.0)
    assert fired[0].severity is Severity.MAJOR
    assert fired[0].reading.posture is Posture.LYING


def test_severity_rises_while_down_and_getting_up_clears() -> None:
    s = Scene(FallRule(confirm_s=1.0, severity_raise_s=20))
    s.play(5, lambda t: upright())
    s.play(30, lambda t: lying())
    fired = s.fired()
    assert [d.severity for d in fired] == [Severity.MAJOR, Severity.CRITICAL]
    assert fired[1].ts == T0 + timedelta(seconds=25.0)  # 20 s after landing at 5.0
    assert fired[1].key == fired[0].key  # same alarm, updated
    s.play(5, lambda t: upright(cx=330))
    cleared = [d for d in s.decisions if d.state is AlarmState.CLEARED]
    assert len(cleared) == 1
    # Upright again from 35.0; cleared once upright for clear_s = 1.5 s.
    assert cleared[0].ts == T0 + timedelta(seconds=36.6)
    assert cleared[0].key == fired[0].key


def test_lying_in_bed_from_the_start_is_not_a_fall() -> None:
    s = Scene()
    s.play(120, lambda t: lying())
    assert s.fired() == []


def test_lying_down_slowly_is_not_a_fall() -> None:
    """Upright, then several seconds of neither (sitting on the bed edge, reclining),
    then lying: no fast transition."""
    s = Scene()
    s.play(5, lambda t: upright())

    def reclining(t: float) -> Person:
        # Upper body leaning back 45 degrees around the hips: neither upright nor lying.
        p = upright()
        k = p.keypoints.copy()
        hip = k[11:13, :2].mean(axis=0)
        c, s_ = np.cos(np.radians(45)), np.sin(np.radians(45))
        for i in range(11):
            dx, dy = k[i, :2] - hip
            k[i, :2] = hip + [c * dx - s_ * dy, s_ * dx + c * dy]
        x1, y1 = k[:, 0].min(), k[:, 1].min()
        x2, y2 = k[:, 0].max(), k[:, 1].max()
        return Person((float(x1), float(y1), float(x2), float(y2)), p.score, k)

    assert classify(reclining(0)).posture is Posture.UNKNOWN
    s.play(4, reclining)
    s.play(20, lambda t: lying())
    assert s.fired() == []


def test_brief_lying_reading_does_not_fire() -> None:
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(0.4, lambda t: lying())  # two frames of noise
    s.play(5, lambda t: upright())
    assert s.fired() == []


def test_no_fall_zone_excludes_lying_there() -> None:
    bed = Zone(ZoneConfig(name="bed", kind="no_fall",
                          polygon=[(0.2, 0.7), (0.8, 0.7), (0.8, 0.95), (0.2, 0.95)]))
    s = Scene(zones=[bed])
    s.play(5, lambda t: upright())
    s.play(10, lambda t: lying(cy=400))  # hips at y=400 of 480: inside the bed zone
    assert s.fired() == []
    # The same fall outside the zone fires: the zone, not the rule, stopped it.
    s2 = Scene(zones=[bed])
    s2.play(5, lambda t: upright())
    s2.play(10, lambda t: lying(cy=250))
    assert len(s2.fired()) == 1


def test_fall_towards_the_camera_found_by_the_drop_of_the_head() -> None:
    """Lying along the line of sight the torso looks vertical; the head coming down
    from standing height to the floor fast gives it away."""
    s = Scene()
    s.play(5, lambda t: upright(top=60, h=400))
    # Head from y=60 to y=300 (0.6 of the standing height), the box half as tall and
    # as wide as it is tall: the body seen end-on, lying towards the camera.
    def end_on(t: float) -> Person:
        p = upright(top=300, h=170)
        return Person((320 - 85, 300, 320 + 85, 470), p.score, p.keypoints)

    s.play(10, end_on)
    fired = s.fired()
    assert len(fired) == 1
    # Landing at 5.0; drop cue waits confirm_s + 1 s.
    assert fired[0].ts == T0 + timedelta(seconds=7.0)


def test_standing_person_is_never_down_by_the_drop() -> None:
    """A tall narrow box with a vertical torso is standing, even right after a bigger
    box (two people merged, then parting)."""
    s = Scene()
    s.play(3, lambda t: upright(top=60, h=400))
    s.play(10, lambda t: upright(top=300, h=170))
    assert s.fired() == []


def test_walking_towards_the_camera_is_not_a_drop() -> None:
    s = Scene()
    s.play(3, lambda t: upright(top=60, h=200))
    s.play(5, lambda t: upright(top=60 + 30 * t, h=200 + 40 * t))  # grows: nearer
    assert s.fired() == []


def test_person_missed_while_down_keeps_the_alarm() -> None:
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(3, lambda t: lying())
    s.play(5, None)  # the model loses them for 5 s (> tracker max age)
    s.play(3, lambda t: lying())
    assert len(s.fired()) == 1
    assert not [d for d in s.decisions if d.state is AlarmState.CLEARED]


def test_lying_pass_is_paced_while_watching_and_sparser_while_firing(tmp_path,
                                                                      monkeypatch) -> None:
    """The rotated "lying" pass costs several inferences: while a fall is possible it
    runs at most every ``lying_watch_every_s`` of frame time, while an alarm is firing
    every ``lying_every_s``, otherwise never."""
    from hub.vision.analyzer import CameraAnalyzer

    class Pose:
        iou = 0.7
        calls: list[float] = []

        def detect_rotated(self, frame: np.ndarray, rois: object = ()) -> list[Person]:
            self.calls.append(self.t)
            return []

    pose = Pose()
    an = CameraAnalyzer("cam-1", "1101050010020101", [], FallRule(), tmp_path / "ev",
                        pose=pose, lying_every_s=2.0, lying_watch_every_s=0.5)  # type: ignore[arg-type]
    frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    mode = {"watch": False, "firing": False}
    fall = an.rule("fall").detector  # type: ignore[attr-defined]
    fall.watching = lambda ts: mode["watch"]  # type: ignore[method-assign]
    # Someone of concern while watching (a look needs one: tests/unit/test_lying_pass.py).
    fall.regions = lambda ts: [(100.0, 100.0, 150.0, 250.0)] if mode["watch"] else []  # type: ignore[method-assign]
    monkeypatch.setattr(FallDetector, "firing", property(lambda self: mode["firing"]))

    def play(start: float, seconds: float) -> None:
        for i in range(int(seconds * FPS)):
            pose.t = start + i / FPS  # type: ignore[attr-defined]
            an.process(T0 + timedelta(seconds=pose.t), frame, [])  # type: ignore[attr-defined]

    play(0, 2)
    assert pose.calls == []
    mode["watch"] = True
    play(2, 2)  # frames every 0.2 s: a look every third frame
    assert [round(t, 1) for t in pose.calls] == [2.0, 2.6, 3.2, 3.8]
    mode["watch"], mode["firing"] = False, True
    pose.calls.clear()
    play(4, 4)
    assert [round(t, 1) for t in pose.calls] == [5.8, 7.8]


def test_time_hidden_before_landing_does_not_count_against_the_transition() -> None:
    """Upright, then hidden behind something (no detection) for 2.6 s, then seen lying
    where they were lost: still a fast change, though more than transition_s (2.5 s)
    passed between the last upright and the first lying sighting."""
    s = Scene()
    s.play(3, lambda t: upright(cx=320, top=100, h=300))  # last upright at 2.8
    s.play(2.6, None)  # hidden 3.0 .. 5.4
    s.play(5, lambda t: lying(cx=320, cy=380))  # first seen down at 5.6
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.6)  # confirm_s after 5.6


def test_time_hidden_is_allowed_only_up_to_lost_s() -> None:
    s = Scene()
    s.fall.lost_s = 0.0  # no allowance: 2.8 s from upright to down is too slow
    s.play(3, lambda t: upright(cx=320, top=100, h=300))
    s.play(2.6, None)
    s.play(5, lambda t: lying(cx=320, cy=380))
    assert s.fired() == []


def test_leaving_at_the_side_is_not_hidden_time() -> None:
    """Someone last seen going out of the picture sideways is not hidden: the time
    away counts, and lying found there later is no fast change."""
    s = Scene()
    s.play(3, lambda t: upright(cx=600, top=100, h=300))  # box against the right side
    s.play(2.6, None)
    s.play(5, lambda t: lying(cx=480, cy=380))
    assert s.fired() == []


def test_leaving_at_the_top_is_not_hidden_time() -> None:
    """Walking away through a far door at the top of the picture is leaving too: lying
    found up there afterwards (the rotated pass sees ghosts) is no fast change."""
    s = Scene()
    s.play(3, lambda t: upright(cx=320, top=2, h=100))  # box against the top, small
    s.play(2.6, None)
    s.play(5, lambda t: lying(cx=320, cy=40, length=100))
    assert s.fired() == []


def test_lying_then_lost_from_view_is_confirmed_when_confirm_s_is_up() -> None:
    """Seen lying on three frames after being upright, then the model loses them (a
    person on the floor is the model's weak spot): fires once confirm_s is up."""
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(0.6, lambda t: lying())  # 5.0, 5.2, 5.4
    s.play(3, None)
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.0)
    assert fired[0].reason == "fast change to lying, lost from view while down"


def test_two_lying_frames_then_lost_is_not_enough() -> None:
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(0.4, lambda t: lying())  # two frames only
    s.play(3, None)
    assert s.fired() == []


def test_lost_after_a_sighting_that_was_not_down_is_not_confirmed() -> None:
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(0.6, lambda t: lying())
    s.play(0.2, lambda t: upright(top=200, h=200))  # neither down nor back up
    s.play(3, None)
    assert s.fired() == []


def test_fall_ending_sitting_on_the_ground_is_still_down() -> None:
    """After a fast change to lying the person sits up on the ground: torso upright,
    head somewhat lower than standing, box much shorter. Still down: it fires."""
    s = Scene()
    s.play(5, lambda t: upright(top=100, h=300))
    s.play(0.4, lambda t: lying())  # 5.0, 5.2
    s.play(5, lambda t: upright(top=166, h=165))  # sitting on the floor, legs out
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.0)


def test_getting_back_up_to_full_height_ends_the_down_episode() -> None:
    s = Scene()
    s.play(5, lambda t: upright(top=100, h=300))
    s.play(0.4, lambda t: lying())
    s.play(5, lambda t: upright(top=110, h=290))  # stood up again
    assert s.fired() == []


def test_walking_down_steps_keeps_the_upright_reference() -> None:
    """A standing person (tall narrow box, vertical torso) lower and smaller in the
    picture — going down steps, away from the camera — is still seen upright, so a fall
    right after counts from there, not from the last time they were full height."""
    s = Scene()
    s.play(2, lambda t: upright(top=100, h=300))  # full height until 1.8
    s.play(3, lambda t: upright(top=200, h=200))  # lower and smaller until 4.8
    s.play(5, lambda t: lying(cy=380))  # down at 5.0: 3.2 s after 1.8
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.0)


def test_a_person_lost_soon_after_being_upright_is_looked_for_while_tracked() -> None:
    """Hidden, glimpsed once (an unsure detection), hidden again: more than watch_s
    after the last sure upright sighting, but nearly all of it out of sight, so the
    lying pass still gets a region where they were last seen."""
    s = Scene()
    s.play(3, lambda t: upright())  # sure upright until 2.8
    s.play(2.6, None)  # hidden 3.0 .. 5.4
    p = upright()
    s.play(0.2, lambda t: Person(p.box, 0.3, p.keypoints))  # glimpsed at 5.6
    s.play(1.6, None)  # hidden again 5.8 .. 7.2
    ts = T0 + timedelta(seconds=7.2)
    assert (ts - (T0 + timedelta(seconds=2.8))).total_seconds() > s.fall.watch_s
    assert s.fall.regions(ts) == [p.box]
    s.fall.lost_s = 0.0  # without the allowance for time out of sight: not looked for
    assert s.fall.regions(ts) == []


def test_each_fall_episode_has_its_own_key_across_restarts() -> None:
    """Track ids start again at 1 after a restart: a new fall must not reuse the key
    (and so the open incident) of an older one."""
    s = Scene()
    s.play(5, lambda t: upright())
    s.play(5, lambda t: lying())  # lands at 5.0
    s.play(5, lambda t: upright())  # gets up
    s.play(5, lambda t: lying())  # falls again at 15.0
    first, second = s.fired()[0], s.fired()[-1]
    assert first.key == "1-20260301T080005"
    assert second.key == "1-20260301T080015"
    restarted = Scene()  # a restarted worker: the same track id 1, another fall
    restarted.t = 100.0
    restarted.play(5, lambda t: upright())
    restarted.play(5, lambda t: lying())
    assert restarted.fired()[0].key == "1-20260301T080145"


def crouching(top: float, floor: float = 400) -> Person:
    """Kneeling or crouching with the torso upright: the head at ``top``, the feet
    (and the box's bottom) on the floor line."""
    return upright(top=top, h=floor - top)


def crouch_then_lie(s: Scene, step_px: float) -> None:
    """Upright 5 s (top 100, 300 px tall), then the head comes down ``step_px`` a frame
    with the torso upright to 280 (0.6 of the height), stays kneeling there 1.6 s, then
    the person lies down on the floor."""
    s.play(5, lambda t: upright(top=100, h=300))  # 0.0 .. 4.8
    t0 = s.t

    def going_down(t: float) -> Person:
        return crouching(min(280.0, 100 + step_px * (round((t - t0) * FPS) + 1)))

    s.play(180 / step_px / FPS, going_down)
    s.play(1.6, lambda t: crouching(280))
    s.play(5, lambda t: lying(cy=400))


def test_kneeling_slowly_then_lying_down_is_not_a_fall() -> None:
    """The head comes down at 0.5 standing heights a second (30 px a frame at 5 fps)
    and the body stays low but not lying for 1.6 s: a deliberate getting down onto the
    floor, below ``fall_speed`` and not a topple. Without the speed gate it fires."""
    s = Scene()
    crouch_then_lie(s, 30)
    assert s.fired() == []
    ungated = Scene()
    ungated.fall.fall_speed = 0.0
    crouch_then_lie(ungated, 30)
    assert len(ungated.fired()) == 1


def test_dropping_fast_to_the_knees_then_lying_is_a_fall() -> None:
    """The same, but the head comes down at 1.5 standing heights a second (90 px a
    frame): a fall onto the knees. Down from 5.2 (top 280, the box 120 tall), a
    drop that would be confirmed at 7.2 (confirm_s + 1 s); seen lying at 7.0, more
    than confirm_s into the episode, it fires then."""
    s = Scene()
    crouch_then_lie(s, 90)
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=7.0)


def test_toppling_over_is_a_fall_however_slowly_the_head_comes_down() -> None:
    """Lying 0.2 s after the last sighting at full height, the head only 30 px (0.1 of
    the height) lower in the picture (a camera high up, the person falling towards
    it): a topple, a fast change to lying, confirmed at 6.0. With no topple allowance
    the slow head rules it out."""
    s = Scene()
    s.play(5, lambda t: upright(top=100, h=300))
    s.play(5, lambda t: lying(cy=130))
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.0)
    no_topple = Scene()
    no_topple.fall.topple_s = 0.0
    no_topple.play(5, lambda t: upright(top=100, h=300))
    no_topple.play(5, lambda t: lying(cy=130))
    assert no_topple.fired() == []


def test_a_descent_partly_out_of_sight_is_not_judged_by_its_speed() -> None:
    """Upright, hidden 1.4 s, then seen end-on low (the drop cue): the head came down
    200 px in 1.6 s, 0.42 standing heights a second on average, but most of it unseen
    - how fast it fell is unknown, so it is not ruled out. Confirmed by the drop cue
    at 6.4 + 2 s."""
    s = Scene()
    s.play(5, lambda t: upright(top=100, h=300))  # last upright 4.8
    s.play(1.4, None)  # hidden 5.0 .. 6.2

    def end_on(t: float) -> Person:
        p = upright(top=300, h=100)
        return Person((320 - 60, 300, 320 + 60, 400), p.score, p.keypoints)

    s.play(5, end_on)
    fired = s.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=8.4)


def foreshortened(t: float) -> Person:
    """A walker as a camera looking down can show them: the torso drawn across the
    picture (69 degrees from vertical) and the box wide, but the head where it was
    when they stood (top 100) and the box as tall (300)."""
    k = upright(top=100, h=300).keypoints.copy()
    k[5, :2], k[6, :2] = (200, 130), (230, 140)
    k[11, :2], k[12, :2] = (330, 180), (360, 190)
    return Person((180, 100, 460, 400), 0.9, k)


def test_a_lying_reading_with_the_body_not_come_down_is_not_a_fall() -> None:
    """Read as lying, yet the head is at standing height and the box as tall as
    standing: no fall fires, however long it lasts. The same reading with the head
    come down (the person on the floor) fires."""
    assert classify(foreshortened(0)).posture is Posture.LYING
    s = Scene()
    s.play(5, lambda t: upright(top=100, h=300))
    s.play(10, foreshortened)
    assert s.fired() == []
    down = Scene()
    down.play(5, lambda t: upright(top=100, h=300))

    def on_the_floor(t: float) -> Person:
        p = foreshortened(t)
        k = p.keypoints.copy()
        k[:, 1] += 150
        return Person((180, 250, 460, 400), p.score, k)

    down.play(10, on_the_floor)
    fired = down.fired()
    assert len(fired) == 1
    assert fired[0].ts == T0 + timedelta(seconds=6.0)


def test_a_camera_at_one_frame_a_second_is_not_judged_by_the_speed() -> None:
    """At 1 frame/s two sightings cannot time a fall: the head came down 0.6 of the
    standing height between 4.0 and 5.0, 0.6 heights a second as measured, below
    ``fall_speed``, but sightings more than ``timing_step_s`` apart do not rule a fall
    out. The drop cue confirms it at 5.0 + confirm_s + 1 s."""
    tracker = Tracker()
    fall = FallDetector(FallRule(confirm_s=1.0, severity_raise_s=60), [])

    def end_on() -> Person:
        p = upright(top=300, h=170)
        return Person((320 - 85, 300, 320 + 85, 470), p.score, p.keypoints)

    fired = []
    for second in range(12):
        ts = T0 + timedelta(seconds=second)
        seen, dropped = tracker.update(ts, [upright(top=60, h=400) if second < 5 else end_on()])
        fired += [d for d in fall.update(ts, seen, dropped, SIZE) if d.state is AlarmState.FIRING]
    assert [d.ts for d in fired] == [T0 + timedelta(seconds=7)]

"""Regression guard for the fall rule, without footage: the pose model's results on the
70 development clips (``tests/data/dev_poses.npz``, made by ``hub eval --export-poses``)
are replayed through the same analyzer ``hub eval`` runs, and scored against the clips'
ground truth. The figures below are the ones docs/vision.md gives; a change to the rule
that finds fewer falls, raises more false alarms or alarms later fails here."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hubtools import eval as ev
from hubtools import poserec

RECORDING = Path(__file__).resolve().parents[1] / "data" / "dev_poses.npz"
FALLS = 24
FOUND_AT_LEAST = 23
FALSE_ALARMS_AT_MOST = 2
MEDIAN_TIME_TO_ALARM_AT_MOST_S = 1.5


def _score(variant: ev.Variant) -> dict:
    recorded, truth = poserec.load(RECORDING)
    clips = [ev.clip_from_record(r, RECORDING.parent, ev.DEFAULT_THRESHOLD) for r in truth]
    with tempfile.TemporaryDirectory() as tmp:
        runner = ev.OursRunner(None, Path(tmp), None, recorded)
        rows = []
        for c in clips:
            events, duration, _ = runner.run(c, 5.0, 30.0, variant)
            rows.append((c, ev.score_falls(c, events, duration)))
    return ev.summarise_falls(rows)


def test_the_shipped_fall_rule_keeps_its_figures_on_the_recorded_dev_set() -> None:
    s = _score(ev.VARIANTS[0])
    assert s["falls"] == FALLS
    assert s["found"] >= FOUND_AT_LEAST, s
    assert s["false_alarms"] <= FALSE_ALARMS_AT_MOST, s
    assert s["median_time_to_alarm_s"] <= MEDIAN_TIME_TO_ALARM_AT_MOST_S, s


def test_the_guard_fails_a_weakened_rule() -> None:
    """The guard is not vacuous: the rule without its drop cue misses falls it finds."""
    weak = next(v for v in ev.VARIANTS if v.name == "no-drop-cue")
    assert _score(weak)["found"] < FOUND_AT_LEAST


def test_the_guard_fails_a_rule_that_raises_more_false_alarms() -> None:
    """Without the speed gate (kneeling, crouching, lying down on the floor taken for
    falls) the guard's false-alarm bound fails."""
    loose = next(v for v in ev.VARIANTS if v.name == "no-speed-gate")
    assert _score(loose)["false_alarms"] > FALSE_ALARMS_AT_MOST

"""The latest-frame mailbox keeps only the newest frame per camera."""

from __future__ import annotations

import threading

from hub.vision.mailbox import LatestMailbox


def test_a_camera_that_falls_behind_drops_stale_frames_instead_of_queueing() -> None:
    box: LatestMailbox[str, int] = LatestMailbox()
    for i in range(5):
        box.put("cam", i)
    assert box.pending() == 1
    assert box.get(timeout=0) == ("cam", 4)
    assert box.stats["cam"].dropped_stale == 4
    assert box.stats["cam"].put == 5
    box.done("cam")
    assert box.get(timeout=0) is None


def test_cameras_are_served_in_the_order_they_became_ready() -> None:
    box: LatestMailbox[str, int] = LatestMailbox()
    box.put("a", 1)
    box.put("b", 1)
    box.put("a", 2)  # replaces a's frame but keeps a's place in the line
    assert box.get(timeout=0) == ("a", 2)
    assert box.get(timeout=0) == ("b", 1)


def test_a_busy_camera_is_not_handed_to_a_second_consumer() -> None:
    box: LatestMailbox[str, int] = LatestMailbox()
    box.put("a", 1)
    assert box.get(timeout=0) == ("a", 1)
    box.put("a", 2)
    box.put("b", 1)
    # "a" is being analysed: the next consumer gets "b", not a's newer frame.
    assert box.get(timeout=0) == ("b", 1)
    assert box.get(timeout=0) is None
    box.done("a")
    assert box.get(timeout=0) == ("a", 2)


def test_get_wakes_on_put_and_on_close() -> None:
    box: LatestMailbox[str, int] = LatestMailbox()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(box.get(timeout=5)))
    t.start()
    box.put("cam", 7)
    t.join(5)
    assert got == [("cam", 7)]
    t2 = threading.Thread(target=lambda: got.append(box.get(timeout=5)))
    t2.start()
    box.close()
    t2.join(5)
    assert got[-1] is None and not t2.is_alive()

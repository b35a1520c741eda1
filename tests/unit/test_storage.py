"""hub.storage.FileStorage: keys, atomic writes, listing, deletion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub.storage import BadKey, FileStorage


def test_put_open_size_list_delete(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    assert s.put("evidence/cam-1/a.jpg", b"abc") == 3
    s.put("evidence/cam-2/b.jpg", b"hello")
    s.put("clips/fall/cam-1/c.mp4", b"x" * 10)
    with s.open("evidence/cam-1/a.jpg") as f:
        assert f.read() == b"abc"
    assert s.size("evidence/cam-2/b.jpg") == 5
    assert s.size("evidence/cam-2/none.jpg") is None
    assert [(x.key, x.size) for x in s.list("evidence")] == [
        ("evidence/cam-1/a.jpg", 3), ("evidence/cam-2/b.jpg", 5)]
    assert [x.key for x in s.list()] == ["clips/fall/cam-1/c.mp4", "evidence/cam-1/a.jpg",
                                          "evidence/cam-2/b.jpg"]
    assert list(s.list("attachments")) == []
    assert s.delete("evidence/cam-1/a.jpg") is True
    assert s.delete("evidence/cam-1/a.jpg") is False
    with pytest.raises(FileNotFoundError):
        s.open("evidence/cam-1/a.jpg")


def test_put_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    s.put("a/b.bin", b"1" * 1000)
    s.put("a/b.bin", b"2")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"2"
    assert os.listdir(tmp_path / "a") == ["b.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    s.put("a/b.bin", b"old")


    with pytest.raises(TypeError):
        s.put("a/b.bin", object())  # type: ignore[arg-type]
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"old"
    assert os.listdir(tmp_path / "a") == ["b.bin"]


def test_listing_skips_writers_temporaries(tmp_path: Path) -> None:
    s = FileStorage(tmp_path)
    s.put("a/b.bin", b"1")
    (tmp_path / "a" / ".tmp-123-c.bin").write_bytes(b"half")
    assert [x.key for x in s.list("a")] == ["a/b.bin"]


def test_put_file_moves_a_finished_file_in(tmp_path: Path) -> None:
    s = FileStorage(tmp_path / "store")
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"m" * 7)
    assert s.put_file("clips/x/c.mp4", src) == 7
    assert not src.exists()
    assert s.size("clips/x/c.mp4") == 7


@pytest.mark.parametrize("key", [
    "", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", ".hidden", "a/.tmp-1-b",
    "a\x00b", "a\\b", "x" * 129, "/".join(["a"] * 300), "a b",
])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    s = FileStorage(tmp_path)
    with pytest.raises(BadKey):
        s.put(key, b"x")
    with pytest.raises(BadKey):
        s.local_path(key)
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_out_of_the_store_is_not_a_file_of_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    root = tmp_path / "store"
    (root / "evidence").mkdir(parents=True)
    (root / "evidence" / "x.jpg").symlink_to(outside)
    s = FileStorage(root)
    assert s.local_path("evidence/x.jpg") is None
    assert s.size("evidence/x.jpg") is None

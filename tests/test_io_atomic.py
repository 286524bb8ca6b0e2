"""`xpengine.io.atomic`: all or nothing for files and model directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from xpengine.io.atomic import (
    directory_written_atomically,
    file_written_atomically,
    write_text_atomically,
)


def test_success_replaces_and_failure_keeps_the_old_directory(tmp_path):
    target = tmp_path / "sub" / "model"
    with directory_written_atomically(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # an ordinary directory, not mkdtemp's 0o700
    with directory_written_atomically(target) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced as a whole
    with pytest.raises(RuntimeError, match="disk full"):
        with directory_written_atomically(target) as tmp:
            (tmp / "c.txt").write_text("three")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no temporary left


def test_directory_swap_never_leaves_the_path_empty(tmp_path, monkeypatch):
    """The old directory is renamed aside before the new one comes in; if renaming in fails it comes back."""
    import xpengine.io.atomic as atomic

    target = tmp_path / "model"
    with directory_written_atomically(target) as tmp:
        (tmp / "a.txt").write_text("one")
    real_replace = os.replace
    calls = []

    def failing_second_replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # the new directory onto the path
            assert not target.exists()  # the old one is aside, not deleted
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_second_replace)
    with pytest.raises(OSError, match="rename failed"):
        with directory_written_atomically(target) as tmp:
            (tmp / "b.txt").write_text("two")
    monkeypatch.undo()
    assert calls[0][0] == "model" and calls[0][1].startswith(".model.old-")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the old one renamed back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_file_written_atomically(tmp_path):
    target = tmp_path / "out.json"
    assert write_text_atomically(target, "one") == target
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError, match="disk full"):
        with file_written_atomically(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".out.json.tmp-")
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "one"
    side = tmp_path / "_tmp"
    side.mkdir()
    with file_written_atomically(target, tmp_dir=side) as tmp:
        assert tmp.parent == side
        tmp.write_text("two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_tmp", "out.json"]
    assert not list(side.iterdir())


def test_files_reach_the_disk_before_their_names(tmp_path, monkeypatch):
    """Every file written (and the folders) is flushed before the rename that names it, and the parent
    after it: a training checkpoint is a directory, and a crash soon after its rename could leave the
    name on files whose bytes never reached the disk (helper-77 F8; files since session 29, directories
    since session 30)."""
    import xpengine.io.atomic as atomic

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = atomic._fsync, os.replace
    monkeypatch.setattr(atomic, "_fsync", lambda p: (events.append(("fsync", Path(p).name)), real_fsync(p)))
    monkeypatch.setattr(
        atomic.os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), real_replace(a, b))
    )
    target = tmp_path / "ckpt"
    with directory_written_atomically(target) as tmp:
        (tmp / "weights.safetensors").write_bytes(b"w" * 100)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "state.json").write_text("{}")
    names = list(events)
    renamed_in = names.index(("replace", "ckpt"))
    flushed_before = {n for kind, n in names[:renamed_in] if kind == "fsync"}
    assert {"weights.safetensors", "state.json", "sub"} <= flushed_before
    assert ("fsync", tmp_path.name) in names[renamed_in:]  # the parent, after the rename
    with file_written_atomically(tmp_path / "f.txt") as t:
        t.write_text("x")
    last = events[-3:]
    assert [k for k, _ in last] == ["fsync", "replace", "fsync"] and last[1][1] == "f.txt"


def test_special_files_in_a_directory_are_not_opened_to_be_flushed(tmp_path):
    """A FIFO in the new directory would block the open that flushes it (helper-87): regular files and
    folders only."""
    target = tmp_path / "d"
    with directory_written_atomically(target) as tmp:
        (tmp / "a.txt").write_text("a")
        os.mkfifo(tmp / "pipe")
        (tmp / "link").symlink_to(tmp_path / "nowhere")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "link", "pipe"]

"""`xpengine._atomic.directory_written_atomically`: all or nothing for model directories."""

from __future__ import annotations

import stat

import pytest

from xpengine._atomic import directory_written_atomically


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

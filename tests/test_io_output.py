"""`xpengine.io.OutputTarget`: refuse an existing output, write under a temporary name, rename on success."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpengine.io import OutputTarget


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_existing_output_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "tokens.parquet"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError) as err:
        OutputTarget(out, overwrite=False, hint="--overwrite")
    assert str(err.value) == f"{out} exists; pass --overwrite to replace it"
    with pytest.raises(FileExistsError, match="pass overwrite=True"):  # the default hint, for Python callers
        OutputTarget(str(out))
    assert out.read_bytes() == b"old" and _listing(tmp_path) == ["tokens.parquet"]


def test_new_output_is_written_through_the_temporary_name(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "metrics.json"  # missing parents are created
    target = OutputTarget(out, overwrite=False)
    with target as tmp:
        assert tmp == str(out) + ".partial" and not out.exists()
        Path(tmp).write_text("{}")
    assert out.read_text() == "{}" and _listing(out.parent) == ["metrics.json"]


def test_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"old")
    with OutputTarget(out, overwrite=True, hint="--overwrite") as tmp:
        Path(tmp).write_bytes(b"new")
        assert out.read_bytes() == b"old"  # untouched until the block ends
    assert out.read_bytes() == b"new" and _listing(tmp_path) == ["out.parquet"]


def test_failure_inside_keeps_old_output_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with OutputTarget(out, overwrite=True) as tmp:
            Path(tmp).write_bytes(b"half a fi")
            raise RuntimeError("writer failed")
    assert out.read_bytes() == b"old" and _listing(tmp_path) == ["out.parquet"]


def test_nothing_written_is_an_error_naming_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(FileNotFoundError, match=r"out\.parquet\.partial.*out\.parquet was not written"):
        with OutputTarget(out):
            pass
    assert _listing(tmp_path) == []


def test_fsspec_url_output() -> None:
    import fsspec

    url = "memory://xpengine-test-output/out.bin"
    fs = fsspec.filesystem("memory")
    fs.pipe(url, b"old")
    try:
        with pytest.raises(FileExistsError, match=r"memory://xpengine-test-output/out\.bin exists"):
            OutputTarget(url)
        with pytest.raises(RuntimeError):
            with OutputTarget(url, overwrite=True) as tmp:
                with fsspec.open(tmp, "wb") as f:
                    f.write(b"partial")
                raise RuntimeError("stop")
        assert fs.cat(url) == b"old" and not fs.exists(url + ".partial")
        with OutputTarget(url, overwrite=True) as tmp:
            assert tmp.startswith("memory://") and tmp.endswith("/xpengine-test-output/out.bin.partial")
            with fsspec.open(tmp, "wb") as f:
                f.write(b"new")
        assert fs.cat(url) == b"new" and fs.ls("/xpengine-test-output", detail=False) == [
            "/xpengine-test-output/out.bin"
        ]
    finally:
        fs.rm("/xpengine-test-output", recursive=True)

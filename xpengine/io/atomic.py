"""Atomic writing: the one home for "write under a temporary name, then rename it in".

- `file_written_atomically(path)`: yields a temporary path beside `path` (or in `tmp_dir`, on the
  same file system); when the block ends normally it is renamed onto `path` (`os.replace`: atomic on
  POSIX), when it raises it is removed and `path` is left as it was.
- `write_bytes_atomically` / `write_text_atomically`: the same for a payload in memory.
- `directory_written_atomically(path)`: the same for a whole directory (checkpoints, the XGBoost
  baseline, a run's final model): an existing directory is renamed aside, the new one renamed in,
  and only then the old one deleted, so `path` never holds a half-written or half-deleted tree.

Files are flushed to the disk (fsync) before the rename, and the directory after it. Local paths only;
fsspec URLs (object stores) go through `xpengine.io.OutputTarget`, whose local
case is the same rename. Temporary names start with "." and hold ".tmp-" (files) or are mkdtemp
directories starting with ".", so partition discovery and globs over outputs skip them. Standard
library only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "directory_written_atomically",
    "file_written_atomically",
    "write_bytes_atomically",
    "write_text_atomically",
]


def _temporary_name(path: Path, tmp_dir: str | os.PathLike | None) -> Path:
    directory = path.parent if tmp_dir is None else Path(tmp_dir)
    return directory / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's data to its disk, best effort (a file system that cannot is left
    as it is): a rename is atomic, but without this a crash or power cut soon after it can leave the new
    name on a file whose bytes never reached the disk (review of session 29)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file or a directory tree, best effort."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


@contextmanager
def file_written_atomically(
    path: str | os.PathLike, *, tmp_dir: str | os.PathLike | None = None
) -> Iterator[Path]:
    """Yield a temporary file name beside `path` (or in `tmp_dir`, which must be on the same file
    system) for the caller to write; on normal exit rename it onto `path`, replacing any file there;
    on an exception remove it and leave `path` as it was. Parent directories are not created:
    refusing a missing directory or an existing `path` is the caller's decision."""
    path = Path(path)
    tmp = _temporary_name(path, tmp_dir)
    try:
        yield tmp
        if tmp.is_file():
            _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file renamed onto it; returns `path`."""
    path = Path(path)
    with file_written_atomically(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file renamed onto it; returns `path`."""
    return write_bytes_atomically(path, text.encode())


@contextmanager
def directory_written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty directory beside `path` (its parents created); when the block ends normally
    it takes the place of `path`: an existing entry there is first renamed aside, the new directory
    renamed in, and only then the old one deleted (if renaming in fails, the old one is renamed
    back). Its files and folders are flushed to the disk before it is renamed in, and the parent after.
    When the block raises, the new directory is removed and `path` is left as it was. Refusing an
    existing `path` is the caller's decision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield tmp
        for sub, _dirs, files in os.walk(tmp):  # its bytes on the disk before its name (since session 30:
            for name in files:  # a training checkpoint that a crash had left with its name on empty files)
                if stat.S_ISREG(os.lstat(Path(sub) / name).st_mode):  # (not a FIFO's open, nor a link's)
                    _fsync(Path(sub) / name)
            _fsync(Path(sub))
        if os.path.lexists(path):
            old = path.with_name(f".{path.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

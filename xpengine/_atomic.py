"""Write a directory as a whole: fill a temporary directory beside it, then swap it in.

Used by the checkpoint and XGBoost-baseline writers, so a crash never leaves a half-written model
directory behind (single files go through `xpengine.io.OutputTarget` instead). Standard library only:
importable on machines without the data-stack dependencies.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["directory_written_atomically"]


@contextmanager
def directory_written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty directory beside `path` (its parents created); when the block ends normally
    it replaces `path` (an existing directory there is removed first), when it raises it is removed
    and `path` is left as it was. Refusing an existing `path` is the caller's decision."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary directory
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

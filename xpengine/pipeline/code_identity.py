"""The code a catalogue's rows were made with, part of the job's identity (`identity._job_identity`).

The flag rules (`features.flags.FLAG_RULES`), the isochrone grid's recipe and the model files name the
changes a developer knew would change rows; a change nobody named (a fix in a reader, in the σ
calibration, in the duplicate rules) went unseen, and a resume mixed rows of two code versions in one
catalogue (session 29's review, D6). `code_identity` adds what cannot be forgotten: the package version and
a SHA-256 over the package's own Python source (each file's path inside the package and its bytes, in
path order), so the same code gives the same digest in any checkout or install, and any edit another.

A resume under other code is refused, naming both; `--allow-code-change` keeps the finished partitions
(each record keeps the code it was made with, so the catalogue says which rows came from which code)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

__all__ = ["CODE_KEY", "code_identity", "describe_code"]

CODE_KEY = "code"


@functools.lru_cache(maxsize=1)
def _source_digest(root: str) -> tuple[str, int]:
    """SHA-256 (hex) over the package's .py files under `root` and their count."""
    h = hashlib.sha256()
    files = sorted(p for p in Path(root).rglob("*.py") if "__pycache__" not in p.parts)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest(), len(files)


def code_identity() -> dict[str, Any]:
    """{"version", "source_sha256" (first 16 hex digits), "files"} of the installed xpengine package."""
    import xpengine

    digest, n = _source_digest(str(Path(xpengine.__file__).resolve().parent))
    return {"version": xpengine.__version__, "source_sha256": digest[:16], "files": n}


def describe_code(code: Any) -> str:
    """How a refusal names a code identity: `xpengine 0.1.0 (source sha256 0123…, 180 files)`."""
    if not isinstance(code, dict):
        return "unknown"
    return f"xpengine {code.get('version')} (source sha256 {code.get('source_sha256')}, {code.get('files')} files)"

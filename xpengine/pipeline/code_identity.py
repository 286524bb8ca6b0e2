"""The code a catalogue's rows were made with, part of the job's identity (`identity._job_identity`).

The flag rules (`features.flags.FLAG_RULES`), the isochrone grid's recipe and the model files name the
changes a developer knew would change rows; a change nobody named (a fix in a reader, in the σ
calibration, in the duplicate rules) went unseen, and a resume mixed rows of two code versions in one
catalogue (session 29's review, D6). `code_identity` adds what cannot be forgotten: the package version and
a SHA-256 over the package's own Python source (each file's path inside the package and its bytes, in
path order, CRLF read as LF), so the same code gives the same digest in any checkout or install, and
any edit another, comments and docstrings included (an upgrade changes code; a developer's edit is one).
The versions of Python, numpy, pyarrow, torch and Ray are recorded beside it, not compared.

A resume under other code is refused, naming both; a record from before session 30 holds no code and is
refused as of unknown code. `--allow-code-change` keeps the finished partitions: each record keeps the
code it was made with, and `_JOB.json` lists every code its records name (`codes_in_records`) where
there is more than one.

The identity is the driver's; since session 31 every Ray worker that reads or predicts compares its own
code with it (`check_worker_code`: the predictor actors at their start, the read stage at each partition
from the source on the disk, in Ray Data's pool, the GPU branch's read tasks and the warm pool alike) and
raises `CodeMismatchError` where they differ: a node with another xpengine installed would otherwise
write its rows into the catalogue under the driver's code. The driver turns that error, however Ray
wraps it, into one line (`mismatch_message`) and stops."""

from __future__ import annotations

import functools
import hashlib
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CODES_KEY",
    "CODE_KEY",
    "CodeMismatchError",
    "check_worker_code",
    "code_identity",
    "codes_in_records",
    "describe_code",
    "expected_code",
    "mismatch_message",
    "one_code",
    "same_code",
    "source_digest",
]

CODE_KEY = "code"
CODES_KEY = "codes_in_records"  # in _JOB.json where the records name more than one code


_RUNTIME = ("numpy", "pyarrow", "torch", "ray")  # recorded beside the code, not compared (see below)


def _source_files(root: str) -> list[Path]:
    """The package's .py files under `root`, in path order: symlinked folders followed (rglob does not
    enter them, so an edit there went unseen: session 30's review), hidden folders (`.ipynb_checkpoints`)
    and `__pycache__` left out."""
    out = []
    for sub, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        out += [Path(sub) / f for f in files if f.endswith(".py") and not f.startswith(".")]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _zip_location(root: str) -> tuple[Path, str] | None:
    """(archive, the package's folder inside it) where `root` lies inside a zip archive (a package
    imported by zipimport: a zipapp, a zip on sys.path); None otherwise."""
    if os.path.isdir(root):
        return None
    path = Path(root)
    for parent in path.parents:
        if parent.is_file():
            return (parent, path.relative_to(parent).as_posix()) if zipfile.is_zipfile(parent) else None
    return None


def _zip_sources(archive: Path, inner: str) -> list[tuple[str, bytes]]:
    """The package's .py members under `inner` of `archive`, by the rules of `_source_files`."""
    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if n.startswith(f"{inner}/") and n.endswith(".py"))
        parts = {n: n[len(inner) + 1 :] for n in names}
        keep = [
            n for n in names if not any(x.startswith(".") or x == "__pycache__" for x in parts[n].split("/"))
        ]
        return [(parts[n], z.read(n)) for n in keep]


@functools.lru_cache(maxsize=4)
def _source_digest(root: str) -> tuple[str, int]:
    """SHA-256 (hex) over the package's .py files under `root` and their count: each file's path inside
    the package and its bytes with CRLF line ends read as LF (a Windows checkout is the same code); the
    members of a zip archive where the package was imported from one (it had hashed no file: helper-89
    #5). Cached per process: a module reloaded after an edit (a notebook's autoreload) keeps the digest of
    the code the process started with."""
    h = hashlib.sha256()
    inside = _zip_location(root)
    if inside is None and not os.path.isdir(root):  # a zip being rewritten, or no source on the disk at all
        raise OSError(f"{root}: neither a folder nor inside a readable zip archive")
    if inside is None:
        files = [(p.relative_to(root).as_posix(), p.read_bytes()) for p in _source_files(root)]
    else:
        files = _zip_sources(*inside)
    for rel, data in files:
        h.update(rel.encode())
        h.update(b"\0")
        h.update(data.replace(b"\r\n", b"\n"))
        h.update(b"\0")
    return h.hexdigest(), len(files)


def source_digest() -> str:
    """The full SHA-256 of the installed xpengine package's source (`_source_digest`)."""
    import xpengine

    return _source_digest(str(Path(xpengine.__file__).resolve().parent))[0]


def _runtime() -> dict[str, str | None]:
    """Python's and the main dependencies' versions, read from the installed distributions (nothing is
    imported: the driver never imports torch)."""
    import platform
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _RUNTIME:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_identity() -> dict[str, Any]:
    """{"version", "source_sha256" (first 16 hex digits), "files", "runtime"} of the installed xpengine.
    Two identities are the same code when version and source_sha256 agree (`same_code`): the runtime is
    recorded, not compared, since a refusal at every dependency update would teach users to pass
    --allow-code-change by habit."""
    import xpengine

    try:
        digest, n = _source_digest(str(Path(xpengine.__file__).resolve().parent))
        digest = digest[:16]
    except (OSError, zipfile.BadZipFile) as exc:  # named, never the digest of nothing
        digest, n = f"unreadable ({type(exc).__name__}: {exc})", 0
    return {"version": xpengine.__version__, "source_sha256": digest, "files": n, "runtime": _runtime()}


def same_code(a: Any, b: Any) -> bool:
    """Whether two recorded code identities name the same code (version and source digest)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a == b
    return all(a.get(k) == b.get(k) for k in ("version", "source_sha256"))


def describe_code(code: Any) -> str:
    """How a refusal names a code identity: `xpengine 0.1.0 source 0123456789abcdef`; `unknown (before
    session 30)` for a record without one."""
    if not isinstance(code, dict):
        return "unknown (before session 30)"
    return f"xpengine {code.get('version')} source {code.get('source_sha256')}"


def codes_in_records(records: dict[str, dict[str, Any]], identity: dict[str, Any]) -> dict[str, list[str]]:
    """{CODES_KEY: the codes the output's done `records` name, `identity`'s included} where they name
    more than the job's own (partitions kept with --allow-code-change, planned by this run or not); {}
    otherwise, or for an identity without code."""
    if CODE_KEY not in identity:
        return {}
    now = describe_code(identity[CODE_KEY])
    codes = {describe_code((r.get("job") or {}).get(CODE_KEY)) for r in records.values()}
    return {CODES_KEY: sorted(codes | {now})} if codes - {now} else {}


MISMATCH_MARK = "xpengine code mismatch:"


class CodeMismatchError(RuntimeError):
    """A Ray worker runs xpengine code other than the driver's (`check_worker_code`)."""


def _package_folder() -> str:
    import xpengine

    return str(Path(xpengine.__file__).resolve().parent)


def expected_code() -> dict[str, str]:
    """The driver's code as its workers compare it: {"version", "source_sha256"} (`code_identity`), and
    the driver's host and package folder, which only word the message of a mismatch."""
    import socket

    code = code_identity()
    return {
        "version": code["version"],
        "source_sha256": code["source_sha256"],
        "host": socket.gethostname(),
        "folder": _package_folder(),
    }


def check_worker_code(expected: dict[str, Any] | None, role: str, *, on_disk: bool = False) -> None:
    """Raise CodeMismatchError, naming this machine, its package's folder and both codes, where this
    process's xpengine is not the `expected` code (`expected_code` of the driver; None: not checked).
    on_disk: the source as it is on the disk now, not as this process first found it (a long-lived actor
    imports modules lazily, so files replaced since its start would run unchecked): the files' stats, and
    their bytes where those moved (`_code_on_disk`)."""
    if expected is None:
        return
    import socket

    import xpengine

    folder = _package_folder()
    mine = _code_on_disk(folder, xpengine.__version__) if on_disk else code_identity()
    if on_disk and not same_code(mine, expected):
        # a file being rewritten with the same bytes (an editor's save, `cp` over it, a reinstall) reads
        # as other code, or as missing, for milliseconds (review of session 31): looked at once more
        time.sleep(1.0)
        mine = _code_on_disk(folder, xpengine.__version__, fresh=True)
    if same_code(mine, expected):
        return
    host = socket.gethostname()
    where = host
    try:
        import ray

        if ray.is_initialized():
            where = f"{host} ({ray.util.get_node_ip_address()})"
    except Exception:  # the host name alone still names the machine  # pragma: no cover
        pass
    if expected.get("host") == host and expected.get("folder") == folder:  # one machine, one install
        advice = (
            f"the xpengine source in {folder} changed after the driver started: restart the driver (a "
            "notebook's kernel) to run the code now on the disk, or put the code it started with back"
        )
    elif expected.get("folder") == folder:  # a shared install, or one install per node at one path
        advice = (
            "an install at that path shared by the nodes was changed after the driver started (restart the "
            "driver), or the nodes' own installs there differ (install the same xpengine on every node)"
        )
    else:
        advice = (
            "install the same xpengine on every node of the cluster (a catalogue's rows come from one code)"
        )
    raise CodeMismatchError(
        f"{MISMATCH_MARK} the {role} on {where} runs {describe_code(mine)} from {folder}, the driver "
        f"{describe_code(expected)}: {advice}"
    )


_RACY_S = 2.0  # a file changed this recently may change again within its clock's tick: not cached
# an NFS client may serve a file's attributes from its cache for up to ~60 s (acregmax), so an edit on
# another host can leave the stats as they were for that long: the files are read again at least this often
_REREAD_S = 30.0
_ON_DISK: dict[str, tuple[tuple, str, int, float]] = {}  # folder -> (stat signature, digest, count, read at)


def _stat_signature(folder: str) -> tuple | None:
    """Each source file's path, inode, size, mtime and ctime (ctime moves on every write and cannot be
    set back), or None where one of them changed in the last _RACY_S seconds (git's racy-file rule)."""
    now = time.time()
    sig = []
    inside = _zip_location(folder)  # a zip's members change only with the archive
    for p in _source_files(folder) if inside is None else [inside[0]]:
        st = p.stat()
        if now - max(st.st_mtime, st.st_ctime) < _RACY_S:
            return None
        sig.append((p.as_posix(), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(sig)


def _code_on_disk(folder: str, version: str, *, fresh: bool = False) -> dict[str, Any]:
    """The package's code as its files are on the disk now (`_source_digest` without its process-wide
    cache); one that cannot be read (a file removed by a reinstall under way) is told apart from any
    code. The files are read again only where their stat signature moved since the last read (a
    partition's check then costs ~200 stats, not ~200 reads: helper-89 #4, a network filesystem), at
    least every _REREAD_S seconds (a network filesystem's cached attributes: helper-91), or when `fresh`."""
    try:
        sig = _stat_signature(folder)
        hit = _ON_DISK.get(folder)
        now = time.monotonic()
        if not fresh and sig is not None and hit is not None and hit[0] == sig and now - hit[3] < _REREAD_S:
            digest, n = hit[1], hit[2]
        else:
            digest, n = _source_digest.__wrapped__(folder)  # read after the signature: a write between
            if sig is not None:  # moves the signature, so the next check reads again
                _ON_DISK[folder] = (sig, digest, n, now)
    except (OSError, zipfile.BadZipFile) as exc:  # a damaged archive's CRC: BadZipFile (helper-93)
        return {"version": version, "source_sha256": f"unreadable ({type(exc).__name__}: {exc})", "files": 0}
    return {"version": version, "source_sha256": digest[:16], "files": n}


def mismatch_message(exc: BaseException) -> str | None:
    """The one-line message of a CodeMismatchError inside `exc` (raised here, or carried in the text of
    the error Ray raised for a worker, which names the error's class: an actor that died in its
    constructor, a failed task); None if there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        # (Ray raises an actor call's error as a RayTaskError that is also a CodeMismatchError, its
        # text the whole traceback: review of session 31)
        if isinstance(exc, CodeMismatchError) and text.startswith(MISMATCH_MARK):
            return text.splitlines()[0].strip()
        at = text.find(f"{CodeMismatchError.__name__}: {MISMATCH_MARK}")
        if at >= 0:
            return text[at + len(CodeMismatchError.__name__) + 2 :].splitlines()[0].strip()
        exc = exc.__cause__ or exc.__context__
    return None


def one_code(items: Iterator[Any], error: type[Exception]) -> Iterator[Any]:
    """`items` (the job's catalogue batches); a worker's CodeMismatchError inside an error raised while
    they are drawn (however Ray wrapped it) is raised again as `error` with its one-line message."""
    try:
        yield from items
    except Exception as exc:
        message = mismatch_message(exc)
        if message is None:
            raise
        raise error(message) from exc

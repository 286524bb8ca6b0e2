"""Bring a training run back from a lent GPU whole, so that it resumes exactly here.

A device call returns at most 8 files of 16 MiB. The paper-size model's last checkpoint is ~124 MB: its
float16 weights (18 MB) and its training state (106 MB: the float32 model state with AdamW's two
moments, the scheduler, scaler and RNG states). Session 9 brought back the weights only, so gaia-xp v5
cannot be resumed. Here the checkpoint travels without its weights file, which the float32 model state
in its training state rebuilds: the same tensors and metadata (`xpengine.model.checkpoint.restore_weights`):

    # on the device (standard library only): the run's last checkpoint, metrics.jsonl, time_budget.json
    python3 training/lease_return.py pack /tmp/lease_work/run $OUT --max-files 7
    # here, after the call: join the parts, check their SHA-256, unpack, rebuild model.safetensors
    python training/lease_return.py unpack runs/gpuN/call1 runs/gaia-xp-next
    python training/train.py --config ... --resume runs/gaia-xp-next    # continues exactly

`pack` writes run.tar.partNN (each under 16 MiB) and run.tar.json (the parts' and the whole tar's
SHA-256) and refuses, before writing anything, when the parts would need more than --max-files files.
training/gpu_lease.sh puts run.tar.json into logs.tar with the logs (7 parts + 1 file); `unpack` reads
it from there too. The paper size needs 7 parts (8,846,297 parameters x 4 bytes x 3: 106 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

PART_BYTES = 16 * 2**20 - 64 * 2**10  # under the 16 MiB a returned file may have
MANIFEST = "run.tar.json"
WEIGHTS_FILE = "model.safetensors"  # xpengine.model.metadata.WEIGHTS_FILE (not imported: stdlib only)
STATE_TENSORS_FILE = "train_state.safetensors"
RUN_FILES = ("metrics.jsonl", "time_budget.json")


def _last_checkpoint(run: Path) -> Path:
    """The run's newest checkpoint directory with a training state, by its epoch: `model` or the latest
    `checkpoints/epoch_NNNN` (a resumed run keeps the `model` it was unpacked or finished with while its
    newer epochs go to `checkpoints/`: session 34 packed a stale `model` of epoch 51 at epoch 72)."""
    found = [run / "model"] if (run / "model" / STATE_TENSORS_FILE).is_file() else []
    found += sorted(p for p in (run / "checkpoints").glob("epoch_*") if (p / STATE_TENSORS_FILE).is_file())
    if not found:
        raise FileNotFoundError(f"{run}: no checkpoint with a training state ({STATE_TENSORS_FILE})")
    return max(found, key=lambda p: json.loads((p / "train_state.json").read_text())["epoch"])


def _has_model_state(ckpt: Path) -> bool:
    state = json.loads((ckpt / "train_state.json").read_text())
    return bool(state.get("has_model_state"))


def pack(run: str | Path, out: str | Path, max_files: int = 7, part_bytes: int = PART_BYTES) -> dict:
    run, out = Path(run), Path(out)
    ckpt = _last_checkpoint(run)
    skip_weights = _has_model_state(ckpt)  # rebuilt from the training state at unpack
    members = [
        (p, f"checkpoint/{p.name}")
        for p in sorted(ckpt.resolve().iterdir())
        if p.is_file() and not (skip_weights and p.name == WEIGHTS_FILE)
    ]
    members += [(run / f, f) for f in RUN_FILES if (run / f).is_file()]
    size = sum(p.stat().st_size for p, _ in members) + 1024 * (len(members) + 2)  # tar headers, end
    n_parts = -(-size // part_bytes)
    if n_parts > max_files:
        raise SystemExit(
            f"{ckpt}: {size / 2**20:.1f} MiB needs {n_parts} files of {part_bytes / 2**20:.2f} MiB, "
            f"more than --max-files {max_files}"
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, name in members:
            tar.add(path, arcname=name, recursive=False)
    data = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, start in enumerate(range(0, len(data), part_bytes)):
        chunk = data[start : start + part_bytes]
        name = f"run.tar.part{k:02d}"
        (out / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {
        "checkpoint": str(ckpt),
        "weights_left_out": skip_weights,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "parts": parts,
        "members": [name for _, name in members],
    }
    if len(parts) > max_files:  # the estimate above undercounted the tar's own bytes
        for p in parts:
            (out / p["name"]).unlink()
        raise SystemExit(f"{ckpt}: the tar took {len(parts)} parts, more than --max-files {max_files}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _manifest_text(parts_dir: Path) -> str:
    """run.tar.json beside the parts, or inside logs.tar (training/gpu_lease.sh packs it there, so that
    the parts, the logs and the manifest are 8 files)."""
    if (parts_dir / MANIFEST).is_file():
        return (parts_dir / MANIFEST).read_text()
    if (parts_dir / "logs.tar").is_file():
        with tarfile.open(parts_dir / "logs.tar") as tar:
            try:
                return tar.extractfile(MANIFEST).read().decode()
            except KeyError:
                pass
    raise FileNotFoundError(f"{parts_dir}: no {MANIFEST}, beside the parts or in logs.tar")


def unpack(parts_dir: str | Path, dest: str | Path) -> dict:
    """Join and check the parts, write the checkpoint as `dest/model` (plus a copy of it as
    `dest/checkpoints/epoch_NNNN`, and the run files), and rebuild its weights file when it travelled
    without one. The copy is a directory of its own, not a link to `model`: a run resumed in `dest`
    replaces `model` and prunes old checkpoints, and neither may change or keep the other."""
    parts_dir, dest = Path(parts_dir), Path(dest)
    manifest = json.loads(_manifest_text(parts_dir))
    chunks = []
    for p in manifest["parts"]:
        path = parts_dir / p["name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: part missing (the manifest lists {len(manifest['parts'])})")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != p["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from {MANIFEST}'s: the part is damaged")
        chunks.append(chunk)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{parts_dir}: the joined tar's SHA-256 differs from {MANIFEST}'s")
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    model = dest / "model"
    model.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            if not m.isfile() or "/" in m.name.removeprefix("checkpoint/") or ".." in m.name:
                raise ValueError(f"{parts_dir}: unexpected member {m.name!r} in the tar")
            target = (
                model / m.name.removeprefix("checkpoint/")
                if m.name.startswith("checkpoint/")
                else dest / m.name
            )
            target.write_bytes(tar.extractfile(m).read())
    if manifest["weights_left_out"]:
        from xpengine.model.checkpoint import restore_weights

        restore_weights(model)
    epoch = json.loads((model / "train_state.json").read_text())["epoch"]
    (dest / "checkpoints").mkdir()
    shutil.copytree(model, dest / "checkpoints" / f"epoch_{epoch:06d}")
    return {
        "dest": str(dest),
        "epoch": epoch,
        "bytes": manifest["bytes"],
        "weights_rebuilt": manifest["weights_left_out"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="on the device: the run's last checkpoint in parts under 16 MiB")
    p.add_argument("run")
    p.add_argument("out")
    p.add_argument("--max-files", type=int, default=7, help="parts allowed (a call returns 8 files)")
    u = sub.add_parser("unpack", help="here: join, check, unpack, rebuild the weights file")
    u.add_argument("parts_dir")
    u.add_argument("dest")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        m = pack(args.run, args.out, args.max_files)
        print(
            json.dumps(
                {k: m[k] for k in ("checkpoint", "weights_left_out", "bytes")} | {"parts": len(m["parts"])}
            )
        )
    else:
        print(json.dumps(unpack(args.parts_dir, args.dest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

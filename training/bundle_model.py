"""Copy a trained checkpoint into the package as a bundled model, with a model card.

    python training/bundle_model.py RUN_DIR NAME --command "python training/train.py ..." \
        [--evaluation results/NAME/metrics.json] [--notes NOTES.md] [--overwrite]

RUN_DIR is a training output directory (its latest checkpoint is used) or a checkpoint directory. Only
what inference needs is copied (weights, config, vocabulary, standardisation, provenance; no optimiser
state) to `xpengine/data/models/NAME/`, and `MODEL_CARD.md` is written from the checkpoint's own
provenance and validation history, plus the evaluation metrics (test σ of every model, z-spread of the
transformer's σ before and after calibration) when given, plus a hand-written notes section (training
recipe, departures from the paper, what the numbers mean) when given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("model.safetensors", "config.json", "vocabulary.json", "standardization.json", "provenance.json")


def _latest_checkpoint(run: Path) -> Path:
    if (run / "model.safetensors").is_file():
        return run
    ckpts = sorted((run / "checkpoints").glob("epoch_*"))
    if not ckpts:
        raise SystemExit(f"{run}: no checkpoint found (expected {run}/checkpoints/epoch_*/)")
    return ckpts[-1]


def _card(
    name: str,
    ckpt: Path,
    command: str,
    evaluation: dict | None,
    history: list[dict],
    notes: str | None = None,
) -> str:
    prov = json.loads((ckpt / "provenance.json").read_text())
    cfg = json.loads((ckpt / "config.json").read_text())
    data = prov.get("data", {})
    lines = [
        f"# Model card: `{name}`",
        "",
        f"- Trained with: `{command}`",
        f"- Data: `{data.get('path')}` ({data.get('n_train')} training / {data.get('n_val')} validation stars; "
        f"vocabulary `{data.get('vocabulary')}`; XP representation `{prov.get('xp_representation')}`)",
        f"- Model: {prov.get('n_parameters'):,} parameters; config `{json.dumps(cfg.get('model', cfg.get('model_config', {})))}`",
        f"- Epochs: {prov.get('epochs_completed')}; wall time of the last training call {prov.get('wall_time_s', 0) / 60:.1f} min",
        f"- Hardware: {json.dumps(prov.get('hardware'))}; torch {prov.get('torch_version')}; git {prov.get('git_commit')}",
        f"- Date (UTC): {prov.get('date_utc')}",
        "",
        "## Validation during training (robust σ, physical units; inputs: the config's `val_inputs`)",
        "",
    ]
    vals = [h for h in history if "val_nll" in h]
    if vals:
        keys = [k for k in vals[-1] if k.startswith("val_sigma_")]
        lines.append("| epoch | " + " | ".join(k.removeprefix("val_sigma_") for k in keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for h in vals:
            lines.append(f"| {h['epoch']} | " + " | ".join(f"{h[k]:.4g}" for k in keys) + " |")
    if evaluation:
        lines += ["", "## Test split (`xpengine evaluate`; robust σ = 1.4826·MAD)", ""]
        models = evaluation.get("models", {})
        labels = sorted({lab for m in models.values() for lab in m})
        lines.append("| model | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for mname, m in models.items():
            cells = [
                f"{m[lab]['sigma']:.4g} (n={m[lab]['n']})"
                if lab in m and m[lab].get("sigma") is not None
                else "–"
                for lab in labels
            ]
            lines.append(f"| {mname} | " + " | ".join(cells) + " |")
        cal = evaluation.get("calibration") or {}
        raw, fixed = cal.get("raw") or {}, cal.get("calibrated") or {}
        if raw:
            lines += [
                "",
                "Robust σ of z = (pred − truth)/σ on the test split (1 = honest uncertainties):",
                "",
            ]
            lines.append("| σ | " + " | ".join(raw) + " |")
            lines.append("|---|" + "---|" * len(raw))
            for title, block in (("raw", raw), ("calibrated", fixed)):
                if block:
                    cells = [_z(block.get(lab)) for lab in raw]
                    lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def _z(entry: dict | None) -> str:
    z = ((entry or {}).get("overall") or {}).get("z_sigma")
    return "–" if z is None else f"{z:.3f}"


def _write_bundle(args: argparse.Namespace, ckpt: Path, dest: Path) -> None:
    """The bundle's files in `dest`: the checkpoint's inference files, the calibration beside the
    evaluation when given, and the model card."""
    for f in FILES:
        shutil.copy(ckpt / f, dest / f)
    cal = args.evaluation.parent / "calibration.json" if args.evaluation else None
    if cal is not None and cal.is_file():
        shutil.copy(cal, dest / "calibration.json")
    hist_file = args.run / "metrics.jsonl"
    history = [json.loads(x) for x in hist_file.read_text().splitlines()] if hist_file.is_file() else []
    evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
    notes = args.notes.read_text() if args.notes else None
    (dest / "MODEL_CARD.md").write_text(_card(args.name, ckpt, args.command, evaluation, history, notes))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--command", required=True, help="the command that trained it (for the card)")
    ap.add_argument("--evaluation", type=Path, help="metrics.json of `xpengine evaluate`")
    ap.add_argument("--notes", type=Path, help="markdown appended to the model card")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    ckpt = _latest_checkpoint(args.run)
    final = ROOT / "xpengine" / "data" / "models" / args.name
    if final.exists() and not args.overwrite:
        raise SystemExit(f"{final} exists; pass --overwrite")
    # written beside it and swapped in at the end: a failure midway leaves the bundled model as it was
    # (it used to be deleted first, found by a review)
    dest = final.parent / f".{args.name}.new"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    try:
        _write_bundle(args, ckpt, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    old = final.parent / f".{args.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    dest.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    print(f"bundled {ckpt} as {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

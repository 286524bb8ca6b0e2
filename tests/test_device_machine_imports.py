"""The training loop and the predictor run on a machine with torch, numpy, pandas, pyarrow, fsspec, pyyaml
and safetensors only (the lent GPU machine: no Ray, astropy, gaiaxpy, xgboost, MIST packages, ...).

A subprocess blocks every other dependency of the project at import (a `sys.meta_path` finder, and
`importlib.util.find_spec` says they are absent), then trains the tiny preset for two epochs with
`training/train.py --no-ray`, resumes it for a third, and predicts with the bundled models.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the project's dependencies (pyproject.toml) the device machine lacks, by import name
ABSENT = (
    "ray", "astropy", "gaiaxpy", "xgboost", "zero_point", "isal", "matplotlib", "duckdb", "extinction",
    "psutil", "h5py", "lachesis_grids", "astrolachesis", "scipy", "sklearn",
)  # fmt: skip

PRELUDE = textwrap.dedent(
    f"""
    import importlib.abc, importlib.util, sys
    ABSENT = {ABSENT!r}

    def _absent(name):
        return (name or "").split(".")[0] in ABSENT

    class _Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if _absent(name):
                raise ModuleNotFoundError(f"absent on the device machine: {{name}}", name=name)
            return None

    sys.meta_path.insert(0, _Blocker())
    _find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, package=None: None if _absent(name) else _find_spec(name, package)
    for _m in [m for m in sys.modules if _absent(m)]:
        del sys.modules[_m]
    """
)


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "device.py"
    script.write_text(PRELUDE + textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_blocker_blocks(tmp_path):
    proc = _run("import ray\n", tmp_path)
    assert proc.returncode != 0 and "absent on the device machine: ray" in proc.stderr


def test_train_resume_and_predict_without_the_absent_packages(tmp_path):
    proc = _run(
        f"""
        import runpy
        import numpy as np
        from xpengine.train.toy import write_toy_training_set

        data = write_toy_training_set({str(tmp_path / "toy.parquet")!r}, 600)
        out = {str(tmp_path / "run")!r}
        common = ["--config", "configs/train/small.yaml", "--no-ray", f"data_path={{data}}", f"output_dir={{out}}",
                  "model=tiny", "batch_size=128", "val_every=1", "checkpoint_every=1", "scheduler_t0=3",
                  "requestable=[teff,logg,m_h]", "device=cpu", "focus_fraction=0"]
        for argv in (common + ["epochs=2"], common + ["epochs=3", "--resume", out]):
            sys.argv = ["training/train.py", *argv]
            try:
                runpy.run_path("training/train.py", run_name="__main__")
            except SystemExit as exc:
                assert not exc.code, exc.code

        from xpengine.inference.predictor import Predictor

        trained = Predictor.load(out + "/model", device="cpu")
        rng = np.random.default_rng(0)
        for p in (trained, Predictor.load("apogee-xp", device="cpu"), Predictor.load("gaia-xp", device="cpu")):
            values = rng.normal(0.0, 0.3, (4, len(p.vocabulary))).astype(np.float32)
            out_labels = p.predict(values, request=["teff", "logg"])
            assert all(np.isfinite(v).all() for v in out_labels.values()), out_labels
        blocked = sorted(m for m in sys.modules if m.split(".")[0] in ABSENT)
        assert not blocked, blocked
        print("DEVICE-OK")
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "DEVICE-OK" in proc.stdout

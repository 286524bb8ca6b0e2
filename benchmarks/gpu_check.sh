#!/bin/bash
# The prepared call for a lent GPU (issue 16): benchmarks/gpu_check.py with everything it needs carried.
# The device machine has torch, numpy, pandas, pyarrow, fsspec, pyyaml and safetensors, but no Ray, astropy,
# gaiaxpy, xgboost, MIST packages or gaiadr3-zeropoint, and a call carries at most 64 MiB with the
# repository's tracked files (41.6 MB in session 27).
#
# 1. Here, once (the virtualenv, ../shared's APOGEE x XP file and the MIST packages installed):
#        bash benchmarks/gpu_check.sh prepare
#    writes runs/gpu/: data.parquet (the APOGEE x XP training rows packed by training/lease_data.py, 7.1 MB),
#    isochrone_cache/ (the isochrone fit's grid, 13.1 MB: the job stage fits the stars outside the
#    mass/age domain, and since session 20 on CUDA in torch, never yet measured on a GPU) and
#    pylib/zero_point (the gaiadr3-zeropoint package, LGPL-3.0+, 60 kB: the read stage's parallax zero
#    point), and refuses when tracked files + runs/gpu exceed 64 MiB.
# 2. On the device:
#        run(command="bash benchmarks/gpu_check.sh run", carry=["runs/gpu"], timeout_s=590)
#    runs gpu_check.py (the job stage and the warm pool first, the report written after every step) within
#    TOTAL seconds (default 560) and leaves $OUT/gpu_check.log and $OUT/check.tar (its JSON and texts).
# Dry run of step 2 on a CPU: OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh run --quick
set -u
MODE=${1:-}
QUICK=${2:-}
GPU=runs/gpu
case "$MODE" in
prepare)
    set -e
    [ -f runs/apogee_xp_dev.parquet ] || xpengine build-dataset apogee-xp \
        --input ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --output runs/apogee_xp_dev.parquet
    rm -rf $GPU && mkdir -p $GPU/pylib
    python training/lease_data.py pack runs/apogee_xp_dev.parquet $GPU/data.parquet \
        --tokens bp0..29 rp0..29 bprp jh jk teff logg m_h alpha_m
    XPENGINE_CACHE=$GPU/isochrone_cache python -c \
        "from xpengine.inference.isochrone_grid import load_fit_grid; load_fit_grid()"
    ZP=$(python -c "import os, zero_point; print(os.path.dirname(zero_point.__file__))")
    cp -r "$ZP" $GPU/pylib/zero_point
    find $GPU/pylib -name __pycache__ -prune -exec rm -rf {} +
    python - <<'EOF'
import subprocess
from pathlib import Path

tracked = sum(Path(p).stat().st_size for p in subprocess.run(
    ["git", "ls-files", "-z"], capture_output=True, check=True).stdout.decode().split("\0") if p and Path(p).is_file())
carried = sum(p.stat().st_size for p in Path("runs/gpu").rglob("*") if p.is_file())
total, limit = tracked + carried, 64 * 2**20
print(f"tracked files {tracked / 1e6:.1f} MB + runs/gpu {carried / 1e6:.1f} MB = {total / 1e6:.1f} MB "
      f"(limit {limit / 1e6:.1f} MB)")
if total > limit:
    raise SystemExit("too large for one device call")
EOF
    echo 'ready: run(command="bash benchmarks/gpu_check.sh run", carry=["runs/gpu"], timeout_s=590)'
    ;;
run)
    TOTAL=${TOTAL:-560}
    T0=$(date +%s)
    OUT=${OUT:-/tmp/gpu_out}
    W=/tmp/gpu_work
    rm -rf $W && mkdir -p $OUT $W/check
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:$PWD/$GPU/pylib${PYTHONPATH:+:$PYTHONPATH} XPENGINE_CACHE=$PWD/$GPU/isochrone_cache
    nvidia-smi > $OUT/nvidia-smi.txt 2>&1 || true
    python3 training/lease_data.py unpack $GPU/data.parquet --real $W/real.parquet > $OUT/gpu_check.log 2>&1
    ARGS=""
    [ -n "$QUICK" ] && ARGS="--device cpu --quick --no-compile"
    LEFT=$(( TOTAL - ($(date +%s) - T0) - 15 ))
    timeout $LEFT python3 benchmarks/gpu_check.py --data $W/real.parquet --out $W/check $ARGS >> $OUT/gpu_check.log 2>&1
    echo "gpu_check rc $? after $(( $(date +%s) - T0 )) s (limit $LEFT s)" | tee -a $OUT/gpu_check.log
    (cd $W/check && tar cf $OUT/check.tar --exclude='*.safetensors' --exclude='checkpoints' .)
    tail -40 $OUT/gpu_check.log
    ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh prepare | run [--quick]" >&2
    exit 2
    ;;
esac

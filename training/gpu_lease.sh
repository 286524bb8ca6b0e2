#!/bin/bash
# Everything one lent GPU call does, in one command (session 9; the device machine has torch, numpy, pandas,
# pyarrow, pyyaml and safetensors, but no Ray, astropy, gaiaxpy or xgboost, and nothing installed from here):
#   run(command="bash training/gpu_lease.sh 540", carry=["runs/lease"], timeout_s=590)
# with runs/lease/data.parquet made here by
#   python training/lease_data.py pack runs/gaia_xp_mixed9.parquet runs/lease/data.parquet \
#       --tokens bp0..29 rp0..29 bprp jh jk g_fakemag teff logg m_h alpha_m mass ln_age logebv --sim-val 2000
# 1. benchmarks/gpu_check.py on the real APOGEE x XP rows (issue 16)  -> $OUT/check.log, $OUT/check.tar
# 2. the gaia-xp paper-size trial (issue 12; $CONFIG, default configs/train/gaia_xp_paper_gpu.yaml) in the
#    seconds left of TOTAL (first argument)                            -> $OUT/run.tar.part*
# $OUT takes at most 8 files of 16 MiB: the run's last checkpoint with its training state (~106 MB for the
# paper size) travels in up to 7 parts (training/lease_return.py), the logs and the parts' manifest as one
# logs.tar. Here, after the call:
#   python training/lease_return.py unpack <files_at> runs/<run>   # resumable: train.py --resume runs/<run>
# Dry run on a CPU: OUT=/tmp/lease_out bash training/gpu_lease.sh 900 --quick (gpu_check on the CPU takes
# ~700 s with gaia-xp v5); the training and return steps alone: NO_CHECK=1 OUT=/tmp/lease_out bash ... 120 --quick
set -u
TOTAL=${1:-540}
QUICK=${2:-}
CONFIG=${CONFIG:-configs/train/gaia_xp_paper_gpu.yaml}
T0=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/lease_out}
W=/tmp/lease_work
rm -rf $W && mkdir -p $OUT $W
nvidia-smi > $OUT/nvidia-smi.txt 2>&1 || true
python3 training/lease_data.py unpack runs/lease/data.parquet --real $W/real.parquet --mixed $W/mixed.parquet
mkdir -p $W/check
if [ -n "${NO_CHECK:-}" ]; then  # NO_CHECK=1: training only
    echo "gpu_check skipped (NO_CHECK)" > $OUT/check.log
elif [ -n "$QUICK" ]; then
    python3 benchmarks/gpu_check.py --data $W/real.parquet --out $W/check --device cpu --quick --no-compile > $OUT/check.log 2>&1
else
    # the job stage and the warm pool need the isochrone grid and gaiadr3-zeropoint, which this call does not
    # carry (with the lease data it would pass 64 MiB): benchmarks/gpu_check.sh runs them in a call of its own
    python3 benchmarks/gpu_check.py --data $W/real.parquet --out $W/check --steps predictor training bench_model compile \
        > $OUT/check.log 2>&1
fi
echo "gpu_check rc $? after $(( $(date +%s) - T0 )) s" | tee -a $OUT/check.log
(cd $W/check && tar cf $OUT/check.tar --exclude='*.safetensors' --exclude='checkpoints' .)
LEFT=$(( TOTAL - ($(date +%s) - T0) - 30 ))
echo "training budget ${LEFT} s"
if [ $LEFT -lt 60 ]; then
    echo "too little time left for the training trial" | tee $OUT/train.log
    exit 0
fi
EXTRA=""
[ -n "$QUICK" ] && EXTRA="device=cpu model.d_model=32 model.encoder_ffn=[64,32] model.decoder_ffn=[64,32,16] model.head_mlp=[64,32,16,8]"
python3 training/train.py --config $CONFIG --no-ray --time-budget $LEFT \
    data_path=$W/mixed.parquet output_dir=$W/run $EXTRA > $OUT/train.log 2>&1
echo "training rc $? after $(( $(date +%s) - T0 )) s" | tee -a $OUT/train.log
# the run whole, for exact resume here: the last checkpoint with its training state (optimizer, RNG), its
# float16 weights file left out (rebuilt from the training state's float32 model state at unpack), in
# parts under 16 MiB; the logs go into one file beside them (8 files in all)
python3 training/lease_return.py pack $W/run $OUT --max-files 7 2>&1 | tee -a $OUT/train.log
(cd $OUT && tar cf logs.tar nvidia-smi.txt check.log check.tar train.log run.tar.json \
    && rm nvidia-smi.txt check.log check.tar train.log run.tar.json)
ls -la $OUT

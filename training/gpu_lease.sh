#!/bin/bash
# Everything one lent GPU call does, in one command (session 9; the device machine has torch, numpy, pandas,
# pyarrow, pyyaml and safetensors, but no Ray, astropy, gaiaxpy or xgboost, and nothing installed from here):
#   run(command="bash training/gpu_lease.sh 540", carry=["runs/lease"], timeout_s=590)
# with runs/lease/data.parquet made here by
#   python training/lease_data.py pack runs/gaia_xp_mixed9.parquet runs/lease/data.parquet \
#       --tokens bp0..29 rp0..29 bprp jh jk g_fakemag teff logg m_h alpha_m mass ln_age logebv --sim-val 2000
# 1. benchmarks/gpu_check.py on the real APOGEE x XP rows (issue 16)  -> $OUT/check.log, $OUT/check.tar
# 2. the gaia-xp paper-size trial (issue 12, configs/train/gaia_xp_paper_gpu.yaml) in the seconds left of
#    TOTAL (first argument)                                            -> $OUT/train.log, $OUT/model.tar.part*
# $OUT takes at most 8 files of 16 MiB: the run's model folder (float16 weights, ~18 MB) travels as a tar in parts.
# Dry run on a CPU: OUT=/tmp/lease_out bash training/gpu_lease.sh 240 --quick
set -u
TOTAL=${1:-540}
QUICK=${2:-}
T0=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/lease_out}
W=/tmp/lease_work
rm -rf $W && mkdir -p $OUT $W
nvidia-smi > $OUT/nvidia-smi.txt 2>&1 || true
python3 training/lease_data.py unpack runs/lease/data.parquet --real $W/real.parquet --mixed $W/mixed.parquet
if [ -n "$QUICK" ]; then
    python3 benchmarks/gpu_check.py --data $W/real.parquet --out $W/check --device cpu --quick --no-compile > $OUT/check.log 2>&1
else
    python3 benchmarks/gpu_check.py --data $W/real.parquet --out $W/check > $OUT/check.log 2>&1
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
python3 training/train.py --config configs/train/gaia_xp_paper_gpu.yaml --no-ray --time-budget $LEFT \
    data_path=$W/mixed.parquet output_dir=$W/run $EXTRA > $OUT/train.log 2>&1
echo "training rc $? after $(( $(date +%s) - T0 )) s" | tee -a $OUT/train.log
tar cf - -C $W/run model metrics.jsonl time_budget.json | split -b 15m - $OUT/model.tar.part
ls -la $OUT

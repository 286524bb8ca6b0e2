#!/bin/bash
# gaia-xp trial 15 on this box's CPU, in chunks that survive a machine reset (issue 12).
# runs/ is not tracked, and twice (sessions 15 and 32) the machine came back without it: session 32 lost
# trial 15's 38 epochs that way. So the chunk's last checkpoint is committed at the end of each session
# (`save`: the float32 model state with AdamW's moments and the RNG states, ~106 MB in 7 parts under
# 16 MiB, training/lease_return.py's format), and `train` starts from it when runs/ is gone.
#   bash training/trial15.sh data    # rebuild the training set in runs/ (~10-20 min; skipped if present)
#   bash training/trial15.sh train   # resume from runs/gaia-xp-v12, else from the committed parts, else start
#   bash training/trial15.sh save    # pack the newest checkpoint into training/resume/gaia-xp-v12 (commit it)
#   bash training/trial15.sh judge [CHECKPOINT]   # the rule of gaia_xp_v11_gpu.yaml's header, against v5
#       (default: runs/gaia-xp-v12/model; a checkpoint on the way, runs/gaia-xp-v12/checkpoints/epoch_NNNNNN,
#       shows the trajectory); builds the seed-12 sky it needs (~10 min), writes runs/trial15_judge/<name>/
# The training runs at nice 10 with glibc's allocator told to keep freed memory (as trial 10).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=runs/gaia-xp-v12
PARTS=training/resume/gaia-xp-v12
CONFIG=configs/train/gaia_xp_v12_cpu.yaml
DATA=runs/lease/mixed.parquet
# the README's virtualenv, where the caller has not activated one
[ -n "${VIRTUAL_ENV:-}" ] || [ ! -f .venv/bin/activate ] || . .venv/bin/activate

data() {
    mkdir -p runs/lease
    [ -f runs/apogee_xp_dev.parquet ] || xpengine build-dataset apogee-xp \
        --input ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --output runs/apogee_xp_dev.parquet
    [ -d runs/sky_mist41 ] || xpengine simulate --physics mist --n-sources 600000 --partitions 48 --workers 2 \
        --seed 41 --apogee-fraction 1.0 --survey-h-max 13.5 --emulator v1 --output runs/sky_mist41
    [ -f runs/sky_mist41_every.parquet ] || xpengine build-dataset synthetic --sky runs/sky_mist41 \
        --with-tokens alpha_m --every-order --output runs/sky_mist41_every.parquet
    [ -f runs/gaia_xp_mixed41_every.parquet ] || xpengine build-dataset mixed --real runs/apogee_xp_dev.parquet \
        --synthetic runs/sky_mist41_every.parquet --synthetic-weight 1.0 --synthetic-drop-tokens m_h alpha_m \
        --synthetic-truth-tokens mass ln_age --synthetic-truth-errors keep --output runs/gaia_xp_mixed41_every.parquet
    [ -f runs/lease/data.parquet ] || python training/lease_data.py pack runs/gaia_xp_mixed41_every.parquet \
        runs/lease/data.parquet --tokens bp0..29 rp0..29 bprp jh jk g_fakemag teff logg m_h alpha_m mass \
        ln_age logebv --sim-val 2000
    [ -f "$DATA" ] || python training/lease_data.py unpack runs/lease/data.parquet --mixed "$DATA"
    ls -l runs/lease/data.parquet "$DATA"
}

newest() {  # the newest checkpoint directory with a readable training state, or nothing
    ls -d "$RUN"/checkpoints/epoch_* 2>/dev/null | sort | tail -1
}

train() {
    [ -f "$DATA" ] || { echo "trial15: $DATA missing: run 'bash training/trial15.sh data' first" >&2; exit 2; }
    if [ -z "$(newest)" ] && [ -f "$PARTS/run.tar.json" ]; then
        rm -rf "$RUN"
        python training/lease_return.py unpack "$PARTS" "$RUN"
    fi
    local resume=()
    [ -n "$(newest)" ] && resume=(--resume "$RUN")
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 PYTHONUNBUFFERED=1 nice -n 10 \
        python training/train.py --config "$CONFIG" --no-ray "data_path=$DATA" "output_dir=$RUN" "${resume[@]}"
}

save() {
    local ckpt
    ckpt=$(newest)
    [ -n "$ckpt" ] || { echo "trial15: no checkpoint under $RUN" >&2; exit 2; }
    rm -rf "$PARTS.new"
    python training/lease_return.py pack "$RUN" "$PARTS.new" --max-files 8
    rm -rf "$PARTS" && mv "$PARTS.new" "$PARTS"
    echo "saved $ckpt to $PARTS: git add $PARTS && git commit"
}

judge() {
    # (1) every-order shift (relevancy_sensitivity.py), (2) the seed-12 validation sigma (score_sim_val.py),
    # (3) the real validation stars, paired bootstrap against v5 (compare_models.py --split val): v5 is the
    # bundled gaia-xp without its calibration.json, as the rule compares raw models
    local ckpt=${1:-$RUN/model} v5=runs/gaia-xp-v5-raw
    local out
    out=runs/trial15_judge/$(basename "$ckpt")
    [ -d "$ckpt" ] || { echo "trial15: $ckpt: no such checkpoint" >&2; exit 2; }
    [ -f runs/apogee_xp_dev.parquet ] || data
    if [ ! -d $v5 ]; then
        mkdir -p $v5 && cp xpengine/data/models/gaia-xp/*.json xpengine/data/models/gaia-xp/*.safetensors $v5/
        rm -f $v5/calibration.json
    fi
    [ -d runs/sky_mist12 ] || xpengine simulate --physics mist --n-sources 600000 --partitions 48 --workers 2 \
        --seed 12 --apogee-fraction 1.0 --survey-h-max 13.5 --emulator v1 --output runs/sky_mist12
    [ -f runs/sky_mist12.parquet ] || xpengine build-dataset synthetic --sky runs/sky_mist12 --with-tokens alpha_m \
        --output runs/sky_mist12.parquet
    [ -f runs/gaia_xp_mixed9.parquet ] || xpengine build-dataset mixed --real runs/apogee_xp_dev.parquet \
        --synthetic runs/sky_mist12.parquet --synthetic-weight 1.0 --synthetic-drop-tokens m_h alpha_m \
        --synthetic-truth-tokens mass ln_age --synthetic-truth-errors keep --output runs/gaia_xp_mixed9.parquet
    mkdir -p "$out"
    python training/score_sim_val.py --data runs/gaia_xp_mixed9.parquet $v5 "$ckpt" | tee "$out/score_sim_val.txt"
    for m in $v5 "$ckpt"; do
        python benchmarks/relevancy_sensitivity.py --model "$m" --mixed runs/gaia_xp_mixed9.parquet \
            --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset runs/apogee_xp_dev.parquet \
            --json "$out/relevancy_$(basename "$m").json" --markdown "$out/relevancy_$(basename "$m").md"
    done
    python benchmarks/compare_models.py --data runs/apogee_xp_dev.parquet --split val --models $v5 "$ckpt" \
        --bootstrap 1000 --json "$out/compare_val.json" --markdown "$out/compare_val.md"
    echo "trial15: judged $ckpt: $out"
}

case "${1:-}" in
    data | train | save) "$1" ;;
    judge) shift; judge "$@" ;;
    *) echo "usage: bash training/trial15.sh data|train|save|judge [CHECKPOINT]" >&2; exit 2 ;;
esac

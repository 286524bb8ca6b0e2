#!/bin/bash
# Rebuild, in runs/, what training/evaluate_gaia_xp.sh reads besides the training run, so that a new gaia-xp
# (trial 15) can be evaluated and calibrated on a machine whose runs/ was lost (sessions 15 and 32):
#   runs/sky_mist_cal, runs/sky_cal_sub     the seed-31 calibration sky and its 14 patches 0, 3, ..., 39
#   runs/sky_mist_test, runs/sky_test_sub   the seed-23 test sky (never used in a fit) and its 14 patches
#   runs/sky_mist_test_truth.parquet        its survey giants with the true mass, ln age and [Fe/H] (compare_models)
#   runs/sky_mist41_truth.parquet           trial 15's training sky (seed 41, every order) likewise: the XGBoost
#                                           baseline learns from the stars the model learned from
#   runs/gaia-xp-v5                         the bundled v5 with its calibration (PREVIOUS: the bundle is replaced)
#   runs/cat5v_test                         v5's catalogue of the test patches (PREVCAT; .done when the job finished)
# The commands are the model card's (MODEL_CARD.md: "Freshly simulated sky, seed 23"; the calibration sky's
# section). Each step is skipped where its output exists. Run from the repository root:
#   bash training/eval_skies.sh          # ~30 min of this 2-core box beside nothing; longer beside training
# then, when trial 15 is done:
#   bash training/evaluate_gaia_xp.sh runs/gaia-xp-v12 "<training command>" 15 runs/gaia-xp-v5 \
#       runs/gaia_xp_mixed41_every.parquet NOTES runs/cat5v_test runs/sky_mist_test_truth.parquet runs/sky_mist41_truth.parquet
# (MIXED is the whole mixed file the lease was packed from: its train split is trial 15's 97,064 training stars,
# and it has the test split `xpengine evaluate --split test` needs, which runs/lease/mixed.parquet lacks)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${VIRTUAL_ENV:-}" ] || [ ! -f .venv/bin/activate ] || . .venv/bin/activate
R=runs
W=${WORKERS:-1}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}  # the local cluster of the v5 job below, as evaluate_gaia_xp.sh  # simulation processes: 1 beside a training run
mkdir -p $R

sky() {  # seed, directory (an interrupted sky, without its truth table, is simulated again from nothing)
    [ -f "$2/truth.parquet" ] && return 0
    rm -rf "$2"
    xpengine simulate --physics mist --n-sources 150000 --partitions 40 --seed "$1" \
        --apogee-fraction 1.0 --emulator v1 --workers "$W" --output "$2"
}

patches() {  # sky directory, subset directory: the XP files 0, 3, ..., 39 in name order and their GaiaSource partners
    [ -d "$2" ] && return 0
    rm -rf "$2.tmp" && mkdir -p "$2.tmp"
    local xp
    for xp in $(ls "$1"/XpContinuousMeanSpectrum_*.csv.gz | sort | awk 'NR % 3 == 1'); do
        ln -s "$(realpath "$xp")" "$2.tmp/"
        ln -s "$(realpath "${xp/XpContinuousMeanSpectrum/GaiaSource}")" "$2.tmp/"
    done
    [ "$(ls "$2.tmp"/XpContinuousMeanSpectrum_* | wc -l)" = 14 ] || { echo "eval_skies: $1 has no 40 patches" >&2; exit 2; }
    mv "$2.tmp" "$2"
}

sky 31 $R/sky_mist_cal
patches $R/sky_mist_cal $R/sky_cal_sub
sky 23 $R/sky_mist_test
patches $R/sky_mist_test $R/sky_test_sub
[ -f $R/sky_mist_test.parquet ] || xpengine build-dataset synthetic --sky $R/sky_mist_test --with-tokens alpha_m \
    --output $R/sky_mist_test.parquet
[ -f $R/sky_mist_test_truth.parquet ] || python training/truth_labels.py $R/sky_mist_test.parquet \
    $R/sky_mist_test_truth.parquet --tokens mass ln_age m_h --m-h-truth fe_h
[ -f $R/sky_mist41_every.parquet ] || { echo "eval_skies: $R/sky_mist41_every.parquet missing: bash training/trial15.sh data" >&2; exit 2; }
[ -f $R/sky_mist41_truth.parquet ] || python training/truth_labels.py $R/sky_mist41_every.parquet \
    $R/sky_mist41_truth.parquet --tokens mass ln_age m_h --m-h-truth fe_h
if [ ! -d $R/gaia-xp-v5 ]; then
    mkdir -p $R/gaia-xp-v5.tmp && cp xpengine/data/models/gaia-xp/* $R/gaia-xp-v5.tmp/ && mv $R/gaia-xp-v5.tmp $R/gaia-xp-v5
fi
[ -f $R/cat5v_test.done ] || { flock /tmp/xpengine_ray.lock python jobs/infer_gaia.py --input $R/sky_test_sub \
    --tmass $R/sky_mist_test/tmass.parquet --output $R/cat5v_test --model $R/gaia-xp-v5 --overwrite \
    --no-sim-to-real-sigma > $R/cat5v_test.log 2>&1 && touch $R/cat5v_test.done; }
ls -d $R/sky_cal_sub $R/sky_test_sub $R/sky_mist_test_truth.parquet $R/sky_mist41_truth.parquet $R/gaia-xp-v5 $R/cat5v_test
echo "eval_skies: done; the evaluation command is in this script's header"

#!/bin/bash
# Evaluate, bundle and calibrate gaia-xp after training; run from the repository root with the venv active:
#   bash training/evaluate_gaia_xp.sh RUN "TRAINING COMMAND" TAG PREVIOUS MIXED NOTES
# e.g. (session 7, v4 = stage 7b):
#   bash training/evaluate_gaia_xp.sh runs/gaia-xp-stage7b "python training/train.py ..." 7 runs/gaia-xp-v3 \
#       runs/gaia_xp_mixed7.parquet runs/card_notes_v7.md
# RUN: the training run directory; TAG: suffix of every output under runs/; PREVIOUS: the bundle it replaces
# (scored side by side); MIXED: the mixed training-schema file whose validation split fits the generated
# tables' calibration; NOTES: the model card's hand-written part.
# PREVCAT: the previous bundle's test-sky catalogue; SIMTEST / SIMTRAIN: the survey giants of the test sky and the
# training sky for compare_models (session 7: copies whose mass and ln age are the truth, as v4 was trained).
# Needs runs/ as the stage YAMLs and the model card describe it: apogee_xp_dev.parquet, sky_mist12.parquet,
# the seed-31 calibration sky (sky_mist_cal, its 14 test patches linked in sky_cal_sub) and the seed-23 test
# sky (sky_mist_test, sky_test_sub, sky_mist_test.parquet). Session 6 (v3) ran it as TAG 5, PREVIOUS
# runs/gaia-xp-v2, MIXED runs/gaia_xp_mixed2.parquet.
set -e
RUN=$1; CMD=$2; TAG=$3; PREV=$4; MIXED=$5; NOTES=$6; PREVCAT=${7:-runs/cat5_test}; SIMTEST=${8:-runs/sky_mist_test.parquet}; SIMTRAIN=${9:-runs/sky_mist12.parquet}
export RAY_AUTH_MODE=disabled
R=runs
B=xpengine/data/models/gaia-xp
date
xpengine evaluate --model $RUN/model --data $MIXED --split test --val-split val \
    --output $R/eval-gaia-xp$TAG --scenarios standard,first5,high_order,identity --overwrite > $R/eval$TAG.log 2>&1
xpengine evaluate --model $RUN/model --data $R/apogee_xp_dev.parquet --split test --val-split val \
    --output $R/eval-gaia-xp$TAG-real --overwrite > $R/eval${TAG}_real.log 2>&1
python training/bundle_model.py $RUN gaia-xp --command "$CMD" --evaluation $R/eval-gaia-xp$TAG/metrics.json --notes $NOTES --overwrite
python training/merge_calibration.py $B/calibration.json $R/eval-gaia-xp$TAG-real/calibration.json --labels teff logg m_h alpha_m --output $B/calibration.json
# σ factors per class (giants / dwarfs by the predicted logg, format 6), fitted on val, kept only where the test
# split shows the same miscalibration (session 33's rule, written before trial 15's numbers)
python training/fit_class_calibration.py $B --dataset $R/apogee_xp_dev.parquet --output $B/calibration.json --overwrite \
    --json $R/class_calibration$TAG.json --markdown $R/class_calibration$TAG.md > $R/class_calibration$TAG.out 2>&1
cp $B/calibration.json $R/calibration_v${TAG}_valsplits.json
date
# simulated skies: σ as calibrated on simulated stars (--no-sim-to-real-sigma; sim_to_real_sigma in the YAML)
python jobs/infer_gaia.py --input $R/sky_cal_sub --tmass $R/sky_mist_cal/tmass.parquet --output $R/cat${TAG}_cal --model $B --overwrite --no-sim-to-real-sigma > $R/cat${TAG}_cal.log 2>&1
python training/calibrate_on_sky.py --catalogue $R/cat${TAG}_cal --truth $R/sky_mist_cal/truth.parquet --calibration $B/calibration.json --output $B/calibration.json --fit-shifts --age-relative --ebv | tee $R/calibrate_on_sky$TAG.out
# inputs without relevancy counts (sampled spectra) take their own mass and age entries (session 18, format 5):
# the same 14 partitions with the counts nulled, with and without parallaxes
xpengine compact --input $R/sky_cal_sub --tmass $R/sky_mist_cal/tmass.parquet --output $R/cal_compact$TAG --overwrite > $R/cal_compact$TAG.log 2>&1
for v in every every_noplx; do
    rm -rf $R/cal_compact${TAG}_$v
    python training/every_order_inputs.py $R/cal_compact$TAG $R/cal_compact${TAG}_$v --every-order $([ $v = every_noplx ] && echo --no-parallax)
    python jobs/infer_gaia.py --input $R/cal_compact${TAG}_$v --output $R/cat${TAG}_cal_$v --model $B --overwrite --no-sim-to-real-sigma > $R/cat${TAG}_cal_$v.log 2>&1
done
python training/calibrate_on_sky.py --catalogue $R/cat${TAG}_cal_every $R/cat${TAG}_cal_every_noplx --truth $R/sky_mist_cal/truth.parquet --calibration $B/calibration.json --output $B/calibration.json --fit-shifts --age-relative --all-orders | tee $R/calibrate_on_sky${TAG}_every.out
# the sim-to-real term of mass and age σ, a map of the calibrated σ: fitted after it (session 12)
python training/fit_sim_to_real.py $B --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \
    --dataset $R/apogee_xp_dev.parquet --emulator v1 --output $B/calibration.json --overwrite \
    --json $R/sim_to_real$TAG.json --markdown $R/sim_to_real$TAG.md > $R/sim_to_real$TAG.out 2>&1
date
python benchmarks/real_star_checks.py --models gaia-xp $PREV apogee-xp \
    --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset $R/apogee_xp_dev.parquet \
    --json $R/real_star_checks$TAG.json --markdown $R/real_star_checks$TAG.md > $R/real_star_checks$TAG.out 2>&1
python benchmarks/compare_models.py --data $R/apogee_xp_dev.parquet --split test --models gaia-xp $PREV apogee-xp \
    --baseline-train $R/apogee_xp_dev.parquet --labels teff logg m_h alpha_m --bootstrap 1000 \
    --json $R/compare_real$TAG.json --markdown $R/compare_real$TAG.md > $R/compare_real$TAG.out 2>&1
date
python jobs/infer_gaia.py --input $R/sky_test_sub --tmass $R/sky_mist_test/tmass.parquet --output $R/cat${TAG}_test --model $B --overwrite --no-sim-to-real-sigma > $R/cat${TAG}_test.log 2>&1
python benchmarks/sim_sky_checks.py --truth $R/sky_mist_test/truth.parquet --tmass $R/sky_mist_test/tmass.parquet \
    --catalogue gaia-xp=$R/cat${TAG}_test --catalogue previous=$PREVCAT \
    --json $R/sim_sky_checks$TAG.json --markdown $R/sim_sky_checks$TAG.md > $R/sim_sky_checks$TAG.out 2>&1
date
python benchmarks/compare_models.py --data $SIMTEST --split all --models gaia-xp $PREV \
    --baseline-train $SIMTRAIN --labels teff logg m_h alpha_m mass ln_age --context model --no-sim-to-real \
    --json $R/compare_sim$TAG.json --markdown $R/compare_sim$TAG.md > $R/compare_sim$TAG.out 2>&1
date
echo "POST$TAG DONE"

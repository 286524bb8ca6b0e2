#!/bin/bash
# Evaluate, bundle and calibrate gaia-xp after training (session 6, v3 = stage 5); run from the repository root
# with the venv active:  bash training/evaluate_gaia_xp.sh runs/gaia-xp-stage5 "TRAINING COMMAND"
# Needs runs/ as the stage YAMLs and the model card describe it: apogee_xp_dev.parquet, gaia_xp_mixed2.parquet,
# sky_mist12.parquet, the seed-31 calibration sky (sky_mist_cal, its 14 test patches linked in sky_cal_sub), the
# seed-23 test sky (sky_mist_test, sky_test_sub, sky_mist_test.parquet), runs/gaia-xp-v2 (the previous bundle),
# runs/cat2_test_gaia-xp (v2's test-sky catalogue) and runs/card_notes_v5.md (the card's hand-written part).
set -e
RUN=$1; CMD=$2
export RAY_AUTH_MODE=disabled
R=runs
B=xpengine/data/models/gaia-xp
date
xpengine evaluate --model $RUN/model --data $R/gaia_xp_mixed2.parquet --split test --val-split val \
    --output $R/eval-gaia-xp5 --scenarios standard,first5,high_order,identity --overwrite > $R/eval5.log 2>&1
xpengine evaluate --model $RUN/model --data $R/apogee_xp_dev.parquet --split test --val-split val \
    --output $R/eval-gaia-xp5-real --overwrite > $R/eval5_real.log 2>&1
python training/bundle_model.py $RUN gaia-xp --command "$CMD" --evaluation $R/eval-gaia-xp5/metrics.json --notes $R/card_notes_v5.md --overwrite
python training/merge_calibration.py $B/calibration.json $R/eval-gaia-xp5-real/calibration.json --labels teff logg m_h alpha_m --output $B/calibration.json
cp $B/calibration.json $R/calibration_v5_valsplits.json
date
python jobs/infer_gaia.py --input $R/sky_cal_sub --tmass $R/sky_mist_cal/tmass.parquet --output $R/cat5_cal --model $B --overwrite > $R/cat5_cal.log 2>&1
python training/calibrate_on_sky.py --catalogue $R/cat5_cal --truth $R/sky_mist_cal/truth.parquet --calibration $B/calibration.json --output $B/calibration.json | tee $R/calibrate_on_sky5.out
date
python benchmarks/real_star_checks.py --models gaia-xp $R/gaia-xp-v2 apogee-xp \
    --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset $R/apogee_xp_dev.parquet \
    --json $R/real_star_checks5.json --markdown $R/real_star_checks5.md > $R/real_star_checks5.out 2>&1
python benchmarks/compare_models.py --data $R/apogee_xp_dev.parquet --split test --models gaia-xp $R/gaia-xp-v2 apogee-xp \
    --baseline-train $R/apogee_xp_dev.parquet --labels teff logg m_h alpha_m \
    --json $R/compare_real5.json --markdown $R/compare_real5.md > $R/compare_real5.out 2>&1
date
python jobs/infer_gaia.py --input $R/sky_test_sub --tmass $R/sky_mist_test/tmass.parquet --output $R/cat5_test --model $B --overwrite > $R/cat5_test.log 2>&1
python benchmarks/sim_sky_checks.py --truth $R/sky_mist_test/truth.parquet \
    --catalogue gaia-xp=$R/cat5_test --catalogue gaia-xp-v2=$R/cat2_test_gaia-xp --catalogue stage4-onefactor=$R/cat3_test_v3 \
    --json $R/sim_sky_checks5.json --markdown $R/sim_sky_checks5.md > $R/sim_sky_checks5.out 2>&1
date
python benchmarks/compare_models.py --data $R/sky_mist_test.parquet --split all --models gaia-xp $R/gaia-xp-v2 \
    --baseline-train $R/sky_mist12.parquet --labels teff logg m_h alpha_m mass ln_age --context model \
    --json $R/compare_sim5.json --markdown $R/compare_sim5.md > $R/compare_sim5.out 2>&1
date
echo POST5 DONE

"""Evaluation: metrics, the XGBoost baseline, robustness scenarios, σ calibration, reports and plots.

Submodules: `metrics` (pure numpy), `calibration`, `baseline` (XGBoost, imported lazily), `scenarios`,
`runner` (evaluation of a predictor on a training-schema test set), `report`, `plots` (matplotlib,
imported lazily), `cli` (`xpengine evaluate`).
"""

"""`benchmarks/label_manifold.py`: the Teff offset of simulated against real giants at fixed [M/H] and logg, and
the catalogue's [M/H] bias per true [M/H], state and G bin, on stars made with known offsets."""

from __future__ import annotations

import numpy as np
import pandas as pd
from _paths import load_script


def test_teff_offsets_and_m_h_bias_give_back_known_offsets() -> None:
    lm = load_script("benchmarks/label_manifold.py", "label_manifold")
    rng = np.random.default_rng(1)
    n = 20_000
    m_h = rng.uniform(-1.4, 0.35, n)
    logg = rng.uniform(1.05, 3.35, n)
    teff = 4500.0 + 300.0 * (logg - 2.0) - 250.0 * m_h + rng.normal(0.0, 30.0, n)
    real = pd.DataFrame({"teff": teff, "logg": logg, "m_h": m_h})
    # the simulated giants: 100 K hotter at [M/H] ≥ −0.15, unchanged below
    sim = real.assign(teff=teff + np.where(m_h >= -0.15, 100.0, 0.0))
    cells = {(c["m_h"][0], c["logg"][0]): c for c in lm.teff_offsets(sim, real)}
    assert abs(cells[(-0.15, 2.0)]["sim_minus_real"] - 100.0) < 5.0
    assert abs(cells[(-0.7, 2.0)]["sim_minus_real"]) < 5.0
    assert all(c["n_sim"] == c["n_real"] for c in cells.values())
    # a bin with fewer than MIN_STARS stars has no median
    few = lm.teff_offsets(sim.iloc[:50], real.iloc[:50])
    assert all(c["teff_sim"] is None for c in few)

    # the catalogue: [M/H] read 0.2 dex low for metal-poor RGB stars only, Teff and logg right
    cat = pd.DataFrame(
        {
            "m_h_true": m_h,
            "teff_true": teff,
            "logg_true": logg,
            "m_h": m_h - np.where(m_h < -0.3, 0.2, 0.0) + rng.normal(0.0, 0.05, n),
            "teff": teff + rng.normal(0.0, 20.0, n),
            "logg": logg,
            "evolutionary_state": np.where(rng.random(n) < 0.5, "rgb", "red_clump"),
            "g": rng.uniform(10.0, 17.0, n),
        }
    )
    rows = {(b["g"][0], b["state"], b["m_h_true"][0]): b for b in lm.m_h_bias(cat)}
    assert abs(rows[(13.0, "rgb", -0.7)]["m_h_bias"] + 0.2) < 0.01
    assert abs(rows[(13.0, "rgb", -0.3)]["m_h_bias"]) < 0.01
    assert abs(rows[(6.0, "red_clump", -0.3)]["teff_bias"]) < 5.0
    assert all(b["n"] >= lm.MIN_STARS for b in rows.values())
    md = lm.render_markdown(
        {
            "command": "python benchmarks/label_manifold.py ...",
            "machine": "here",
            "date_utc": "now",
            "n_sim_giants": n,
            "n_real_giants": n,
            "teff_offsets": lm.teff_offsets(sim, real),
            "n_matched_giants": n,
            "m_h_bias": list(rows.values()),
        }
    )
    assert "| -0.15…+0.15 | 2.0–2.3 |" in md and "rgb" in md

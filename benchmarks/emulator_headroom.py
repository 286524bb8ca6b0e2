"""How much more of a real giant's XP spectrum could a more flexible emulator explain from the same labels?

    python benchmarks/emulator_headroom.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --json benchmarks/results/emulator_headroom.json --markdown benchmarks/results/emulator_headroom.md

gaia-xp learns mass and age from emulated spectra, and on real disk giants its ln mass moves by 0.10 more
than the simulated variation covers (`emulated_twins.py`: the sim-to-real term), while perturbing the labels
by APOGEE's errors explains only 0.04. The rest is the difference between a real spectrum and the
emulator's at the same labels. Part of it is the emulator's form (polynomials in the labels, per region);
part is the stars themselves (what the four labels do not describe) and their noise. This script fits a
flexible emulator, a multilayer perceptron from (5040/Teff − 1, logg, [Fe/H], [α/M]) to the dereddened
y − κ(λ)·E(B−V), y = log10(F / f_G) on the 343-pixel grid (`xpengine.simulate.emulator_fit.emulator_targets`;
weights 1/(σ_y² + 0.003²); E(B−V) = AK_TARG / 0.352, κ the polynomial emulators' Fitzpatrick curve, so
that extinction enters both the same way; each star's grey level taken out, as the polynomial fit's per-star
offsets do), on the dev file's train rows inside the giant region's fit box
(3000–7200 K, logg < 3.9), and scores it beside the packaged polynomial emulators v1 and v2
(`intrinsic_spectra`, reddened with the same E(B−V)) on the val split's giants (3800–5800 K, logg < 3.5,
[Fe/H] > −1). Score per star: the rms over 400–1000 nm of y − ŷ after a per-star grey offset and E(B−V)
shift are fitted away (so that G and AK_TARG errors do not count), in % of flux; beside it, the rms of the
star's own σ_y, and the excess √(rms² − noise²) the emulator leaves. Medians per G bin. Nothing here
changes the simulator: it measures the headroom for an emulator v3. `--free-extinction` adds an MLP that
reads E(B−V) as a fifth input and learns the raw y (its own extinction shape and grey level).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402

LN10 = float(np.log(10.0))
G_BINS = (6.0, 12.0, 13.0, 14.0, 17.65)
LABEL_SCALES = ((0.0, 1.0), (2.5, 1.5), (0.0, 0.5), (0.0, 0.2))  # 5040/Teff − 1, logg, [Fe/H], [α/M]


def inputs(teff: np.ndarray, logg: np.ndarray, fe_h: np.ndarray, alpha_m: np.ndarray) -> np.ndarray:
    """(N, 4) scaled MLP inputs."""
    raw = np.stack([5040.0 / teff - 1.0, logg, fe_h, alpha_m], 1)
    c = np.array([s[0] for s in LABEL_SCALES])
    s = np.array([s[1] for s in LABEL_SCALES])
    return (raw - c) / s


def fit_mlp(x: np.ndarray, y: np.ndarray, w: np.ndarray, steps: int = 6000, seed: int = 0) -> Any:
    """A 3×256 SiLU perceptron x (N, k) → y (N, m), weighted squared error (w (N, m)), AdamW with a cosine
    schedule, batches of 1024; returns a function (M, k) → (M, m)."""
    import torch

    torch.manual_seed(seed)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    wt = torch.tensor(w / w.mean(), dtype=torch.float32)
    mu, sd = yt.mean(0), yt.std(0) + 1e-6
    width = 256
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], width),
        torch.nn.SiLU(),
        torch.nn.Linear(width, width),
        torch.nn.SiLU(),
        torch.nn.Linear(width, width),
        torch.nn.SiLU(),
        torch.nn.Linear(width, y.shape[1]),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(xt), (min(1024, len(xt)),), generator=gen)
        loss = (wt[i] * (net(xt[i]) * sd + mu - yt[i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    def predict(xq: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (net(torch.tensor(xq, dtype=torch.float32)) * sd + mu).numpy().astype(np.float64)

    return predict


def fixed_rms(y: np.ndarray, yhat: np.ndarray, use: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """Per star (N,): rms of y − ŷ (N, m) over the pixels `use` (N, m) bool after a least-squares grey offset
    and κ·ΔE(B−V) (kappa (m,)) are removed [dex]."""
    out = np.full(len(y), np.nan)
    for j in range(len(y)):
        m = use[j]
        if m.sum() < 3:
            continue
        r = y[j, m] - yhat[j, m]
        a = np.stack([np.ones(m.sum()), kappa[m]], 1)
        c, *_ = np.linalg.lstsq(a, r, rcond=None)
        out[j] = np.sqrt(np.mean((r - a @ c) ** 2))
    return out


def run(apogee_xp: str, steps: int = 6000, free_extinction: bool = False) -> dict[str, Any]:
    """The table's rows (module docstring); free_extinction: also an MLP that reads E(B−V) as a fifth input
    and learns the raw y, so that extinction's shape is its own rather than the Fitzpatrick curve."""
    from xpengine.datasets.splits import split_by_source_id
    from xpengine.simulate.calibration import load_calibration
    from xpengine.simulate.emulator_fit import AK_PER_EBV, WAVELENGTH_NM, emulator_targets, read_apogee_xp
    from xpengine.simulate.emulator_model import R_V, extinction_curve
    from xpengine.simulate.xp import intrinsic_spectra

    d = read_apogee_xp(apogee_xp)
    f_g, y, sig_y, w = emulator_targets(d)
    ebv = np.clip(d["ak_targ"] / AK_PER_EBV, 0.0, None)
    split = np.asarray(split_by_source_id(d["source_id"]))
    band = (WAVELENGTH_NM >= 400) & (WAVELENGTH_NM <= 1000)
    kappa = -0.4 * R_V * extinction_curve(WAVELENGTH_NM)
    labels_ok = np.all(np.isfinite(np.stack([d[k] for k in ("teff", "logg", "fe_h", "alpha_m")], 1)), 1)
    ok = (
        labels_ok
        & np.isfinite(f_g)
        & np.isfinite(ebv)
        & ((w[:, band] > 0).mean(1) > 0.9)
        & np.all(np.isfinite(np.where(w > 0, y, 0.0)), 1)
    )
    train = ok & (split == "train") & (d["teff"] > 3000) & (d["teff"] < 7200) & (d["logg"] < 3.9)
    val = (
        ok & (split == "val") & (d["teff"] > 3800) & (d["teff"] < 5800) & (d["logg"] < 3.5) & (d["fe_h"] > -1)
    )
    x = inputs(d["teff"], d["logg"], d["fe_h"], d["alpha_m"])
    wc = np.minimum(w, 1.0 / 0.003**2)
    red = kappa[None, :] * ebv[:, None]  # (N, m) the reddening in y
    # the MLP learns the shape: each star's grey level (G's own extinction, G errors) is taken out of its
    # target, as the polynomial fit takes it out with a per-star offset, and fitted away in the score
    y0 = np.where(w > 0, y - red, 0.0)
    wb = np.where(band[None, :], wc, 0.0)
    grey = (wb * y0).sum(1) / np.maximum(wb.sum(1), 1e-30)
    mlp = fit_mlp(
        x[train], np.where(w[train] > 0, y0[train] - grey[train, None], 0.0), wc[train], steps=steps
    )
    preds = {"mlp (this script)": mlp(x[val]) + red[val]}
    if free_extinction:
        xe = np.column_stack([x, ebv / 0.3])
        mlp_e = fit_mlp(xe[train], np.where(w[train] > 0, y[train], 0.0), wc[train], steps=steps)
        preds["mlp, E(B−V) an input"] = mlp_e(xe[val])
    for v in ("v1", "v2"):
        cal = load_calibration(str(ROOT / "xpengine" / "simulate" / "data" / f"sim_calibration_{v}.npz"))
        spec = intrinsic_spectra(
            np.ones(val.sum(), dtype=np.int8),
            d["teff"][val],
            d["logg"][val],
            d["fe_h"][val],
            d["alpha_m"][val],
            None,
            cal,
        )
        preds[f"polynomial {v}"] = np.log10(np.clip(spec, 1e-30, None)) + kappa[None, :] * ebv[val][:, None]
    use = band[None, :] & (w[val] > 0)
    noise = np.array([np.sqrt(np.mean(s[u] ** 2)) for s, u in zip(sig_y[val], use, strict=True)])
    g = d["gaiaedr3_phot_g_mean_mag"][val]
    rows = []
    for name, yhat in preds.items():
        rms = fixed_rms(y[val], yhat, use, kappa)
        row: dict[str, Any] = {"emulator": name, "bins": []}
        for lo, hi in itertools.pairwise(G_BINS):
            s = (g >= lo) & (g < hi) & np.isfinite(rms)
            med, nz = float(np.median(rms[s])), float(np.median(noise[s]))
            row["bins"].append(
                {
                    "g": [lo, hi],
                    "n": int(s.sum()),
                    "rms_pct": 100 * LN10 * med,
                    "noise_pct": 100 * LN10 * nz,
                    "excess_pct": 100 * LN10 * float(np.sqrt(max(med**2 - nz**2, 0.0))),
                    "p84_pct": 100 * LN10 * float(np.percentile(rms[s], 84)),
                }
            )
        rows.append(row)
    return {"n_train": int(train.sum()), "n_val": int(val.sum()), "steps": steps, "rows": rows}


def render_markdown(res: Mapping[str, Any]) -> str:
    bins = [f"G {b['g'][0]:g}–{b['g'][1]:g} ({b['n']})" for b in res["rows"][0]["bins"]]
    lines = [
        "# Emulator headroom on real giants",
        "",
        command_line(res),
        "",
        f"MLP fitted on {res['n_train']} train-split stars ({res['steps']} steps); scored on {res['n_val']} "
        "val-split giants (3800–5800 K, logg < 3.5, [Fe/H] > −1). Cells: median rms of y − ŷ over 400–1000 nm "
        "after a per-star grey and E(B−V) fit, % of flux / its excess over the star's noise √(rms² − noise²) / "
        "84th percentile of the rms. Noise: median rms of σ_y.",
        "",
        "| emulator | " + " | ".join(bins) + " |",
        "|---|" + "---|" * len(bins),
    ]
    for r in res["rows"]:
        cells = " | ".join(
            f"{b['rms_pct']:.2f} / {b['excess_pct']:.2f} / {b['p84_pct']:.1f}" for b in r["bins"]
        )
        lines.append(f"| {r['emulator']} | {cells} |")
    lines.append("| noise | " + " | ".join(f"{b['noise_pct']:.2f}" for b in res["rows"][0]["bins"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="the APOGEE×XP dev FITS file")
    ap.add_argument("--steps", type=int, default=6000, help="MLP training steps")
    ap.add_argument(
        "--free-extinction", action="store_true", help="also an MLP with E(B−V) as an input (run's docstring)"
    )
    args = ap.parse_args(argv)
    res = {
        **run_header("benchmarks/emulator_headroom.py", argv),
        **run(args.apogee_xp, args.steps, args.free_extinction),
    }
    write_outputs(res, args.json, args.markdown, render_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

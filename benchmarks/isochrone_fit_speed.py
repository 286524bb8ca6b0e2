"""Isochrone fits per second of this tree's code against another tree's (a `git worktree` of an earlier
commit), on the same 3,000 faint dwarf-like stars with a distance prior and weak parallaxes (the earlier
code's prior without them where it takes none), the two alternating three times in one run.

    git worktree add /tmp/wt_before <commit>
    OMP_NUM_THREADS=1 python benchmarks/isochrone_fit_speed.py /tmp/wt_before

Prints fits/s per repetition and each tree's median mass (a different answer is expected where the fit
changed)."""

import json
import subprocess
import sys

code = r"""
import sys, time, json, numpy as np
sys.path.insert(0, sys.argv[1])
from xpengine.inference import isochrone_fit as f
from xpengine.inference import galactic_prior as gp
from xpengine.inference.galactic_prior import log_weight_table
import inspect
rng = np.random.default_rng(5); n = 3000
teff = rng.uniform(4800, 6500, n); logg = rng.uniform(3.8, 4.6, n); mh = rng.uniform(-0.8, 0.3, n)
g0 = rng.uniform(15, 17.5, n); l = rng.uniform(0, 360, n); b = rng.uniform(-60, 60, n)
plx, err = rng.uniform(0.2, 1.0, n), np.full(n, 0.15)
extra = {}
if hasattr(gp, "parallax_chi2_table"):  # since session 29: the parallax is a χ² term of the fit
    prior = log_weight_table(g0, l, b)
    extra = {"parallax_chi2": gp.parallax_chi2_table(g0, plx, err)}
elif "parallax" in inspect.signature(log_weight_table).parameters:  # session 28: in the prior's table
    prior = log_weight_table(g0, l, b, plx, err)
else:
    prior = log_weight_table(g0, l, b)
grid = f.load_fit_grid()
f.fit_isochrones(grid, teff[:200], np.full(200, 120.), logg[:200], np.full(200, .2), mh[:200], np.full(200, .1), distance_prior=prior[:200], **{k: v[:200] for k, v in extra.items()})
t0 = time.perf_counter()
out = f.fit_isochrones(grid, teff, np.full(n, 120.), logg, np.full(n, 0.2), mh, np.full(n, 0.1), distance_prior=prior, **extra)
print(json.dumps({"s": time.perf_counter() - t0, "mass_med": float(np.nanmedian(out["mass"]))}))
"""
trees = {"before": sys.argv[1], "this tree": str(__import__("pathlib").Path(__file__).resolve().parents[1])}
res = {k: [] for k in trees}
for _rep in range(3):
    for k, tree in trees.items():
        r = subprocess.run([sys.executable, "-c", code, tree], capture_output=True, text=True, cwd=tree)
        res[k].append(json.loads(r.stdout.strip().splitlines()[-1]))
for k, v in res.items():
    print(k, "fits/s", [round(3000 / x["s"]) for x in v], "mass median", v[0]["mass_med"])

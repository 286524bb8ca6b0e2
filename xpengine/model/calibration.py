"""Calibrated uncertainties: the per-token σ calibration a model carries in `calibration.json`.

Two forms per token t (physical units of t), applied by the Predictor to every requested token with an entry:

- σ_cal = sqrt((a_t · σ_pred)² + b_t²) (format 1; fitted on the validation split by
  `xpengine.evaluate.calibration`);
- a σ map through knots (format 2, `sigma_knots` → `sigma_cal_knots`, strictly increasing; straight lines in
  log σ – log σ_cal between knots, σ_cal ∝ σ beyond the end knots), optionally times a factor per bin of
  G (`g_edges`, `g_scales`) where the star's G is known (fitted on a simulated sky's catalogue by
  `xpengine.evaluate.binned_calibration`: a model's σ need not track its errors the same way at every σ
  or every magnitude).

A derived linear label (``age`` = exp(ln_age)) may have its own entry in linear units, applied to
age · raw σ_ln_age (or relative, format 7). When a correction counts as applied is the fitter's business.

Format 3 adds an optional mean shift per bin of G (`g_shifts`, on the same `g_edges`): μ + shift
(`shift_kind` "add", e.g. ln_age) or μ · exp(shift) ("log", e.g. mass), for a catalogue population that
differs from the training prior (fitted on a simulated sky by `training/calibrate_on_sky.py
--fit-shifts`). A derived linear label follows its log token's shifted mean. Files without shifts are
written as format 2.

Format 4 adds an optional sim-to-real term (`sim_to_real`, one `SimToReal` per token learned from simulated
stars only): an extra spread that real stars show and simulated ones cannot, added in quadrature to the
calibrated σ, as a function of it (fitted on real giants and their emulated twins by
`training/fit_sim_to_real.py`). The Predictor adds it unless told the stars are simulated
(`sim_to_real=False`: the calibration skies, simulated test skies).

Format 5 adds optional entries for stars whose XP carry every coefficient the model reads (`all_orders`,
fitted on a simulated sky whose inputs keep every order by `training/calibrate_on_sky.py --all-orders`).
A model trained on archive-like spectra, cut at each star's relevancy, learns how many orders are present
as a brightness cue, so a spectrum read without relevancy counts (a sampled spectrum, every order kept)
needs its own mean shift and σ map; the Predictor uses them for the rows its `all_orders` mask names (the
catalogue: rows flagged NO_RELEVANCY with both bands and every context order) and the `labels` entries
elsewhere, archive rows included whatever their relevancy (a token without an `all_orders` entry uses its
`labels` entry everywhere).

Format 6 adds optional factors per class of star (`by_class`: giants, whose predicted logg is below
`CLASS_SPLIT_LOGG`, and the rest), applied to the final σ of a token: one scale fitted on every validation
star can leave one class over- and the other under-confident (gaia-xp v5 on 3,151 real validation stars:
[α/M] z-spread 1.11 for giants and 0.80 for dwarfs, dwarfs' logg 0.84; session 33), fitted by
`training/fit_class_calibration.py` on the real validation split with APOGEE's label σ in quadrature, and
kept only where the test split shows the same (none was, for v5).

Format 7: a derived linear label's entry may be `relative` (its knots map the raw σ_ln_age to σ_age / age):
an absolute entry binned on age · σ_ln_age puts old giants of tiny raw σ_ln beside young ones, under one
floor (gaia-xp v5: 1.30 Gyr; on the test sky its giants with σ_age / age < 0.10 had a z-spread of 1.39); and
a knot map may have a `floor` (no σ_cal below the first knot's: proportional, those stars' σ were too small).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.model.sim_to_real import SIM_TO_REAL_FORMULA, SimToReal

__all__ = [
    "CALIBRATION_FILE",
    "DERIVED",
    "FORMAT_VERSION",
    "FORMULA",
    "Calibration",
    "LabelCalibration",
    "SimToReal",
    "all_xp_orders",
    "g_bin_index",
]

CALIBRATION_FILE = "calibration.json"
DERIVED: dict[str, str] = {"ln_age": "age", "logebv": "ebv"}
"""Log-space tokens and the linear quantity reported next to them: exp(μ), σ = exp(μ)·σ_log."""
FORMAT_VERSION = "2"
SHIFT_FORMAT_VERSION = "3"  # written when an entry has g_shifts
SIM_TO_REAL_FORMAT_VERSION = "4"  # written when the file has a sim_to_real section
ALL_ORDERS_FORMAT_VERSION = "5"  # written when the file has an all_orders section
BY_CLASS_FORMAT_VERSION = "6"  # written when the file has a by_class section
RELATIVE_FORMAT_VERSION = "7"  # written when an entry is relative
# format 1 files (scale/floor entries only) read unchanged
READABLE_VERSIONS = ("1", "2", "3", "4", "5", "6", "7")
FORMULA = (
    "sigma_cal = sqrt((a*sigma)^2 + b^2); or, with sigma_knots: log-log interpolation sigma -> sigma_cal "
    "through (sigma_knots, sigma_cal_knots), proportional beyond the end knots (below the first, with floor: "
    "the first sigma_cal); times g_scales[bin of G in "
    "g_edges] where G is known"
)
CLASS_SPLIT_LOGG = 3.5
"""A star whose predicted logg is below this is a giant for the `by_class` factors (the paper's giant cut)."""
CLASSES = ("giant", "dwarf")


def all_xp_orders(values: np.ndarray, xp_columns: list[int]) -> np.ndarray:
    """(N,) bool: the rows of `values` (N, T) whose XP coefficient columns `xp_columns` (those of the
    model's context) are all finite, i.e. no band ends within the orders the model reads: a sampled
    spectrum (every coefficient kept), but also an archive row whose relevancy reaches past them, so the
    catalogue adds the relevancy's absence (NO_RELEVANCY) before giving a row the `all_orders` entries;
    `Predictor.predict` uses this pattern alone only when its caller passes no mask. No XP column: all
    False."""
    v = np.asarray(values)
    if not xp_columns:
        return np.zeros(v.shape[0], dtype=bool)
    return np.isfinite(v[:, xp_columns]).all(axis=1)


def g_bin_index(g: np.ndarray, g_edges: tuple[float, ...]) -> np.ndarray:
    """The G bin (int array like g) of each G magnitude among the K + 1 increasing `g_edges`: G outside
    the edges takes the nearest bin (NaN the last; callers mask it)."""
    return np.clip(np.searchsorted(g_edges, g, side="right") - 1, 0, len(g_edges) - 2)


@dataclass(frozen=True)
class LabelCalibration:
    """σ_cal = sqrt((a·σ)² + b²) for one token; b in the token's physical units."""

    a: float = 1.0
    b: float = 0.0
    applied: bool = False
    method: str = "identity"
    n_val: int = 0
    z_sigma_val_raw: float | None = None
    z_sigma_val_cal: float | None = None
    unit: str = ""
    # format 2: σ map through knots (both strictly increasing, same length ≥ 2) and G-bin factors
    sigma_knots: tuple[float, ...] | None = None
    sigma_cal_knots: tuple[float, ...] | None = None
    g_edges: tuple[float, ...] | None = None  # K + 1 increasing G edges [mag]
    g_scales: tuple[float, ...] | None = None  # K factors; G outside the edges takes the nearest bin's
    # format 3: mean shift per G bin (same edges; G unknown: no shift), added or applied as exp(shift)
    g_shifts: tuple[float, ...] | None = None
    shift_kind: str = "add"
    # format 7 (a derived linear label's entry only): the σ map takes the log token's raw σ and gives σ/value
    relative: bool = False
    floor: bool = (
        False  # format 7: a σ below the first knot gets the first knot's σ_cal, not a proportional one
    )

    def __post_init__(self) -> None:
        for name in ("sigma_knots", "sigma_cal_knots", "g_edges", "g_scales", "g_shifts"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(float(x) for x in v))
                if not all(math.isfinite(x) for x in getattr(self, name)):
                    raise ValueError(f"{name} {getattr(self, name)}: every value must be finite")
        if (self.sigma_knots is None) != (self.sigma_cal_knots is None):
            raise ValueError("sigma_knots and sigma_cal_knots go together")
        if self.sigma_knots is not None:
            x, y = np.asarray(self.sigma_knots), np.asarray(self.sigma_cal_knots)
            if (
                x.size < 2
                or x.size != y.size
                or np.any(np.diff(x) <= 0)
                or np.any(np.diff(y) <= 0)
                or x[0] <= 0
            ):
                raise ValueError(
                    f"sigma_knots {self.sigma_knots} / sigma_cal_knots {self.sigma_cal_knots}: expected two "
                    "positive, strictly increasing sequences of one length >= 2"
                )
        if (self.g_edges is None) != (self.g_scales is None):
            raise ValueError("g_edges and g_scales go together")
        if self.g_edges is not None and (
            len(self.g_edges) != len(self.g_scales) + 1 or np.any(np.diff(self.g_edges) <= 0)
        ):
            raise ValueError(f"g_edges {self.g_edges} must increase and have one more entry than g_scales")
        if self.g_shifts is not None and (self.g_edges is None or len(self.g_shifts) != len(self.g_scales)):
            raise ValueError("g_shifts needs g_edges and one entry per G bin")
        if self.shift_kind not in ("add", "log"):
            raise ValueError(f"shift_kind must be 'add' or 'log', got {self.shift_kind!r}")

    def _g_bin(self, g: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(bin index (n,), G finite (n,)) of each star; G outside the edges takes the nearest bin."""
        g = np.broadcast_to(np.asarray(g, dtype=np.float64), (n,))
        return g_bin_index(g, self.g_edges), np.isfinite(g)

    def shift(self, mean: np.ndarray, g: np.ndarray | None = None, *, inverse: bool = False) -> np.ndarray:
        """The mean (N,) float64 shifted for its G bin (inverse: the shift undone); no shifts, not applied
        or G unknown (None or NaN): unchanged."""
        mu = np.asarray(mean, dtype=np.float64)
        if self.g_shifts is None or not self.applied or g is None:
            return mu.copy()
        k, known = self._g_bin(g, mu.size)
        d = np.where(known, np.asarray(self.g_shifts)[k], 0.0).reshape(mu.shape) * (-1.0 if inverse else 1.0)
        return mu + d if self.shift_kind == "add" else mu * np.exp(d)

    def _g_factor(self, g: np.ndarray | None, n: int) -> np.ndarray:
        if self.g_edges is None or g is None:
            return np.ones(n)
        k, known = self._g_bin(g, n)
        return np.where(known, np.asarray(self.g_scales)[k], 1.0)

    def apply(self, sigma: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        """Calibrated σ (N,) float64 from predicted σ (N,) (same physical units); NaN stays NaN.
        g: (N,) G magnitudes for the G-bin factors (None or NaN: no factor)."""
        s = np.asarray(sigma, dtype=np.float64)
        if not self.applied:
            return s.copy()
        if self.sigma_knots is None:
            out = np.sqrt((self.a * s) ** 2 + self.b**2)
        else:
            out = _knot_map(s, np.asarray(self.sigma_knots), np.asarray(self.sigma_cal_knots), self.floor)
        return out * self._g_factor(g, out.size).reshape(out.shape)

    def raw(self, sigma_cal: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        """The predicted σ (N,) that `apply` turned into sigma_cal (N,) (with the same g): the inverse of
        `apply`. A σ_cal below the floor b (not produced by `apply`) gives 0; NaN stays NaN."""
        s = np.asarray(sigma_cal, dtype=np.float64)
        if not self.applied:
            return s.copy()
        s = s / self._g_factor(g, s.size).reshape(s.shape)
        if self.sigma_knots is None:
            return np.sqrt(np.clip(s**2 - self.b**2, 0.0, None)) / self.a
        return _knot_map(s, np.asarray(self.sigma_cal_knots), np.asarray(self.sigma_knots), self.floor)


_IDENTITY = LabelCalibration()  # a token without an entry


def _per_row(rows: np.ndarray | None, base: np.ndarray, alt: Any) -> np.ndarray:
    """base (N,) with alt()'s values on the `rows` (N,) bool (None or none set: base; alt not called)."""
    if rows is None:
        return base
    r = np.broadcast_to(np.asarray(rows, dtype=bool), base.shape)
    return np.where(r, alt(), base) if r.any() else base


def _knot_map(s: np.ndarray, x: np.ndarray, y: np.ndarray, floor: bool = False) -> np.ndarray:
    """s (N,) > 0 mapped through knots x → y (strictly increasing): linear in log-log between knots,
    proportional (y/x of the end knot) beyond them, or with `floor` y0 below the first (its inverse: x0 at
    and below y0). NaN gives NaN; s ≤ 0 gives s·y0/x0, or y0 with `floor`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.log(s)
        out = np.exp(np.interp(ls, np.log(x), np.log(y)))
        out = np.where(s < x[0], y[0] if floor else s * (y[0] / x[0]), out)
        out = np.where(s > x[-1], s * (y[-1] / x[-1]), out)
    return np.where(np.isnan(s), np.nan, out)


@dataclass
class Calibration:
    """Per-token calibrations (a missing token means identity), and the sim-to-real terms of the tokens
    learned from simulated stars (`SimToReal`; none: σ as calibrated)."""

    labels: dict[str, LabelCalibration] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    sim_to_real: dict[str, SimToReal] = field(default_factory=dict)
    sim_to_real_provenance: dict[str, Any] = field(default_factory=dict)
    # format 5: entries for inputs that keep every XP order the model reads (a token without one: `labels`)
    all_orders: dict[str, LabelCalibration] = field(default_factory=dict)
    all_orders_provenance: dict[str, Any] = field(default_factory=dict)
    # format 6: {token: {"giant": factor, "dwarf": factor}} on the final σ, by the predicted logg
    by_class: dict[str, dict[str, float]] = field(default_factory=dict)
    by_class_provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, lc in (*self.labels.items(), *self.all_orders.items()):
            if lc.relative and name != "age":  # (calibrate_on_sky's E(B−V) fit reads its entry as absolute)
                raise ValueError(f"{name}: only the derived linear label age is relative")
        for name, f in self.by_class.items():
            if name in DERIVED.values():
                raise ValueError(f"by_class {name}: give the factor of its log token; {name}'s σ follows it")
            if set(f) != set(CLASSES) or not all(math.isfinite(v) and v > 0 for v in f.values()):
                raise ValueError(f"by_class {name}: {f}; expected a positive factor for each of {CLASSES}")

    def class_factor(self, name: str, logg: np.ndarray) -> np.ndarray:
        """(N,) the factor of token `name`'s σ for each star's class by its predicted logg (N,): 1 where
        the token has none or the logg is NaN."""
        g = np.asarray(logg, dtype=np.float64)
        f = self.by_class.get(name)
        if f is None:
            return np.ones(g.shape)
        with np.errstate(invalid="ignore"):
            return np.where(np.isnan(g), 1.0, np.where(g < CLASS_SPLIT_LOGG, f["giant"], f["dwarf"]))

    def entry(self, name: str, *, all_orders: bool = False) -> LabelCalibration:
        """The entry of token `name` (identity when it has none) for archive-like inputs, or for inputs
        with every XP order (`all_orders`: its `all_orders` entry where it has one)."""
        if all_orders and name in self.all_orders:
            return self.all_orders[name]
        return self.labels.get(name, _IDENTITY)

    def _each(self, name: str, all_orders: np.ndarray | None, fn: Any) -> np.ndarray:
        """fn(entry) (N,) with each row's entry: `all_orders` (N,) bool picks the every-order entry."""
        base = np.asarray(fn(self.entry(name)), dtype=np.float64)
        if name not in self.all_orders:
            return base
        return _per_row(all_orders, base, lambda: fn(self.all_orders[name]))

    def add_sim_to_real(self, name: str, value: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """σ (N,) of token `name` (calibrated, physical units) with its sim-to-real term, if it has one;
        value (N,): the prediction (a relative term's scale)."""
        term = self.sim_to_real.get(name)
        s = np.asarray(sigma, dtype=np.float64)
        return s.copy() if term is None else term.total(value, s)

    def add_sim_to_real_derived(
        self, log_token: str, linear: np.ndarray, sigma: np.ndarray, derived: str | None = None
    ) -> np.ndarray:
        """σ (N,) of a linear label derived as exp(log_token), with a sim-to-real term taken as relative:
        linear · √((σ/linear)² + extra²). The term is the derived label's own when the calibration has one
        (`derived`, e.g. ``ebv``: its knots are in the calibrated relative σ of the linear label, for a log
        token without a calibration of its own), else the log token's (``ln_age`` for ``age``)."""
        term = (
            self.sim_to_real.get(derived) if derived in self.sim_to_real else self.sim_to_real.get(log_token)
        )
        s = np.asarray(sigma, dtype=np.float64)
        if term is None:
            return s.copy()
        return term.total(linear, s, relative=True)

    def apply(
        self, name: str, sigma: np.ndarray, g: np.ndarray | None = None, all_orders: np.ndarray | None = None
    ) -> np.ndarray:
        """Calibrated σ (N,) of token `name`; g (N,) G magnitudes where known (entries with G-bin factors);
        all_orders (N,) bool: the rows whose XP keep every order the model reads (format 5)."""
        return self._each(name, all_orders, lambda lc: lc.apply(sigma, g))

    def shift(
        self, name: str, mean: np.ndarray, g: np.ndarray | None = None, all_orders: np.ndarray | None = None
    ) -> np.ndarray:
        """Mean (N,) of token `name` with its entry's G-bin shift (none: unchanged); all_orders as `apply`."""
        return self._each(name, all_orders, lambda lc: lc.shift(mean, g))

    def derived_sigma(
        self,
        derived: str,
        log_token: str,
        linear: np.ndarray,
        sigma_log_raw: np.ndarray,
        g: np.ndarray | None = None,
        all_orders: np.ndarray | None = None,
    ) -> np.ndarray:
        """σ (N,) of a linear label derived as exp(log_token) (``age`` from ``ln_age``): its own
        linear-space calibration applied to linear · σ_raw when it has one, else linear · the
        calibrated σ of the log token (each row with its entry, all_orders as `apply`)."""
        lin = np.asarray(linear, dtype=np.float64)
        raw = np.asarray(sigma_log_raw, dtype=np.float64)

        def own(lc: LabelCalibration) -> np.ndarray:  # a relative entry maps σ_raw to σ / linear
            return lin * lc.apply(raw, g) if lc.relative else lc.apply(lin * raw, g)

        base = (
            own(self.labels[derived])
            if derived in self.labels
            else lin * self.apply(log_token, raw, g, all_orders)
        )
        if derived not in self.all_orders:
            return base
        return _per_row(all_orders, base, lambda: own(self.all_orders[derived]))

    def updated(self, new: Calibration) -> tuple[Calibration, dict[str, list[str]]]:
        """This calibration with `new`'s entries in place of its own for the tokens `new` calibrates, and a
        record of what was replaced, added, kept and dropped. Every other entry and section stays. A
        recalibrated token's every-order entry is dropped unless `new` has one (it was fitted beside the
        old entry), and so is the sim-to-real term of a token whose entry, or whose log/linear partner's
        (``ln_age``/``age``, ``logebv``/``ebv``), is recalibrated (the term was fitted on the old σ)."""
        refit = set(new.labels) | set(new.all_orders)
        linked = {*refit, *(DERIVED[k] for k in refit if k in DERIVED)}
        linked |= {log for log, lin in DERIVED.items() if lin in refit}
        every = {k: v for k, v in self.all_orders.items() if k not in refit}
        every.update(new.all_orders)
        s2r = {k: v for k, v in self.sim_to_real.items() if k not in linked}
        s2r.update(new.sim_to_real)
        classes = {k: v for k, v in self.by_class.items() if k not in linked}  # fitted on the old σ
        classes.update(new.by_class)
        before = set(self.labels) | set(self.all_orders)
        record = {
            "replaced": sorted(refit & before),
            "added": sorted(refit - before),
            "kept": sorted(before - refit),
            "dropped_all_orders": sorted(set(self.all_orders) - set(every)),
            "dropped_sim_to_real": sorted(set(self.sim_to_real) - set(s2r)),
            "dropped_by_class": sorted(set(self.by_class) - set(classes)),
        }
        out = Calibration(
            labels={**self.labels, **new.labels},
            provenance={
                **self.provenance,
                "updates": [*self.provenance.get("updates", []), {**record, "by": dict(new.provenance)}],
            },
            sim_to_real=s2r,
            sim_to_real_provenance={**self.sim_to_real_provenance, **new.sim_to_real_provenance}
            if s2r
            else {},
            all_orders=every,
            all_orders_provenance={**self.all_orders_provenance, **new.all_orders_provenance}
            if every
            else {},
            by_class=classes,
            by_class_provenance={**self.by_class_provenance, **new.by_class_provenance} if classes else {},
        )
        return out, record

    @property
    def any_applied(self) -> bool:
        return any(lc.applied for lc in (*self.labels.values(), *self.all_orders.values()))

    def to_dict(self) -> dict[str, Any]:
        shifted = any(lc.g_shifts is not None for lc in self.labels.values())
        version = (
            SIM_TO_REAL_FORMAT_VERSION
            if self.sim_to_real
            else (SHIFT_FORMAT_VERSION if shifted else FORMAT_VERSION)
        )
        out = {
            "format_version": ALL_ORDERS_FORMAT_VERSION if self.all_orders else version,
            "formula": FORMULA,
            "labels": {k: _clean(asdict(v)) for k, v in self.labels.items()},
            "provenance": self.provenance,
        }
        if self.sim_to_real:
            out["sim_to_real"] = {
                "formula": SIM_TO_REAL_FORMULA,
                "tokens": {
                    k: {
                        "sigma_knots": list(t.sigma_knots),
                        "extra_knots": list(t.extra_knots),
                        "relative": t.relative,
                    }
                    for k, t in self.sim_to_real.items()
                },
                "provenance": self.sim_to_real_provenance,
            }
        if self.all_orders:
            out["all_orders"] = {
                "labels": {k: _clean(asdict(v)) for k, v in self.all_orders.items()},
                "provenance": self.all_orders_provenance,
            }
        if self.by_class:
            out["format_version"] = BY_CLASS_FORMAT_VERSION
            out["by_class"] = {
                "split": f"giant: predicted logg < {CLASS_SPLIT_LOGG}; dwarf: the rest (NaN logg: factor 1)",
                "factors": self.by_class,
                "provenance": self.by_class_provenance,
            }
        if any(lc.relative or lc.floor for lc in (*self.labels.values(), *self.all_orders.values())):
            out["format_version"] = RELATIVE_FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if str(d.get("format_version")) not in READABLE_VERSIONS:
            raise ValueError(
                f"calibration format_version {d.get('format_version')!r} is not supported; expected one of "
                f"{READABLE_VERSIONS}"
            )
        labels = {k: LabelCalibration(**v) for k, v in d.get("labels", {}).items()}
        s2r = d.get("sim_to_real") or {}
        every = d.get("all_orders") or {}
        return cls(
            labels=labels,
            provenance=dict(d.get("provenance", {})),
            sim_to_real={k: SimToReal(**v) for k, v in (s2r.get("tokens") or {}).items()},
            sim_to_real_provenance=dict(s2r.get("provenance") or {}),
            all_orders={k: LabelCalibration(**v) for k, v in (every.get("labels") or {}).items()},
            all_orders_provenance=dict(every.get("provenance") or {}),
            by_class={k: dict(v) for k, v in ((d.get("by_class") or {}).get("factors") or {}).items()},
            by_class_provenance=dict((d.get("by_class") or {}).get("provenance") or {}),
        )

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write JSON to `path` (a file, or a directory that gets `calibration.json`)."""
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_FILE
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass overwrite=True (--overwrite) to replace it")
        from xpengine.io.atomic import write_text_atomically

        return write_text_atomically(p, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_FILE
        return cls.from_dict(json.loads(p.read_text()))


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN → None so the JSON stays standard."""
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if isinstance(v, tuple):
            v = list(v)
        if v is None and k in ("sigma_knots", "sigma_cal_knots", "g_edges", "g_scales", "g_shifts"):
            continue  # format-1 and -2 entries stay as they were
        if (k == "shift_kind" and d.get("g_shifts") is None) or (k in ("relative", "floor") and not v):
            continue  # (an absolute entry is written as before format 7)
        out[k] = v
    return out

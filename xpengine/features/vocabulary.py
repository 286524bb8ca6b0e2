"""The token vocabulary: which quantities the model reads and predicts, in what units.

The vocabulary of Leung & Bovy (2024) has 118 tokens (id 0 = padding): the BP and RP coefficients
(G-flux normalised), BP−RP, J−H, J−K, Teff, logg, [M/H], ln E(B−V) and the pseudo-luminosity.
Zhang et al. (2026) add stellar mass and ln(age/Gyr): 120 tokens. The number of XP coefficients is a
parameter (55 per band in Gaia DR3, 51 BP in DR4), never a constant of the code.

A vocabulary is immutable, named and versioned; checkpoints store it as JSON so a model can only be fed
the tokens it was trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PAPER_VOCABULARY",
    "Token",
    "Vocabulary",
    "canonical_token_set",
    "paper_vocabulary",
]


_RANGE = re.compile(r"^(?P<prefix>[A-Za-z_]+?)(?P<start>\d+)\.\.(?P<end>\d+)$")
"""A token range such as `bp0..29`."""


@dataclass(frozen=True)
class Token:
    """One vocabulary entry.

    name: column name of the value in every table (`bp0`, `teff`, `ln_age`); the error column is
    `<name>_error`. kind: one of "xp", "colour", "label", "extinction", "luminosity".
    unit: physical unit of the value as the model sees it (the error has the same unit).
    """

    name: str
    kind: str
    unit: str
    description: str = ""

    @property
    def error_name(self) -> str:
        return f"{self.name}_error"


_AFTER_XP: tuple[Token, ...] = (
    Token("bprp", "colour", "mag", "Gaia G_BP - G_RP colour"),
    Token("jh", "colour", "mag", "2MASS J - H colour"),
    Token("jk", "colour", "mag", "2MASS J - Ks colour"),
    Token("teff", "label", "K", "effective temperature"),
    Token("logg", "label", "dex", "log10 surface gravity [cm s^-2]"),
    Token("m_h", "label", "dex", "metallicity [M/H] (APOGEE [Fe/H] where [M/H] is absent)"),
    Token("logebv", "extinction", "", "natural log of E(B-V) [mag]"),
    Token("g_fakemag", "luminosity", "", "pseudo-luminosity parallax[mas]*10^(0.2 G) = 10^(0.2 M_G + 2)"),
)
_EVOLUTION: tuple[Token, ...] = (
    Token("mass", "label", "Msun", "stellar mass"),
    Token("ln_age", "label", "", "natural log of age [Gyr]"),
)
EXTRA_TOKENS: dict[str, Token] = {
    "alpha_m": Token("alpha_m", "label", "dex", "alpha-element abundance [alpha/M]"),
}


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of tokens. Token id = position + 1 (id 0 is padding)."""

    name: str
    version: str
    tokens: tuple[Token, ...]
    n_bp: int
    n_rp: int
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"vocabulary {self.name!r} has duplicated token names: {dup}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tokens]

    @property
    def error_names(self) -> list[str]:
        return [t.error_name for t in self.tokens]

    @property
    def xp_names(self) -> list[str]:
        return [t.name for t in self.tokens if t.kind == "xp"]

    def index(self, name: str) -> int:
        """Column index (0-based) of a token in value/error matrices."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(
                f"token {name!r} is not in vocabulary {self.name}/{self.version}; known tokens: "
                f"{', '.join(self.names[-12:])} and {len(self) - 12} XP coefficients"
            ) from None

    def indices(self, names: list[str] | tuple[str, ...]) -> list[int]:
        return [self.index(n) for n in names]

    def token(self, name: str) -> Token:
        return self.tokens[self.index(name)]

    def token_id(self, name: str) -> int:
        """Embedding id (1-based; 0 is padding)."""
        return self.index(name) + 1

    def select(self, spec: Sequence[str]) -> list[str]:
        """Token names selected by `spec`, in the order given, without duplicates. Items: exact token
        names, inclusive ranges `bp0..29` (the names of this vocabulary that match; a Gaia DR4
        vocabulary with 51 BP coefficients just has fewer), kinds `kind:xp` / `kind:label` /
        `kind:colour` ..., and `all`. Every unknown item is reported in one ValueError."""
        out: list[str] = []
        problems: list[str] = []
        for item in spec:
            if item == "all":
                names = self.names
            elif item.startswith("kind:"):
                kind = item.split(":", 1)[1]
                names = [t.name for t in self.tokens if t.kind == kind]
                if not names:
                    kinds = sorted({t.kind for t in self.tokens})
                    problems.append(f"{item!r}: no token of kind {kind!r} (kinds: {kinds})")
            elif m := _RANGE.match(item):
                wanted = {f"{m['prefix']}{i}" for i in range(int(m["start"]), int(m["end"]) + 1)}
                names = [n for n in self.names if n in wanted]
                if not names:
                    problems.append(f"{item!r}: no token of the vocabulary in that range")
            elif item in self:
                names = [item]
            else:
                problems.append(f"{item!r} is not a token of vocabulary {self.name}")
                names = []
            out.extend(n for n in names if n not in out)
        if problems:
            raise ValueError("bad token selection:\n  " + "\n  ".join(problems))
        return out

    def matrix(self, columns: Any, *, strict: bool = True) -> Any:
        """(N, T) float32 values in this vocabulary's order from named token columns ({token name: (N,)
        array}; tokens not given are NaN, `<name>_error` columns ignored). strict: any other column name is
        an error (a typo would otherwise drop an input silently)."""
        import numpy as np

        known = set(self.names)
        if strict:
            unknown = sorted(k for k in columns if k not in known and k.removesuffix("_error") not in known)
            if unknown:
                others = [t.name for t in self.tokens if t.kind != "xp"]
                raise ValueError(
                    f"columns {unknown[:10]} are not tokens of vocabulary {self.name}; "
                    f"tokens are the XP coefficients bp0.., rp0.. and {', '.join(others)}"
                )
        present = [k for k in columns if k in known]
        if not present:
            raise ValueError(f"none of the columns are tokens of vocabulary {self.name}")
        n = len(np.asarray(columns[present[0]]))
        values = np.full((n, len(self)), np.nan, dtype=np.float32)  # (N, T)
        for name in present:
            col = np.asarray(columns[name], dtype=np.float32)
            if col.shape != (n,):
                raise ValueError(f"column {name!r} has shape {col.shape}, expected ({n},)")
            values[:, self.index(name)] = col
        return values

    def with_tokens(self, names: list[str] | tuple[str, ...], *, name: str | None = None) -> Vocabulary:
        """A new vocabulary with extra tokens (from EXTRA_TOKENS) appended at the end."""
        extra = []
        for n in names:
            if n not in EXTRA_TOKENS:
                raise KeyError(f"unknown extra token {n!r}; available: {sorted(EXTRA_TOKENS)}")
            extra.append(EXTRA_TOKENS[n])
        return Vocabulary(
            name=name or f"{self.name}+{'+'.join(names)}",
            version=self.version,
            tokens=self.tokens + tuple(extra),
            n_bp=self.n_bp,
            n_rp=self.n_rp,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "n_bp": self.n_bp,
            "n_rp": self.n_rp,
            "tokens": [
                {"name": t.name, "kind": t.kind, "unit": t.unit, "description": t.description}
                for t in self.tokens
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        return cls(
            name=d["name"],
            version=d["version"],
            tokens=tuple(Token(**t) for t in d["tokens"]),
            n_bp=int(d["n_bp"]),
            n_rp=int(d["n_rp"]),
        )


def paper_vocabulary(n_bp: int = 55, n_rp: int = 55) -> Vocabulary:
    """The 120-token vocabulary of Zhang et al. (2026) for `n_bp` BP and `n_rp` RP coefficients.

    Order: bp0..bp{n_bp-1}, rp0..rp{n_rp-1}, bprp, jh, jk, teff, logg, m_h, logebv, g_fakemag, mass,
    ln_age (the Leung & Bovy order with the two evolution tokens appended).
    XP tokens are coefficients divided by the G-band flux (dimensionless).
    """
    xp = tuple(Token(f"bp{i}", "xp", "", f"BP coefficient {i} / G flux") for i in range(n_bp)) + tuple(
        Token(f"rp{i}", "xp", "", f"RP coefficient {i} / G flux") for i in range(n_rp)
    )
    return Vocabulary(
        name="zhang2026" if (n_bp, n_rp) == (55, 55) else f"zhang2026-bp{n_bp}-rp{n_rp}",
        version="1",
        tokens=xp + _AFTER_XP + _EVOLUTION,
        n_bp=n_bp,
        n_rp=n_rp,
    )


PAPER_VOCABULARY: Vocabulary = paper_vocabulary()


def canonical_token_set(tokens: list[str]) -> list[str]:
    """Context tokens as the job identity (`xpengine.pipeline.identity`) compares them: the model's
    context is an unordered set (the transformer has no positional encoding, `xpengine.model.transformer`),
    so two spellings of one set are one context. Ranges such as `bp0..29` (a record that kept the option
    as given) are expanded as `Vocabulary.select` does for a vocabulary that has them, duplicates
    dropped, and the names sorted by their text and trailing number (`bp2` before `bp10`)."""
    names: set[str] = set()
    for item in tokens:
        m = _RANGE.match(str(item))
        if m:
            names.update(f"{m['prefix']}{i}" for i in range(int(m["start"]), int(m["end"]) + 1))
        else:
            names.add(str(item))

    def key(name: str) -> tuple[str, int]:
        m = re.fullmatch(r"(.*?)(\d+)", name)
        return (m[1], int(m[2])) if m else (name, -1)

    return sorted(names, key=key)

"""The XP representation the catalogue engine feeds the model (one place, so it cannot drift)."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["engine_representation"]


@functools.lru_cache(maxsize=1)
def engine_representation() -> Any:
    from xpengine.spectra.representation import token_representation

    return token_representation()

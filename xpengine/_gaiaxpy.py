"""Importing GaiaXPy without its side effect on matplotlib.

GaiaXPy's plotter sets `matplotlib.rcParams['text.usetex'] = True` when the package is imported, which
breaks every later figure on a machine without LaTeX. Import GaiaXPy modules through `import_gaiaxpy`.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["import_gaiaxpy"]


def import_gaiaxpy(module: str) -> ModuleType:
    """`importlib.import_module(module)` for a gaiaxpy module, restoring matplotlib's usetex setting."""
    before = None
    if "matplotlib" in sys.modules:
        before = sys.modules["matplotlib"].rcParams["text.usetex"]
    mod = importlib.import_module(module)
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].rcParams["text.usetex"] = bool(before)
    return mod

"""Where the workplace's shared data lives: `../shared` beside the repository (as on developer machines and
in CI), or the directory named by XPENGINE_SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("XPENGINE_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")

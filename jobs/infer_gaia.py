"""The catalogue job's entry point for `ray job submit` (and for a local run: `python jobs/infer_gaia.py`).

Its options and usage are `python jobs/infer_gaia.py --help`, written once in
`xpengine.pipeline.cli.JOB_DESCRIPTION` and shared with `xpengine infer`.
"""

from __future__ import annotations

import sys

from xpengine.pipeline.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main())

r"""Gaia XP → mass / age / Teff / logg / [M/H] catalogue, as a Ray job.

Local run on the embedded default data and model (starts its own Ray cluster):

    python jobs/infer_gaia.py

On a running cluster (local: `ray start --head --dashboard-host 127.0.0.1`):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/infer_gaia.py --input /data/xp_continuous_mean_spectrum --gaia-source /data/gaia_source \
        --output /data/catalogue

Inputs and outputs may be fsspec/pyarrow URLs (s3://bucket/prefix with credentials from the standard AWS
environment variables, AWS_ENDPOINT_URL for S3-compatible stores). The job exits non-zero when a
partition failed; re-running resumes (finished partitions are skipped unless --overwrite). A local
cluster started by the job listens on 127.0.0.1 only; Ray's authentication setting (RAY_AUTH_MODE,
token by default) is left as the user has it. One job at a time per output (a lock in OUTPUT/_LOCK.json).
"""

from __future__ import annotations

import sys

from xpengine.pipeline.cli import job_main

if __name__ == "__main__":
    sys.exit(job_main())

"""`ray job submit` to a two-node cluster started with `ray start`, reading partitions from and writing
the catalogue to an S3-compatible server (moto) on loopback.

The nodes run `ray start --block` in their own process groups and are stopped by signalling those
groups (never `ray stop`, which would also kill the test session's own local cluster).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARTS = ("000000-003111", "245760-248871")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "gaia"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    return os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture
def two_node_cluster(tmp_path, s3_server):
    env = {**os.environ, **s3_server, "RAY_AUTH_MODE": "disabled"}
    gcs_port, dash_port = _free_port(), _free_port()
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    procs = []

    def start(args: list[str]) -> None:
        # every agent port explicit and free: the test session's own local cluster (and any other Ray on
        # the machine) holds the defaults, and a node whose dashboard agent cannot bind takes no jobs
        agent_ports = [
            "--dashboard-agent-listen-port",
            str(_free_port()),
            "--dashboard-agent-grpc-port",
            str(_free_port()),
            "--metrics-export-port",
            str(_free_port()),
            "--runtime-env-agent-port",
            str(_free_port()),
            "--ray-client-server-port",
            str(_free_port()),
        ]
        args = [*args, *agent_ports]
        log = open(tmp_path / f"ray-node-{len(procs)}.log", "w")
        procs.append(
            subprocess.Popen(
                [_ray_bin(), "start", *args, *common],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    start(
        [
            "--head",
            "--port",
            str(gcs_port),
            "--node-ip-address",
            "127.0.0.1",
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash_port),
        ]
    )
    address = f"127.0.0.1:{gcs_port}"
    dashboard = f"http://127.0.0.1:{dash_port}"
    _wait_for(lambda: _dashboard_up(dashboard), 120, "head node dashboard")
    start(["--address", address, "--node-ip-address", "127.0.0.1"])
    _wait_for(lambda: _alive_nodes(address, env) == 2, 120, "second node")
    yield {"address": address, "dashboard": dashboard, "env": env}
    for p in procs[::-1]:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:  # a graceful stop takes Ray ~30 s on 2 cores; the test needs none: the group is killed
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def _wait_for(cond, timeout_s: float, what: str) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if cond():
            return
        time.sleep(1.0)
    raise TimeoutError(f"{what} not up after {timeout_s} s")


def _dashboard_up(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/api/version", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _alive_nodes(address: str, env) -> int:
    code = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    try:
        return int(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def test_job_submit_two_nodes_s3_in_and_out(two_node_cluster, sky_dir, tiny_sky_model, tmp_path):
    import boto3
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from xpengine import io
    from xpengine.io.filesystems import arrow_filesystem

    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    fs, _ = arrow_filesystem(f"s3://{BUCKET}")
    expected = []
    for p in PARTS:
        for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
            src = os.path.join(sky_dir, f"{kind}_{p}.csv.gz")
            with fs.open_output_stream(f"{BUCKET}/dr3/{kind}_{p}.csv.gz", compression=None) as f:
                f.write(open(src, "rb").read())
        expected.append(
            io.read_xp_continuous(
                os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{p}.csv.gz"), columns=["source_id"]
            )
            .column("source_id")
            .to_numpy()
        )
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_sky_model, model_dir)
    cmd = [
        _ray_bin(),
        "job",
        "submit",
        "--address",
        two_node_cluster["dashboard"],
        "--",
        sys.executable,
        os.path.join(REPO, "jobs", "infer_gaia.py"),
        "--input",
        f"s3://{BUCKET}/dr3/",
        "--output",
        f"s3://{BUCKET}/catalogue/",
        "--model",
        str(model_dir),
        "--actors",
        "1",
        "--cpus-per-actor",
        "0.5",
        "--batch-size",
        "512",
    ]
    # the dashboard answers before its job agent is ready ("No available agent to submit job, please try
    # again later"): retry that one answer for up to two minutes
    t0 = time.time()
    while True:
        r = subprocess.run(cmd, env=two_node_cluster["env"], capture_output=True, text=True, timeout=600)
        out = r.stdout + r.stderr
        if r.returncode == 0 or "No available agent" not in out or time.time() - t0 > 120:
            break
        time.sleep(3.0)
    assert r.returncode == 0, out[-4000:]
    assert "succeeded" in out.lower(), out[-2000:]
    assert "xpengine-test-secret" not in out  # credentials never logged
    for p, ids in zip(PARTS, expected, strict=True):
        t = pq.read_table(f"{BUCKET}/catalogue/{p}.parquet", filesystem=fs)
        got = t.column("source_id").to_numpy()
        assert len(got) == len(ids) == len(np.unique(got)) and set(got.tolist()) == set(ids.tolist())
        with fs.open_input_stream(f"{BUCKET}/catalogue/_manifest/{p}.json") as f:
            rec = json.loads(f.read())
        assert rec["status"] == "done" and rec["output_rows"] == len(ids)
    info = fs.get_file_info(pafs.FileSelector(f"{BUCKET}/catalogue", recursive=True))
    assert not [i.path for i in info if ".tmp-" in i.path]

"""Stop a local Ray cluster whose driver died without shutting it down (SIGKILL, OOM killer).

`ray.init()` starts the GCS, raylet, agents and workers as descendants of the driver. When the driver
is killed they are orphaned, and some (the dashboard and runtime-env agents) keep running for a minute
or more. The job therefore starts this watcher beside any cluster it starts: a separate process (own
session, so a terminal's Ctrl-C or a kill of the driver does not reach it) that notes the driver's
descendants every second and, once the driver is gone, terminates the last ones it saw (matched by
pid and start time, so a recycled pid is never touched), then exits.

    python -m xpengine.pipeline._reaper DRIVER_PID
"""

from __future__ import annotations

import subprocess
import sys
import time

__all__ = ["start_reaper"]


def start_reaper(driver_pid: int) -> subprocess.Popen:
    """Start the watcher for `driver_pid` (returns at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "xpengine.pipeline._reaper", str(driver_pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _watch(driver_pid: int, interval_s: float = 1.0, grace_s: float = 5.0) -> None:
    import psutil

    try:
        driver = psutil.Process(driver_pid)
        driver_started = driver.create_time()
    except psutil.NoSuchProcess:
        return
    me = psutil.Process().pid  # started by the driver, hence one of its descendants: never itself
    seen: dict[int, float] = {}
    while True:
        try:
            if not driver.is_running() or driver.create_time() != driver_started:
                break
            if driver.status() == psutil.STATUS_ZOMBIE:
                break
            for child in driver.children(recursive=True):
                if child.pid == me:
                    continue
                try:
                    seen[child.pid] = child.create_time()
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            break
        time.sleep(interval_s)
    left = []
    for pid, started in seen.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == started:
                p.terminate()
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


if __name__ == "__main__":
    _watch(int(sys.argv[1]))

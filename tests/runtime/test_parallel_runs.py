from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixsup.errors import MixsupError
from mixsup.runtime.parallel_runs import run_in_processes, threads_per_process


def _threads(job: int) -> tuple[int, str, int]:
    import torch

    return job, os.environ["OMP_NUM_THREADS"], torch.get_num_threads()


def _fail_on_one(job: int) -> int:
    if job == 1:
        raise ValueError("bad job")
    return job


def test_threads_split_the_cores():
    assert threads_per_process(2, cores=16) == 8
    assert threads_per_process(3, cores=2) == 1
    assert threads_per_process(1, cores=2) == 2


def test_each_child_keeps_to_its_share_of_the_cores(tmp_path):
    done = dict(run_in_processes(_threads, [0, 1, 2], 2, name=str,
                                 log_path=lambda j: tmp_path / f"{j}.log"))
    share = threads_per_process(2)
    assert sorted(done) == [0, 1, 2]
    assert all(r == (i, str(share), share) for i, r in done.items())


def test_a_failed_run_is_named_with_its_log(tmp_path):
    def log(job: int) -> Path:
        return tmp_path / f"run{job}" / "experiment.log"

    with pytest.raises(MixsupError) as err:
        dict(run_in_processes(_fail_on_one, [0, 1, 2], 2, name=lambda j: f"job {j}",
                              log_path=log))
    assert "run job 1 failed: bad job" in str(err.value) and str(log(1)) in str(err.value)
    assert "ValueError: bad job" in log(1).read_text()


PARENT = """
import sys, time
from pathlib import Path
from mixsup.runtime.parallel_runs import run_in_processes
list(run_in_processes(time.sleep, [600], 1, name=str, log_path=lambda j: Path(sys.argv[1])))
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _wait_for(condition, seconds: float = 60) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_killed_parent_leaves_no_run_training_on(tmp_path):
    log = tmp_path / "run.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log)])
    workers: list[int] = []
    try:
        assert _wait_for(log.exists), "the run never started"
        workers = _children(parent.pid)
        assert workers, "no worker process found"
        parent.send_signal(signal.SIGTERM)
        parent.wait(30)
        assert _wait_for(lambda: not any(_running(w) for w in workers), 30), \
            f"workers {workers} outlived their parent"
    finally:
        parent.kill()
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)

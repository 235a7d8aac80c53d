from __future__ import annotations

import os
from pathlib import Path

import pytest

from mixsup.errors import MixsupError
from mixsup.parallel_runs import run_in_processes, threads_per_process


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

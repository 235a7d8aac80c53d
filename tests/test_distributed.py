"""torchrun with 2 CPU processes (gloo): training, the sharded E-step and sharded prediction."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from tests.helpers import FAST


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_port()}", "-m", "mixsup", "-q", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def _read(path: Path) -> dict[str, float]:
    with open(path) as fh:
        return {r["slide_id"]: float(r["probability"]) for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_torchrun_training_and_sharded_estep(shapes_data, tmp_path):
    args = ["train", str(shapes_data), "--out", str(tmp_path / "run"), "--preset", "tiny"]
    for item in [*FAST, "stage1.rounds=1"]:
        args += ["--set", item]
    done = _torchrun(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "bundle" / "bundle.json").is_file()
    writers: dict[int, set[str]] = {}
    for store in (run / "round_0" / "maps").glob("*.zarr"):
        rank = zarr.open_group(str(store), mode="r").attrs["written_by_rank"]
        writers.setdefault(rank, set()).add(store.stem)
    labelled = {line.split(",")[0] for line in (shapes_data / "slides.csv").read_text()
                .splitlines()[1:] if line.split(",")[3] == "train"}
    assert set(writers) == {0, 1}, "both ranks take a shard"
    assert writers[0].isdisjoint(writers[1])
    assert writers[0] | writers[1] == labelled, "no slide missed"
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [(e["round"], e["epoch"]) for e in events if e["event"] == "epoch"]
    assert epochs == [(0, 1), (0, 2), (1, 1), (1, 2)]  # logged once, by rank 0


@pytest.mark.slow
def test_torchrun_predict_equals_single_process(shapes_data, trained, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    common = ["--data", str(shapes_data), "--split", "train"]
    one = subprocess.run([sys.executable, "-m", "mixsup", "-q", "predict", str(trained.run_dir),
                          *common, "--out", str(single)], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _torchrun("predict", str(trained.run_dir), *common, "--out", str(sharded))
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _read(single / "predictions.csv"), _read(sharded / "predictions.csv")
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-5)


@pytest.mark.slow
def test_torchrun_features_are_sharded_and_equal_single_process(shapes_data, tmp_path):
    import numpy as np

    from mixsup.cli import main
    from mixsup.inference.features import open_features

    common = ["--preset", "tiny", "--set", "runtime.num_workers=0", "--set", "tiling.overlap=0"]
    assert main(["-q", "features", str(shapes_data), "--out", str(tmp_path / "one"),
                 *common]) == 0
    two = _torchrun("features", str(shapes_data), "--out", str(tmp_path / "two"), *common)
    assert two.returncode == 0, two.stderr[-3000:]
    writers: dict[int, set[str]] = {}
    for store in (tmp_path / "two").glob("*.zarr"):
        rank = zarr.open_group(str(store), mode="r").attrs["written_by_rank"]
        writers.setdefault(rank, set()).add(store.stem)
        a, b = open_features(tmp_path / "one" / store.name), open_features(store)
        assert np.array_equal(a.coords, b.coords)
        assert np.allclose(a.features, b.features, atol=1e-5)
    assert set(writers) == {0, 1} and writers[0].isdisjoint(writers[1])
    assert len(writers[0] | writers[1]) == 6

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixsup.config import RuntimeConfig
from mixsup.train.fit import NonFiniteLoss, fit
from mixsup.train.sampler import MixedBatchSampler


class _Toy(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.refs = np.arange(n * 3).reshape(n, 3)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i):
        img = torch.full((8, 8, 3), i, dtype=torch.uint8)
        return img, torch.zeros(8, 8), torch.ones(8, 8)

    def describe(self, indices):
        return [self.refs[i].tolist() for i in indices]


def test_nan_loss_stops_with_a_diagnostic(tmp_path):
    model = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    sampler = MixedBatchSampler([6, 0, 0], (1, 0, 0), 3, steps=2)
    rt = RuntimeConfig(num_workers=0, channels_last=False)
    with pytest.raises(NonFiniteLoss, match="nan") as err:
        fit(model, _Toy(6), sampler, 1, 1e-3, 0.0, rt, torch.device("cpu"),
            tmp_path / "ckpt.pt", progress=False)
    diag = json.loads((tmp_path / "nonfinite_epoch1.json").read_text())
    assert len(diag["batch_indices"]) == 3
    assert diag["items"] == [[3 * i, 3 * i + 1, 3 * i + 2] for i in diag["batch_indices"]]
    assert "nonfinite_epoch1.json" in str(err.value)
    assert not (tmp_path / "ckpt.pt").exists()  # nothing poisoned was saved


def test_nan_loss_in_stage2_names_the_slides(shapes_data, tmp_path, monkeypatch):
    """The real stage-2 path: run_stage2 -> TopKPatches -> fit, with a θ2 that outputs NaN."""
    from mixsup.config import load_config
    from mixsup.inference.map_store import StoredMaps
    from mixsup.labels.table import load_dataset
    from mixsup.train import stage2
    from mixsup.train.context import prepare
    from mixsup.train.results import MapStats, PoolSizes, PoolStats, RoundSummary
    from mixsup.train.rounds import RoundResult
    from tests.helpers import FAST

    real = stage2.build_theta2

    def nan_classifier(*args, **kwargs):
        model = real(*args, **kwargs)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
        return model

    monkeypatch.setattr(stage2, "build_theta2", nan_classifier)
    cfg = load_config("tiny", overrides=[*FAST, "stage2.init=encoder"])  # no θ1 file here
    ctx = prepare(load_dataset(shapes_data), cfg, tmp_path, progress=False)
    rng = np.random.default_rng(0)
    maps = {i: StoredMaps(tmp_path / "unused.zarr", t.coords, rng.uniform(size=len(t)))
            for i, t in enumerate(ctx.train.tilesets)}
    summary = RoundSummary(0, 0, [], None, PoolStats(PoolSizes(0, 0, 0)), MapStats(0, 0, 0),
                           0.0, 0.0, 0.0)
    res = RoundResult(0, tmp_path / "unused.pt", maps, summary)
    with pytest.raises(NonFiniteLoss, match="nan"):
        stage2.run_stage2(ctx, res, None)
    diag = json.loads((tmp_path / "round_0" / "stage2" / "nonfinite_epoch1.json").read_text())
    ids = {r.slide_id for r in ctx.train.records}
    assert diag["items"] and all(item["slide_id"] in ids and len(item["patches"]) == 2
                                 for item in diag["items"])
    assert not (tmp_path / "round_0" / "stage2" / "train_last.pt").exists()


def test_bn_recalibration_matches_the_final_weights():
    from torch.utils.data import DataLoader

    from mixsup.train.fit import recalibrate_bn

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    data = [torch.randn(16, 3, 4, 4) * 5 + 3 for _ in range(8)]
    net[1].running_mean.fill_(-100.0)  # stale statistics, as after a short training

    def forward(model, batch, device, runtime):
        return model(batch).mean()

    recalibrate_bn(net, DataLoader(data, batch_size=None), forward, torch.device("cpu"),
                   RuntimeConfig(), max_batches=8)
    assert not net.training
    with torch.no_grad():
        features = net[0](torch.cat(data))
    torch.testing.assert_close(net[1].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4,
                               rtol=1e-4)
    assert net[1].momentum == 0.1

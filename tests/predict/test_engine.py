"""``mixsup predict``'s tables (the end-to-end runs are in tests/train and tests/reliability)."""

from __future__ import annotations

import numpy as np
import pytest

from mixsup.evaluate.report import read_predictions
from mixsup.predict.engine import SlidePrediction, _write_tables


def test_predictions_csv_keeps_exact_probabilities(tmp_path):
    p = float(np.float32(0.75) + np.float32(1e-7))  # just above a 6-decimal rounding
    _write_tables(tmp_path, [SlidePrediction("a", "a.tiff", p, 1, 0, ())])
    assert read_predictions(tmp_path / "predictions.csv")["a"] == p


def test_predict_config_takes_runtime_settings_and_refuses_model_ones(trained):
    from mixsup.errors import MixsupError
    from mixsup.methods.bundle import read_bundle
    from mixsup.predict.engine import predict_config

    bundle = read_bundle(trained.run_dir)
    cfg = predict_config(bundle, (), ["runtime.num_workers=0", "reader.mpp=0.25",
                                      "stage1.infer_batch_size=3"])
    assert (cfg.runtime.num_workers, cfg.reader.mpp, cfg.stage1.infer_batch_size) == (0, 0.25, 3)
    assert cfg.model == bundle.cfg.model and cfg.tiling == bundle.cfg.tiling
    for override in ("mil.aggregation=mean_topk", "stage2.top_k=3", "tiling.mpp=2.0"):
        with pytest.raises(MixsupError, match=override.split(".")[0]) as err:
            predict_config(bundle, (), [override])
        assert "runtime" in err.value.fix


def test_a_prediction_is_reused_only_for_the_same_slide_file(tmp_path):
    import json
    import os

    from mixsup.predict.engine import _predicted

    slide, other = tmp_path / "a.tiff", tmp_path / "b.tiff"
    slide.write_bytes(b"x")
    other.write_bytes(b"y")
    record = tmp_path / "slides" / "s0.json"
    assert not _predicted(record, slide)  # none yet
    record.parent.mkdir()
    record.write_text(json.dumps({"path": str(slide.resolve())}))
    assert _predicted(record, slide)
    assert not _predicted(record, other)  # the same id in another test set
    later = record.stat().st_mtime_ns + 10**9
    os.utime(slide, ns=(later, later))  # the slide was written again after its prediction
    assert not _predicted(record, slide)
    record.write_text("{not json")
    assert not _predicted(record, slide)

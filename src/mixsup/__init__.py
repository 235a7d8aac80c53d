"""mixsup: whole-slide image classification from mixed supervision.

The public API, imported lazily so that ``import mixsup`` stays light:

    open_slide(path, backend="auto", mpp=None) -> Slide
    tile_slide(slide, slide_id, tiling_cfg, tissue_cfg, out_dir) -> TileSet
    load_dataset(dir) -> Dataset
    load_config(preset="paper", files=(), overrides=()) -> Config
    train(data_dir, out, cfg, mode="mixed", resume=False) -> TrainResult
    predict(run, [(slide_id, path), ...], out) -> PredictResult
    evaluate(predictions_csv, labels_csv, out) -> Evaluation
    run_experiment(data_dir, out, preset="small", modes=..., seeds=(0,)) -> Experiment
    read_bundle(run) -> BundleFile
    load_bundle(run, device="cpu") -> Bundle
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "open_slide": "mixsup.slides.reader",
    "tile_slide": "mixsup.slides.tiling",
    "load_dataset": "mixsup.labels.table",
    "load_config": "mixsup.config",
    "train": "mixsup.train.api",
    "predict": "mixsup.predict.engine",
    "evaluate": "mixsup.evaluate.report",
    "run_experiment": "mixsup.experiment.core",
    "read_bundle": "mixsup.methods.bundle",
    "load_bundle": "mixsup.methods.bundle",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'mixsup' has no attribute {name!r}")

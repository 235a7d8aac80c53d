"""Each stage-1 round's θ1 over slides it did not train on (val, test), through the one scoring
path, stored beside the round: ``round_r/maps_<split>/<slide>.zarr`` (reused when present)."""

from __future__ import annotations

from pathlib import Path

from mixsup.config.run import RUN_FIX, round_folders, saved_config
from mixsup.dataset.stain_reference import saved_stain_reference, with_stain
from mixsup.dataset.tiles import slide_set
from mixsup.errors import MixsupError
from mixsup.inference.map_store import StoredMaps
from mixsup.inference.settings import InferSettings
from mixsup.inference.stores import map_to_stores
from mixsup.labels.table import load_dataset
from mixsup.models.factory import build_segmenter
from mixsup.runtime.device import pick_device
from mixsup.storage.artefacts import load_checkpoint_into


def round_numbers(run_dir: Path) -> list[int]:
    """The run's finished rounds."""
    return [r for r, rdir in round_folders(run_dir).items() if (rdir / "summary.json").is_file()]


def heldout_maps(run_dir: str | Path, data_dir: str | Path, split: str,
                 progress: bool = True) -> dict[int, dict[str, StoredMaps]]:
    """round -> slide id -> θ1(round)'s maps of every tissue patch of the ``split`` slides."""
    run_dir = Path(run_dir)
    cfg = saved_config(run_dir)
    if cfg is None:
        raise MixsupError("not a training run (no config.yaml)", "pass the RUN folder of "
                          "`mixsup train`", run_dir)
    data = load_dataset(data_dir)
    slides = with_stain(slide_set(data, (split,), cfg, run_dir / "tiles", False, progress),
                        saved_stain_reference(cfg, run_dir))
    device = pick_device(cfg.runtime)
    settings = InferSettings.from_config(cfg, device)
    out: dict[int, dict[str, StoredMaps]] = {}
    for r in round_numbers(run_dir):
        rdir = run_dir / f"round_{r}"
        model = build_segmenter(cfg.model, load_weights=False)
        load_checkpoint_into(model, rdir / "model.pt", RUN_FIX)
        stores = map_to_stores(model, slides, list(range(len(slides.records))),
                               rdir / f"maps_{split}", settings, progress=progress,
                               desc=f"θ1 round {r} on {split}")
        out[r] = {slides.records[i].slide_id: m for i, m in stores.maps.items()}
    return out

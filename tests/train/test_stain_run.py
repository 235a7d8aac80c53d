"""``stain.normalise`` through a run: fitted once, stored, resumed, bundled, used by predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixsup.config import load_config
from mixsup.errors import MixsupError
from mixsup.slides.stain_normalise import StainReference
from tests.helpers import FAST


def _cfg(*extra: str):
    return load_config("tiny", overrides=[*FAST, "stage1.rounds=0", *extra])


READS: list[bool] = []  # per patch read while training: was it read on the reference?


@pytest.fixture(scope="module")
def stained_run(shapes_data: Path, tmp_path_factory: pytest.TempPathFactory):
    from mixsup.slides.pool import SlidePool
    from mixsup.train.api import train

    original = SlidePool.read

    def spy(self: SlidePool, idx: int, *args):
        READS.append(self.sources[idx].stain is not None)
        return original(self, idx, *args)

    run = tmp_path_factory.mktemp("stain") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SlidePool, "read", spy)
        # θ2 on round 0 and a val split: every reader of the run's slides is exercised
        return train(shapes_data, run, _cfg("stain.normalise=macenko",
                                            "stain.reference_patches=16"), progress=False)


def test_training_reads_every_patch_on_the_reference(stained_run) -> None:
    # the reference's own fit reads plain patches first (a pool of unstained copies)
    assert READS and sum(not r for r in READS) <= 16
    first_stained = READS.index(True)
    assert all(READS[first_stained:])


def test_the_reference_is_stored_in_the_run_and_the_bundle(stained_run) -> None:
    from mixsup.methods.bundle import read_bundle

    run = stained_run.run_dir
    ref = StainReference.from_record(json.loads((run / "stain.json").read_text()))
    assert ref.method == "macenko"
    bundle = read_bundle(run)
    assert bundle.stain == ref
    assert bundle.meta.preprocessing.stain == ref.record()


def test_predict_reads_every_patch_on_the_bundles_reference(stained_run, shapes_data: Path,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             ) -> None:
    from mixsup.predict.engine import collect_inputs, predict

    seen: list[StainReference] = []
    original = StainReference.apply

    def spy(self: StainReference, rgb):
        seen.append(self)
        return original(self, rgb)

    monkeypatch.setattr(StainReference, "apply", spy)
    inputs = collect_inputs([], str(shapes_data))[:1]
    predict(stained_run.run_dir, inputs, tmp_path / "pred", progress=False)
    stored = StainReference.from_record(json.loads((stained_run.run_dir / "stain.json")
                                                   .read_text()))
    assert seen and all(s == stored for s in seen)


def test_a_resume_keeps_the_reference_and_refuses_another_method(stained_run,
                                                                 shapes_data: Path) -> None:
    from mixsup.dataset.stain_reference import run_stain_reference
    from mixsup.dataset.tiles import slide_set
    from mixsup.labels.table import load_dataset

    run = stained_run.run_dir
    before = (run / "stain.json").read_bytes()
    cfg = _cfg("stain.normalise=macenko", "stain.reference_patches=3")
    slides = slide_set(load_dataset(shapes_data), ("train",), cfg, run / "tiles", False, False)
    assert run_stain_reference(cfg, slides, run).record() == json.loads(before)
    with pytest.raises(MixsupError, match="holds a macenko reference"):
        run_stain_reference(_cfg("stain.normalise=reinhard"), slides, run)


def test_a_bundle_without_its_reference_is_refused(stained_run, tmp_path: Path) -> None:
    import shutil

    from mixsup.methods.bundle import read_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(stained_run.run_dir / "bundle", copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta["preprocessing"]["stain"] = None
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(MixsupError, match="preprocessing.stain is missing"):
        read_bundle(copy)
    meta["preprocessing"]["stain"] = {"method": "reinhard", "values": [1.0] * 6}
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(MixsupError, match="reinhard reference"):
        read_bundle(copy)


def test_rounds_scores_held_out_slides_on_the_runs_reference(stained_run, shapes_data: Path,
                                                             monkeypatch) -> None:
    from mixsup.inference import round_maps
    from mixsup.slides.pool import SlidePool

    seen: list[bool] = []
    original = SlidePool.read

    def spy(self: SlidePool, idx: int, *args):
        seen.append(self.sources[idx].stain is not None)
        return original(self, idx, *args)

    monkeypatch.setattr(SlidePool, "read", spy)
    maps = round_maps.heldout_maps(stained_run.run_dir, shapes_data, "test", progress=False)
    assert maps and seen and all(seen)


def test_preflight_refuses_what_cannot_work(shapes_data: Path) -> None:
    from mixsup.labels.table import load_dataset
    from mixsup.train.preflight import check_training

    data = load_dataset(shapes_data)
    with pytest.raises(MixsupError, match="not a split=train slide"):
        check_training(data, _cfg("stain.normalise=macenko", "stain.reference_slide=nosuch"),
                       "mixed", False)
    with pytest.raises(MixsupError, match="not available for --mode abmil"):
        check_training(data, _cfg("stain.normalise=macenko"), "abmil", False)


def test_the_ablation_varies_mixed_and_pixel() -> None:
    from mixsup.experiment.core import parse_ablation

    variants = parse_ablation("stain=macenko,reinhard", ("mixed", "pixel"))
    assert [(v.mode, v.overrides) for v in variants] == [
        ("mixed", ("stain.normalise=macenko",)), ("pixel", ("stain.normalise=macenko",)),
        ("mixed", ("stain.normalise=reinhard",)), ("pixel", ("stain.normalise=reinhard",))]

"""Stain normalisation (``stain.normalise``): the reference, its mapping, its record."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from mixsup.errors import MixsupError
from mixsup.slides.pool import SlidePool, SlideSource
from mixsup.slides.stain_normalise import (
    MIN_TISSUE_SHARE,
    StainReference,
    fit_reference,
    stained_share,
)
from mixsup.synth.stain import apply_center


def _pcam(shared: Path, n: int, label: str = "1") -> list[np.ndarray]:
    import cv2

    rows = [r for r in csv.DictReader((shared / "pcam" / "labels.csv").open())
            if r["split"] == "train" and r["label"] == label][:n]
    out = []
    for r in rows:
        bgr = cv2.imdecode(np.fromfile(shared / "pcam" / r["path"], np.uint8), cv2.IMREAD_COLOR)
        out.append(np.ascontiguousarray(bgr[..., ::-1]))
    return out


def _mean_rgb(patches: list[np.ndarray]) -> np.ndarray:
    return np.mean([p.reshape(-1, 3).mean(0) for p in patches], axis=0)


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_shifted_center_is_brought_back_to_the_reference(shared: Path, method: str) -> None:
    # Real PCam tissue; center B is the generator's optical-density shift of the same patches.
    ref_patches, test_patches = _pcam(shared, 40)[:20], _pcam(shared, 40)[20:]
    ref = fit_reference(method, ref_patches)  # type: ignore[arg-type]
    shifted = [apply_center(p, "B") for p in test_patches]
    before = np.abs(_mean_rgb(shifted) - _mean_rgb(test_patches)).sum()
    after = np.abs(_mean_rgb([ref.apply(p) for p in shifted])
                   - _mean_rgb([ref.apply(p) for p in test_patches])).sum()
    assert before > 15  # the shift is visible
    assert after < before / 2


def test_apply_keeps_size_and_dtype_and_leaves_background_alone(shared: Path) -> None:
    ref = fit_reference("macenko", _pcam(shared, 16))
    patch = _pcam(shared, 17)[-1]
    out = ref.apply(patch)
    assert out.shape == patch.shape and out.dtype == np.uint8
    assert not np.array_equal(out, patch)
    blank = np.full((64, 64, 3), 245, np.uint8)  # glass: no stain to estimate
    assert stained_share(blank) < MIN_TISSUE_SHARE
    assert ref.apply(blank) is blank



@pytest.mark.parametrize("method", ["macenko", "reinhard"])
@pytest.mark.parametrize("colour", [(200, 120, 180), (120, 120, 120)])
def test_a_flat_patch_is_left_as_it_is(shared: Path, method: str, colour) -> None:
    # one colour has no spread: Reinhard would divide by zero and return black
    ref = fit_reference(method, _pcam(shared, 8))  # type: ignore[arg-type]
    flat = np.full((64, 64, 3), colour, np.uint8)
    assert np.array_equal(ref.apply(flat), flat)


def test_the_fit_uses_a_bounded_pixel_sample(shared: Path, monkeypatch) -> None:
    from mixsup.slides import stain_normalise

    patches = _pcam(shared, 12)
    full = fit_reference("macenko", patches)
    monkeypatch.setattr(stain_normalise, "MAX_FIT_PIXELS", 20_000)  # of 12 x 96 x 96
    seen: list[tuple[int, ...]] = []
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    original = NumpyMacenkoNormalizer.fit

    def spy(self, image, *args, **kwargs):
        seen.append(image.shape)
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(NumpyMacenkoNormalizer, "fit", spy)
    sampled = fit_reference("macenko", patches)
    assert seen == [(20_000, 1, 3)]
    assert np.allclose(sampled.values, full.values, rtol=0.05, atol=0.01)  # the same stain


def test_the_record_round_trips_and_the_reference_pickles(shared: Path) -> None:
    ref = fit_reference("reinhard", _pcam(shared, 8))
    assert StainReference.from_record(ref.record()) == ref
    patch = _pcam(shared, 9)[-1]
    first = ref.apply(patch)  # the cached normaliser travels to loader workers
    again = pickle.loads(pickle.dumps(ref))
    assert np.array_equal(again.apply(patch), first)


@pytest.mark.parametrize("rec", [
    None, [], {"method": "macenko"}, {"method": "macenko", "values": [1.0] * 7},
    {"method": "macenko", "values": [float("nan")] * 8},
    {"method": "macenko", "values": [True] * 8}, {"method": "vahadane", "values": [1.0] * 8},
    {"method": "reinhard", "values": "abc"}, {"method": "reinhard", "values": [1.0] * 6, "x": 1},
    {"method": "reinhard", "values": [10 ** 400] * 6},  # past float's range
])
def test_a_damaged_record_is_one_error_naming_the_file(tmp_path: Path, rec: object) -> None:
    with pytest.raises(MixsupError) as err:
        StainReference.from_record(rec, tmp_path / "stain.json")
    assert err.value.path == str(tmp_path / "stain.json")


def test_no_tissue_no_reference() -> None:
    with pytest.raises(ValueError, match="stained pixels"):
        fit_reference("macenko", [np.full((32, 32, 3), 250, np.uint8)] * 3)


def test_a_source_with_a_stain_reads_its_patches_on_it(shared: Path) -> None:
    from mixsup.config import ReaderConfig

    slide = shared / "slides" / "CMU-1-Small-Region.svs"
    if not slide.is_file():
        pytest.skip("no SVS slide in ../shared/data/slides")
    ref = fit_reference("macenko", _pcam(shared, 16))
    plain = SlidePool([SlideSource.of("s", slide, ReaderConfig())])
    stained = SlidePool([SlideSource.of("s", slide, ReaderConfig(), ref)])
    w, h = plain.get(0).dimensions
    x, y = w // 2, h // 2
    a, b = plain.read(0, x, y, 96, plain.get(0).mpp), stained.read(0, x, y, 96, plain.get(0).mpp)
    assert np.array_equal(ref.apply(a), b)

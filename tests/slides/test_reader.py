from __future__ import annotations

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from mixsup.errors import MissingMPPError, SlideReadError
from mixsup.slides import open_slide

READABLE = ["CMU-1-Small-Region.svs", "tcga-cr-7395-01a-01-ts1.svs", "boxes.tiff",
            "boxes_0.dcm", "small.svs", "kidney-48-5.tif"]
BROKEN = ["unreadable.svs", "unopenable.tiff", "broken.svs"]


@pytest.mark.parametrize("name", READABLE)
def test_opens_every_readable_shared_slide(shared, name):
    with open_slide(shared / "slides" / name, mpp=None) as slide:
        w, h = slide.dimensions
        assert w > 0 and h > 0
        region = slide.read_region((0, 0), slide.level_count - 1, (8, 8))
        assert region.shape == (8, 8, 3) and region.dtype == np.uint8


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_both_backends_agree_on_cmu(shared, backend):
    with open_slide(shared / "slides" / "CMU-1-Small-Region.svs", backend=backend) as slide:
        assert slide.backend == backend
        assert slide.dimensions == (2220, 2967)
        assert slide.mpp == pytest.approx(0.499)
        region = slide.read_region((1000, 1000), 0, (64, 64))
    with open_slide(shared / "slides" / "CMU-1-Small-Region.svs", backend="openslide") as ref:
        expected = ref.read_region((1000, 1000), 0, (64, 64))
    # Different JPEG decoders may differ by a few levels.
    assert np.abs(region.astype(int) - expected.astype(int)).mean() < 3


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_are_rejected_naming_the_file(shared, name):
    with pytest.raises(SlideReadError) as err:
        open_slide(shared / "slides" / name)
    assert name in str(err.value)
    assert "Fix:" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SlideReadError, match="not found"):
        open_slide(tmp_path / "nope.svs")


def test_missing_mpp_needs_override(shared):
    path = shared / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    slide = open_slide(path)
    with pytest.raises(MissingMPPError) as err:
        _ = slide.mpp
    assert "--mpp" in str(err.value) and path.name in str(err.value)
    assert open_slide(path, mpp=0.25).mpp == 0.25
    assert open_slide(path, mpp=0.25).info.mpp_source == "override"


def test_level_choice_tolerates_non_power_of_two(shared):
    # boxes.tiff has downsamples 1, 2, 4.016, 8.086
    slide = open_slide(shared / "slides" / "boxes.tiff", mpp=1.0)
    assert slide.level_for_mpp(1.0) == 0
    assert slide.level_for_mpp(2.0) == 1
    assert slide.level_for_mpp(4.0) == 2  # 4.016 is within tolerance
    assert slide.level_for_mpp(3.9) == 1
    assert slide.level_for_mpp(100.0) == 3
    assert slide.level_for_mpp(0.1) == 0


def test_read_at_mpp_resamples_to_the_requested_size(shared):
    slide = open_slide(shared / "slides" / "boxes.tiff", mpp=1.0)
    out = slide.read_at_mpp((0, 0), 37, 3.0)
    assert out.shape == (37, 37, 3)
    thumb, mpp = slide.thumbnail(10.0)
    assert thumb.shape[:2] == (25, 30) and mpp == pytest.approx(10.0)


def _read_in_child(slide):
    return slide.read_region((0, 0), 0, (16, 16)).sum()


def test_slide_pickles_without_handle_and_reopens_in_workers(shared):
    slide = open_slide(shared / "slides" / "CMU-1-Small-Region.svs")
    expected = _read_in_child(slide)
    state = pickle.loads(pickle.dumps(slide))
    assert state._handle is None
    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.map(_read_in_child, [slide, slide]) == [expected, expected]

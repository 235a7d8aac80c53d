"""θ1's training items: the target and the loss mask of each pool."""

from __future__ import annotations

import numpy as np
import shapely

from mixsup.labels.regions import Region, SlideAnnotations
from mixsup.train.dataset import MixedPatches
from mixsup.train.pools import Pools
from mixsup.train.results import PoolSizes, PoolStats


class _Slide:
    mpp = 0.5


class _Slides:
    """Stands in for the SlidePool: one slide at 0.5 µm/px."""

    def get(self, idx: int) -> _Slide:
        return _Slide()


def _dataset() -> MixedPatches:
    ann = SlideAnnotations((Region("ROI", "roi", shapely.box(0, 0, 48, 64)),
                            Region("Tumor", "tumor", shapely.box(16, 16, 32, 32))))
    left_right = np.zeros((4, 4), np.float32)
    left_right[:, :2] = 0.1  # x V=4 -> 0.4
    left_right[:, 2:] = 0.002  # x V=4 -> 0.008, under the floor
    pools = Pools(fine=np.array([[0, 0, 0]]), pseudo=np.array([[0, 64, 0], [0, 128, 0]]),
                  pseudo_maps=np.stack([np.full((4, 4), 0.5, np.float32), left_right]),
                  negative=np.array([[0, 192, 0]]), stats=PoolStats(PoolSizes(1, 2, 1)))
    # 16-px patches at 2 µm/px over a 0.5 µm/px slide: 4 level-0 px per mask pixel
    ds = MixedPatches([], pools, {0: ann}, patch_size=16, mpp=2.0, reweight=4.0, floor=0.01,
                      augment=False)
    ds.slides = _Slides()
    return ds


def test_fine_rows_take_the_rasterised_annotation():
    target, valid = _dataset().label(0)
    expect_target = np.zeros((16, 16), np.float32)
    expect_target[4:8, 4:8] = 1.0  # tumour at level-0 16..32
    expect_valid = np.zeros((16, 16), np.float32)
    expect_valid[:, :12] = 1.0  # ROI up to level-0 x = 48
    np.testing.assert_array_equal(target, expect_target)
    np.testing.assert_array_equal(valid, expect_valid)


def test_pseudo_rows_reweight_their_own_stored_map():
    ds = _dataset()
    target, valid = ds.label(1)
    np.testing.assert_array_equal(target, np.ones((16, 16), np.float32))  # 0.5 x 4, clipped
    target, valid = ds.label(2)  # the second pseudo row gets the second map
    np.testing.assert_allclose(target[:, :6], 0.4, rtol=1e-6)
    np.testing.assert_array_equal(target[:, 10:], 0.0)  # below the floor
    assert (np.diff(target, axis=1) <= 0).all()
    np.testing.assert_array_equal(valid, np.ones((16, 16), np.float32))


def test_hard_negative_rows_are_all_zero_and_all_valid():
    target, valid = _dataset().label(3)
    np.testing.assert_array_equal(target, np.zeros((16, 16), np.float32))
    np.testing.assert_array_equal(valid, np.ones((16, 16), np.float32))

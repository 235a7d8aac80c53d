"""The per-process slide pool keeps a bounded number of backend handles."""

from __future__ import annotations

import pickle

import numpy as np

from mixsup.patches import SlidePool, SlideSource


def test_pool_keeps_at_most_max_open_handles_and_reopens(shapes_data):
    paths = sorted((shapes_data / "slides").glob("*.tiff"))[:4]
    pool = SlidePool([SlideSource(p.stem, str(p)) for p in paths], max_open=2)
    mpp = pool.get(0).mpp
    first = pool.read(0, 0, 0, 32, mpp)
    for i in range(1, 4):
        pool.read(i, 0, 0, 32, mpp)
        assert pool.open_handles() == min(i + 1, 2)
    assert not pool.get(0).is_open  # the least recently read was closed
    np.testing.assert_array_equal(pool.read(0, 0, 0, 32, mpp), first)  # and reopens
    assert pool.open_handles() == 2
    clone = pickle.loads(pickle.dumps(pool))  # what a DataLoader worker receives
    assert clone.open_handles() == 0 and clone.max_open == 2
    np.testing.assert_array_equal(clone.read(0, 0, 0, 32, mpp), first)

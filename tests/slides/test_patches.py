"""The per-process slide pool keeps a bounded number of backend handles."""

from __future__ import annotations

import pickle

import numpy as np

from mixsup.slides.patches import SlidePool, SlideSource, augment


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


def test_augment_moves_image_and_labels_together():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    seen = set()
    for seed in range(64):
        label = (img[..., 0] > 127).astype(np.float32)  # both derived from the image
        valid = (img[..., 1] > 127).astype(np.float32)
        out, lab, val = augment(img, label, valid, np.random.default_rng(seed), colour=False)
        np.testing.assert_array_equal(lab, out[..., 0] > 127)
        np.testing.assert_array_equal(val, out[..., 1] > 127)
        seen.add(out.tobytes())
    assert len(seen) == 8  # every rotation and flip of an asymmetric image occurred


def test_augment_with_colour_jitter_keeps_labels_aligned():
    img = np.repeat(np.random.default_rng(1).choice([0, 255], (12, 12)).astype(np.uint8)[..., None],
                    3, axis=2)  # black and white: jitter moves levels, never across 127
    label = (img[..., 0] > 127).astype(np.float32)
    for seed in range(16):
        out, lab, val = augment(img, label, 1 - label, np.random.default_rng(seed))
        np.testing.assert_array_equal(lab, out.mean(-1) > 127)
        np.testing.assert_array_equal(val, out.mean(-1) <= 127)

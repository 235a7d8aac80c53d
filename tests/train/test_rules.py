from __future__ import annotations

import logging

import numpy as np
import pytest
import shapely
import torch

from mixsup.config import Stage1Config
from mixsup.inference.map_store import write_maps
from mixsup.inference.patch_maps import PatchMaps
from mixsup.labels.regions import Region, SlideAnnotations
from mixsup.slides.tiling import TileSet
from mixsup.train.loss import soft_bce
from mixsup.train.pools import em_pools, tumour_first
from mixsup.train.pseudo import keep_patches, pseudo_positive
from mixsup.train.sampler import MixedBatchSampler, batch_counts, split_first_pool


def test_reweight_and_clip_exact_values():
    p = np.array([0.0, 0.002, 0.0025, 0.003, 0.1, 0.2, 0.25, 0.3, 1.0], np.float32)
    y = pseudo_positive(p, reweight=4.0, floor=0.01)
    expected = np.array([0.0, 0.0, 0.01, 0.012, 0.4, 0.8, 1.0, 1.0, 1.0], np.float32)
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_threshold_filter_is_inclusive():
    np.testing.assert_array_equal(keep_patches(np.array([0.39, 0.4, 0.41, 0.0]), 0.4),
                                  [False, True, True, False])


@pytest.mark.parametrize("batch,ratio,expected", [
    (10, (2, 1, 7), [2, 1, 7]),
    (20, (2, 1, 7), [4, 2, 14]),
    (16, (2, 1, 7), [3, 2, 11]),
    (16, (52, 9, 40), [8, 2, 6]),
    (10, (1, 0, 0), [10, 0, 0]),
])
def test_batch_counts(batch, ratio, expected):
    counts = batch_counts(batch, ratio)
    assert counts == expected and sum(counts) == batch


def test_empty_pool_gives_its_share_away():
    assert batch_counts(10, (2, 1, 7), available=(5, 0, 9)) == [2, 0, 8]


def test_every_batch_has_the_exact_ratio():
    sizes = [7, 40, 300]
    sampler = MixedBatchSampler(sizes, (2, 1, 7), 20, steps=25, seed=3)
    edges = np.cumsum([0, *sizes])
    n = 0
    for batch in sampler:
        pools = np.searchsorted(edges, batch, side="right") - 1
        assert np.bincount(pools, minlength=3).tolist() == [4, 2, 14]
        n += 1
    assert n == 25


def test_small_pool_warns_and_reuses(caplog):
    with caplog.at_level(logging.WARNING):
        sampler = MixedBatchSampler([3, 50, 50], (2, 1, 7), 10, steps=10)
    assert "sampling with replacement" in caplog.text
    fine = [i for b in sampler for i in b if i < 3]
    assert sorted(set(fine)) == [0, 1, 2] and len(fine) == 20


def test_ranks_draw_different_streams_with_same_ratio():
    a = list(MixedBatchSampler([100, 100, 100], (2, 1, 7), 10, 5, seed=0, rank=0, world_size=2))
    b = list(MixedBatchSampler([100, 100, 100], (2, 1, 7), 10, 5, seed=0, rank=1, world_size=2))
    assert a != b
    again = list(MixedBatchSampler([100, 100, 100], (2, 1, 7), 10, 5, seed=0, rank=0,
                                   world_size=2))
    assert a == again


def test_soft_bce_ignores_masked_pixels():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 5.0]])
    target = torch.tensor([[0.5, 1.0], [0.0, 0.3]])
    valid = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    manual = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[valid.bool()], target[valid.bool()])
    assert soft_bce(logits, target, valid).item() == pytest.approx(manual.item(), rel=1e-6)
    changed = target.clone()
    changed[1, 1] = 1.0  # an ignored pixel's target does not matter
    assert soft_bce(logits, changed, valid).item() == pytest.approx(manual.item(), rel=1e-6)
    assert soft_bce(logits, target, torch.zeros_like(valid)).item() == 0.0


def _maps(root, max_probs, value=0.2):
    n = len(max_probs)
    root.mkdir(parents=True, exist_ok=True)
    return write_maps(root / f"{len(list(root.iterdir()))}.zarr",
                      np.arange(n * 2).reshape(n, 2),
                      PatchMaps(np.full((n, 4, 4), value, np.float16),
                                np.asarray(max_probs, np.float32)), {})


def test_em_pools_apply_t_and_split_by_slide_label(tmp_path):
    cfg = Stage1Config(batch_size=10, negative_fallback="none")
    maps = {0: _maps(tmp_path, [0.9, 0.1, 0.5]), 1: _maps(tmp_path, [0.3, 0.45, 0.8, 0.41]),
            2: _maps(tmp_path, [0.99])}
    fine = np.zeros((4, 3), np.int64)
    pools = em_pools(fine, {0: 1, 1: 0}, maps, cfg, np.random.default_rng(0))
    assert pools.sizes == [4, 2, 3]  # slide 2 is unlabelled: skipped
    assert pools.pseudo[:, 0].tolist() == [0, 0]
    assert pools.negative[:, 0].tolist() == [1, 1, 1]
    assert pools.stats.pseudo_positive_pixel_fraction == pytest.approx(1.0)  # 0.2*4 = 0.8


def test_em_pools_fallback_and_collapse_are_reported(caplog, tmp_path):
    cfg = Stage1Config(batch_size=10, negative_fallback="random", negative_topup=3)
    maps = {0: _maps(tmp_path, [0.1, 0.2]), 1: _maps(tmp_path, [0.1, 0.1, 0.1, 0.1, 0.1])}
    with caplog.at_level(logging.WARNING):
        pools = em_pools(np.zeros((1, 3), np.int64), {0: 1, 1: 0}, maps, cfg,
                         np.random.default_rng(0))
    assert pools.sizes == [1, 0, 3]
    assert pools.stats.pseudo_positive_collapsed is True
    assert pools.stats.negative_fallback.size_after == 3
    assert "EMPTY" in caplog.text


@pytest.mark.parametrize("keep", [False, True])
def test_hard_negatives_accumulate_over_rounds_when_asked(keep, tmp_path):
    cfg = Stage1Config(batch_size=10, negative_fallback="none", keep_negatives=keep)
    maps = {0: _maps(tmp_path, [0.9]), 1: _maps(tmp_path, [0.8, 0.1, 0.6])}
    earlier = np.array([[1, 0, 1], [1, 50, 50]], np.int64)  # (1, 0, 1) is found again
    pools = em_pools(np.zeros((1, 3), np.int64), {0: 1, 1: 0}, maps, cfg,
                     np.random.default_rng(0), previous_negative=earlier)
    current = {(1, 0, 1), (1, 4, 5)}
    assert {tuple(r) for r in pools.negative.tolist()} == (
        current | {(1, 50, 50)} if keep else current)
    assert pools.stats.hard_negative_new == 2


def test_a_shrinking_hard_negative_pool_is_reported(tmp_path, caplog):
    cfg = Stage1Config(batch_size=10, negative_fallback="none")
    maps = {0: _maps(tmp_path, [0.9]), 1: _maps(tmp_path, [0.8, 0.1, 0.1])}
    earlier = np.column_stack([np.ones(10), np.arange(10) * 7, np.zeros(10)]).astype(np.int64)
    with caplog.at_level(logging.WARNING):
        pools = em_pools(np.zeros((1, 3), np.int64), {0: 1, 1: 0}, maps, cfg,
                         np.random.default_rng(0), previous_negative=earlier)
    assert pools.stats.hard_negative_shrank_from == 10
    assert "keep_negatives" in caplog.text


def test_m_steps_use_round_lr_when_set():
    from mixsup.train.rounds import stage1_lr

    assert [stage1_lr(Stage1Config(lr=1e-3), r) for r in (0, 1, 2)] == [1e-3] * 3
    s1 = Stage1Config(lr=1e-3, round_lr=1e-4)
    assert [stage1_lr(s1, r) for r in (0, 1, 2)] == [1e-3, 1e-4, 1e-4]


def test_split_first_pool_exact():
    sizes, ratio = split_first_pool([10, 5, 20], [52, 9, 40], head=3, share=0.25)
    assert sizes == [3, 7, 5, 20]
    assert ratio == [13.0, 39.0, 9.0, 40.0]
    # an empty part would hand its share to the other pools: the pool stays whole
    for head in (0, 10):
        assert split_first_pool([10, 5, 20], [52, 9, 40], head, 0.25) == (
            [10, 5, 20], [52.0, 9.0, 40.0])


def test_fine_tumour_share_in_every_batch():
    sizes, ratio = split_first_pool([12, 0, 0], [1, 0, 0], head=3, share=0.25)
    batches = list(MixedBatchSampler(sizes, ratio, batch_size=16, steps=20, seed=1))
    for b in batches:
        assert sum(i < 3 for i in b) == 4 and all(0 <= i < 12 for i in b)
    # the tumour patches are drawn in turn, each as often as the others
    assert sorted(np.bincount([i for b in batches for i in b if i < 3])) == [26, 27, 27]


def test_tumour_first_orders_by_the_pixel_labels():
    # a slide at 1 µm/px tiled in 8-px patches; tumour covers level-0 x in [20, 23), y < 8
    tiles = TileSet("s", "s.tif", np.array([[0, 0], [8, 0], [16, 0], [24, 0]], np.int64),
                    np.ones(4, np.float32), mpp=1.0, patch_size=8, overlap=0, slide_mpp=1.0,
                    dimensions=(32, 8), key="k")
    ann = SlideAnnotations((Region("T", "tumor", shapely.box(20, 0, 23, 8)),))
    fine = np.array([[0, 0, 0], [0, 8, 0], [0, 16, 0], [0, 24, 0]], np.int64)
    ordered, n = tumour_first(fine, [tiles], {0: ann}, patch_size=8)
    assert n == 1
    np.testing.assert_array_equal(ordered, fine[[2, 0, 1, 3]])
    # a one-pixel sliver at the patch edge is found
    ann = SlideAnnotations((Region("T", "tumor", shapely.box(30, 0, 31, 8)),))
    assert tumour_first(fine, [tiles], {0: ann}, patch_size=8)[1] == 1

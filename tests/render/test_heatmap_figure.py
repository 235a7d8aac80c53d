from __future__ import annotations

import numpy as np
from PIL import Image

from mixsup.render.heatmap import overlay
from mixsup.render.heatmap_figure import FLOOR, heatmap_png, png_mpp, scale_bar_um


def test_png_resolution_keeps_the_long_side_between_1000_and_2000_px():
    # a 20 mm slide at 0.25 um/px: 8 um/px would give 2,500 px, so 10 um/px (2,000 px)
    assert png_mpp(0.25, (80_000, 40_000), 8.0) == 10.0
    # a 4 mm slide: 8 um/px gives 500 px, so 4 um/px (1,000 px)
    assert png_mpp(0.5, (8_000, 6_000), 8.0) == 4.0
    # 12 mm: 8 um/px gives 1,500 px, inside the bounds
    assert png_mpp(0.5, (24_000, 1_000), 8.0) == 8.0
    # the demo's 1,280 px slides at 1 um/px: 1,000 px
    assert png_mpp(1.0, (1280, 1280), 8.0) == 1.28
    # a slide smaller than 1,000 px: never finer than the slide itself
    assert png_mpp(1.0, (800, 600), 8.0) == 1.0


def test_scale_bar_is_a_round_length_of_about_a_fifth_of_the_width():
    assert scale_bar_um(1280) == 200
    assert scale_bar_um(20_000) == 2000
    assert scale_bar_um(9_000) == 1000
    assert scale_bar_um(600) == 100


def test_overlay_leaves_tissue_below_the_floor_unpainted():
    thumb = np.full((40, 60, 3), 200, np.uint8)
    prob = np.zeros((40, 60), np.float32)
    prob[:, 30:] = 0.9
    prob[:, :10] = FLOOR / 2
    out = overlay(thumb, prob, np.ones((40, 60), bool), floor=FLOOR)
    assert np.array_equal(out[:, :30], thumb[:, :30])
    assert not np.array_equal(out[:, 30:], thumb[:, 30:])
    # floor 0 (the old behaviour) paints every scored pixel
    assert not np.array_equal(overlay(thumb, prob, np.ones((40, 60), bool))[:, :10],
                              thumb[:, :10])


def test_heatmap_png_has_the_slide_at_full_size_plus_the_bars(tmp_path):
    thumb = np.full((300, 500, 3), 230, np.uint8)
    prob = np.linspace(0, 1, 500, dtype=np.float32)[None].repeat(300, 0)
    path = tmp_path / "h.png"
    heatmap_png(path, thumb, prob, np.ones((300, 500), bool), [(1, 400, 100, 64)], 2.0,
                title="s1")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[:2] == (340, 610)
    assert not list(tmp_path.glob("*.tmp*"))

from __future__ import annotations

import shapely

from mixsup.labels.raster import rasterize_geometry


def test_empty_geometry_rasterises_to_nothing():
    assert not rasterize_geometry(shapely.Polygon(), 0, 0, 8, 8).any()
    assert rasterize_geometry(shapely.box(2, 2, 4, 4), 0, 0, 8, 8).sum() == 4

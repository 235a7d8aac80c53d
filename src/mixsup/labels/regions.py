"""The annotation data model: outlines with roles, and their label masks.

Every outline gets a role through the config's class map:
- ``tumor``: positive pixels;
- ``negative``: annotated non-tumour pixels (also Camelyon's exclusion group ``_2``);
- ``roi``: the annotated region; inside it, pixels outside tumour outlines are negative,
  outside it pixels are unlabelled. With no ROI the whole slide counts as annotated;
- ``ignore``: unlabelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from mixsup.config import DEFAULT_MASK_VALUES, AnnotationRole, MaskRole
from mixsup.labels.raster import mask_polygons, paint_polygon, polygon_parts

POSITIVE, NEGATIVE, IGNORE = 1, 0, 255
ROLE_COLORS = {"tumor": [200, 0, 0], "negative": [0, 160, 0], "roi": [40, 80, 220],
               "ignore": [128, 128, 128]}


@dataclass(frozen=True)
class Region:
    name: str
    role: AnnotationRole
    geometry: BaseGeometry  # Polygon or MultiPolygon, level-0 pixels
    classification: str | None = None  # QuPath class; None: derived from the role
    measurements: tuple[tuple[str, float], ...] = ()  # QuPath measurements (name, value)


@dataclass(frozen=True)
class SlideAnnotations:
    regions: tuple[Region, ...]
    source: str | None = None

    def of_role(self, role: AnnotationRole) -> list[BaseGeometry]:
        return [r.geometry for r in self.regions if r.role == role]

    @property
    def has_roi(self) -> bool:
        return any(r.role == "roi" for r in self.regions)

    @cached_property
    def tumor(self) -> BaseGeometry:
        """Tumour area minus negative outlines, as one geometry."""
        pos = shapely.union_all(self.of_role("tumor"))
        neg = shapely.union_all(self.of_role("negative"))
        return pos.difference(neg) if not neg.is_empty else pos

    @cached_property
    def labelled_area(self) -> BaseGeometry | None:
        """Where pixels carry a label; None means everywhere (no ROI)."""
        if not self.has_roi:
            return None
        return shapely.union_all(self.of_role("roi") + self.of_role("tumor")
                                 + self.of_role("negative"))

    def rasterize(self, x0: float, y0: float, width: int, height: int,
                  downsample: float = 1.0, *, cull: bool = True) -> np.ndarray:
        """uint8 label mask of a window: 1 tumour, 0 negative, 255 unlabelled.

        ``(x0, y0)`` is the window's top-left in level-0 pixels; each mask pixel covers
        ``downsample`` level-0 pixels. ``cull=False`` fills with every edge of each outline:
        the same pixels, slower (the reference for tests and benchmarks/bench_labels.py).
        """
        mask = np.full((height, width), IGNORE if self.has_roi else NEGATIVE, dtype=np.uint8)
        window = shapely.box(x0, y0, x0 + width * downsample, y0 + height * downsample)
        fill_value = {"roi": NEGATIVE, "ignore": IGNORE, "tumor": POSITIVE, "negative": NEGATIVE}
        for role in ("roi", "ignore", "tumor", "negative"):
            for geom in self.of_role(role):
                if not geom.intersects(window):
                    continue
                for poly in polygon_parts(geom):
                    paint_polygon(mask, poly, x0, y0, downsample, fill_value[role], cull)
        return mask


def mask_to_annotations(mask: np.ndarray, downsample: float, source: str | None = None,
                        values: Mapping[int, MaskRole] = DEFAULT_MASK_VALUES
                        ) -> SlideAnnotations:
    """Turn a label mask image back into outlines: tumour outlines, and where some pixels are
    unlabelled an ROI around the labelled ones. ``values``: pixel value -> role (by default
    1 tumour, 0 negative, 255 unlabelled)."""
    def where(role: MaskRole) -> np.ndarray:
        return np.isin(mask, [v for v, r in values.items() if r == role])

    tumor, unlabelled = where("tumor"), where("ignore")
    regions = [Region("Tumor", "tumor", g) for g in mask_polygons(tumor, downsample)]
    if unlabelled.any() and not unlabelled.all():
        regions += [Region("ROI", "roi", g) for g in mask_polygons(~unlabelled, downsample)]
    return SlideAnnotations(tuple(regions), source=source)

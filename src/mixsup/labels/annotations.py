"""Reading one annotation file: its format's parser, then roles and outline checks.

The formats (ASAP / ImageScope XML, QuPath GeoJSON, NCRF JSON, label mask images) live in
``labels.formats``; what the outlines mean (roles, masks) in ``labels.regions``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from mixsup.config import AnnotationConfig
from mixsup.errors import AnnotationError
from mixsup.labels.formats import mask, parse_outlines, recognise_syntax
from mixsup.labels.regions import Region, SlideAnnotations
from mixsup.storage import user_files
from mixsup.storage.user_files import read_bytes

log = logging.getLogger(__name__)

# Outlines may stray this far (level-0 px) past the slide edge before we call them wrong.
EDGE_TOLERANCE = 64


def read_annotations(path: str | Path, cfg: AnnotationConfig | None = None,
                     slide_dimensions: tuple[int, int] | None = None,
                     label: int | None = None) -> SlideAnnotations:
    """Parse one annotation file; its format is recognised from its content. A label mask
    image needs ``slide_dimensions`` (its scale is the slide's size over its own). With the
    slide's ``label``, pixel labels that contradict it are an error too."""
    cfg = cfg or AnnotationConfig()
    path = Path(path)
    head = read_bytes(path, "annotation file", 8, AnnotationError, refuse_longer=False)
    if mask.recognises(head):  # an image: opened by path, read a level at most
        ann = mask.read_mask(path, head, cfg.mask_values, slide_dimensions)
        _check_against_label(ann, label, path)
        return ann
    recognise_syntax(head, path)  # before reading the rest: /dev/zero is refused here
    raw = read_bytes(path, "annotation file", user_files.MAX_ANNOTATION_BYTES, AnnotationError)
    regions = []
    repaired: list[str] = []
    for name, geom in parse_outlines(raw, path):
        role = cfg.role(name)
        if role is None:
            if cfg.unknown_class == "ignore":
                log.warning("%s: unknown class %r treated as unlabelled", path, name)
                role = "ignore"
            else:
                raise AnnotationError(
                    f"unknown annotation class {name!r}",
                    f"map it in the config, e.g. --set 'annotations.class_map={{{name}: tumor}}' "
                    "(roles: tumor, negative, roi, ignore)", path)
        regions.append(Region(name, role,
                              _checked(geom, name, path, cfg, slide_dimensions, repaired)))
    if repaired:
        warnings.warn(f"{path}: repaired {len(repaired)} self-intersecting outline(s) "
                      f"({repaired[0]}); check them in the viewer if masks look wrong",
                      stacklevel=2)
    ann = SlideAnnotations(tuple(regions), source=str(path))
    _check_against_label(ann, label, path)
    return ann


def _check_against_label(ann: SlideAnnotations, label: int | None, path: Path) -> None:
    """Pixel labels that contradict the slide's label are an error: tumour on a negative
    slide, or a positive slide labelled negative everywhere (no tumour, no ROI)."""
    if label == 0 and not ann.tumor.is_empty:
        raise AnnotationError(
            f"the slide is labelled negative (0) but its pixel labels mark tumour "
            f"({ann.tumor.area:.0f} level-0 px²)",
            "fix the slide's label in slides.csv or the annotation (a mask: check "
            "annotations.mask_values)", path)
    if label == 1 and ann.tumor.is_empty and not ann.has_roi:
        raise AnnotationError(
            "the slide is labelled positive (1) but its pixel labels mark no tumour and cover "
            "the whole slide, so every pixel would be negative",
            "add the tumour outlines, limit the labels to an ROI, or fix the label (a mask: "
            "check annotations.mask_values)", path)


def _checked(geom: BaseGeometry, name: str, path: Path, cfg: AnnotationConfig,
             dims: tuple[int, int] | None, repaired: list[str]) -> BaseGeometry:
    if not np.isfinite(shapely.get_coordinates(geom)).all():  # GEOS fails on them later
        raise AnnotationError(f"an outline in class {name!r} has a NaN or infinite coordinate",
                              "fix or delete that outline and export again", path)
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        if not cfg.repair_invalid:
            raise AnnotationError(f"invalid outline in class {name!r}: {reason}",
                                  "fix it in the viewer, or set annotations.repair_invalid=true",
                                  path)
        polys = [p for p in _all_polygons(shapely.make_valid(geom)) if p.area > 0]
        if not polys:
            raise AnnotationError(f"outline in class {name!r} is invalid ({reason}) and cannot "
                                  "be repaired", "redraw it", path)
        repaired.append(f"class {name!r}: {reason}")
        geom = shapely.union_all(polys)
    if geom.is_empty or geom.area <= 0:
        raise AnnotationError(f"empty or degenerate outline in class {name!r} "
                              "(fewer than 3 distinct points or zero area)",
                              "delete that outline and export again", path)
    if dims is not None:
        minx, miny, maxx, maxy = geom.bounds
        w, h = dims
        t = EDGE_TOLERANCE
        if minx < -t or miny < -t or maxx > w + t or maxy > h + t:
            raise AnnotationError(
                f"outline in class {name!r} spans ({minx:.0f}, {miny:.0f})-({maxx:.0f}, "
                f"{maxy:.0f}), outside the slide ({w}x{h} px at level 0)",
                "check that the file belongs to this slide and uses level-0 pixel coordinates",
                path)
    return geom


def _all_polygons(geom: BaseGeometry) -> list[Polygon]:
    """Every polygon in a geometry, however deeply collections nest (make_valid's output)."""
    if isinstance(geom, Polygon):
        return [geom]
    out: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        out.extend(_all_polygons(g))
    return out

"""Pixel annotations: ASAP / ImageScope XML, QuPath GeoJSON and NCRF JSON <-> shapely; masks.

Every outline gets a role through the config's class map:
- ``tumor``: positive pixels;
- ``negative``: annotated non-tumour pixels (also Camelyon's exclusion group ``_2``);
- ``roi``: the annotated region; inside it, pixels outside tumour outlines are negative,
  outside it pixels are unlabelled. With no ROI the whole slide counts as annotated;
- ``ignore``: unlabelled.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import shapely
import shapely.affinity
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from shapely.geometry import Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

from mixsup.atomic import write_json
from mixsup.config import AnnotationConfig, AnnotationRole
from mixsup.errors import AnnotationError

log = logging.getLogger(__name__)

POSITIVE, NEGATIVE, IGNORE = 1, 0, 255
ROLE_COLORS = {"tumor": [200, 0, 0], "negative": [0, 160, 0], "roi": [40, 80, 220],
               "ignore": [128, 128, 128]}
# Outlines may stray this far (level-0 px) past the slide edge before we call them wrong.
EDGE_TOLERANCE = 64


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
                  downsample: float = 1.0) -> np.ndarray:
        """uint8 label mask of a window: 1 tumour, 0 negative, 255 unlabelled.

        ``(x0, y0)`` is the window's top-left in level-0 pixels; each mask pixel covers
        ``downsample`` level-0 pixels.
        """
        mask = np.full((height, width), IGNORE if self.has_roi else NEGATIVE, dtype=np.uint8)
        window = shapely.box(x0, y0, x0 + width * downsample, y0 + height * downsample)
        fill_value = {"roi": NEGATIVE, "ignore": IGNORE, "tumor": POSITIVE, "negative": NEGATIVE}
        for role in ("roi", "ignore", "tumor", "negative"):
            for geom in self.of_role(role):
                if not geom.intersects(window):
                    continue
                for poly in _polygons(geom):
                    _paint(mask, poly, x0, y0, downsample, fill_value[role])
        return mask

    def to_geojson(self) -> dict[str, Any]:
        """A FeatureCollection that QuPath (0.3+) imports as annotations."""
        features = []
        for r in self.regions:
            props: dict[str, Any] = {
                "objectType": "annotation",
                "name": r.name,
                "classification": {"name": r.classification or _qupath_class(r),
                                   "color": ROLE_COLORS[r.role]},
            }
            if r.measurements:
                props["measurements"] = dict(r.measurements)
            features.append({"type": "Feature", "geometry": mapping(r.geometry),
                             "properties": props})
        return {"type": "FeatureCollection", "features": features}


def _qupath_class(region: Region) -> str:
    return {"tumor": "Tumor", "roi": "ROI", "negative": "Negative"}.get(region.role, region.name)


def write_geojson(path: str | Path, annotations: SlideAnnotations) -> None:
    write_json(path, annotations.to_geojson())


def rasterize_geometry(geom: BaseGeometry, x0: float, y0: float, width: int, height: int,
                       downsample: float = 1.0) -> np.ndarray:
    """Boolean mask of ``geom`` (with holes) over a window, in the same frame as ``rasterize``."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for poly in _polygons(geom):
        _paint(mask, poly, x0, y0, downsample, 1)
    return mask.astype(bool)


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if isinstance(g, Polygon)]


def _paint(mask: np.ndarray, poly: Polygon, x0: float, y0: float, ds: float,
           value: int) -> None:
    """Set the pixels inside ``poly`` to ``value``; its holes keep what lay beneath."""
    if poly.is_empty:
        return
    h, w = mask.shape
    minx, miny, maxx, maxy = poly.bounds
    c0, r0 = max(0, int(np.floor((minx - x0) / ds))), max(0, int(np.floor((miny - y0) / ds)))
    c1 = min(w, int(np.ceil((maxx - x0) / ds)) + 1)
    r1 = min(h, int(np.ceil((maxy - y0) / ds)) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    inside = np.zeros((r1 - r0, c1 - c0), dtype=np.uint8)
    _fill(inside, poly.exterior.coords, x0, y0, ds, 1, (c0, r0))
    for ring in poly.interiors:
        _fill(inside, ring.coords, x0, y0, ds, 0, (c0, r0))
    mask[r0:r1, c0:c1][inside.astype(bool)] = value


def _fill(mask: np.ndarray, coords: Iterable, x0: float, y0: float, ds: float,
          value: int, offset: tuple[int, int] = (0, 0)) -> None:
    """Set the pixels whose centres lie inside one ring (even-odd rule) to ``value``.

    ``mask`` covers the window from pixel ``offset`` (column, row) on. A scanline fill on
    pixel centres, so a 40-px square covers exactly 40x40 pixels at any offset (cv2.fillPoly
    also paints boundary pixels, which inflates every outline by a pixel).
    """
    pts = (np.asarray(coords, dtype=np.float64)[:, :2] - (x0, y0)) / ds - offset
    if len(pts) < 3:
        return
    h, w = mask.shape
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    r0, r1 = max(0, int(np.floor(ya.min()))), min(h, int(np.ceil(ya.max())) + 1)
    chunk = max(1, 4_000_000 // len(pts))
    for start in range(r0, r1, chunk):
        rows = np.arange(start, min(r1, start + chunk))
        yc = rows[:, None] + 0.5
        ri, ei = np.nonzero((ya <= yc) != (yb <= yc))
        if len(ri) == 0:
            continue
        t = (yc[ri, 0] - ya[ei]) / (yb[ei] - ya[ei])
        col = np.clip(np.ceil(xa[ei] + t * (xb[ei] - xa[ei]) - 0.5), 0, w).astype(np.int64)
        counts = np.bincount(ri * (w + 1) + col, minlength=len(rows) * (w + 1))
        inside = (np.cumsum(counts.reshape(len(rows), w + 1), axis=1)[:, :w] & 1).astype(bool)
        mask[rows[0]: rows[-1] + 1][inside] = value


# -- reading ------------------------------------------------------------------------------

def read_annotations(path: str | Path, cfg: AnnotationConfig | None = None,
                     slide_dimensions: tuple[int, int] | None = None) -> SlideAnnotations:
    """Parse one annotation file; its format is recognised from its content."""
    cfg = cfg or AnnotationConfig()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"cannot read annotation file ({exc.strerror})",
                              "check the path and permissions", path) from exc
    head = raw.lstrip()[:1]
    if head == b"<":
        items = _parse_xml(raw, path)
    elif head in (b"{", b"["):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AnnotationError(f"invalid JSON ({exc})",
                                  "export the annotations again from QuPath", path) from exc
        items = _parse_json(data, path)
    else:
        raise AnnotationError("not an annotation file (expected XML or GeoJSON)",
                              "use ASAP/ImageScope XML or QuPath GeoJSON", path)
    regions = []
    repaired: list[str] = []
    for name, geom in items:
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
    return SlideAnnotations(tuple(regions), source=str(path))


def _checked(geom: BaseGeometry, name: str, path: Path, cfg: AnnotationConfig,
             dims: tuple[int, int] | None, repaired: list[str]) -> BaseGeometry:
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
    if isinstance(geom, Polygon):
        return [geom]
    out: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        out.extend(_all_polygons(g))
    return out


def _polygon(points: list[tuple[float, float]], path: Path, name: str) -> Polygon:
    if len(points) < 3:
        raise AnnotationError(f"outline in class {name!r} has {len(points)} point(s)",
                              "delete that outline or redraw it with at least 3 points", path)
    return Polygon(points)


def _parse_xml(raw: bytes, path: Path) -> list[tuple[str, BaseGeometry]]:
    try:
        root = ElementTree.fromstring(raw)
    except DefusedXmlException as exc:
        raise AnnotationError(f"refused unsafe XML ({type(exc).__name__})",
                              "export the annotations again; entity definitions are not allowed",
                              path) from exc
    except ElementTree.ParseError as exc:
        raise AnnotationError(f"invalid XML ({exc})", "export the annotations again", path) from exc
    if root.tag == "ASAP_Annotations":
        return _parse_asap(root, path)
    if root.tag == "Annotations" and root.find("Annotation/Regions") is not None:
        return _parse_imagescope(root, path)
    raise AnnotationError(f"unknown XML annotation format (root <{root.tag}>)",
                          "use ASAP or Aperio ImageScope XML, or QuPath GeoJSON", path)


def _parse_asap(root: Any, path: Path) -> list[tuple[str, BaseGeometry]]:
    """ASAP XML: annotations grouped by ``PartOfGroup``; Spline control points used as vertices."""
    out = []
    for ann in root.iter("Annotation"):
        kind = ann.get("Type", "Polygon")
        group = ann.get("PartOfGroup") or ann.get("Name") or ""
        if kind in ("Dot", "PointSet", "Measurement"):
            log.info("%s: skipping %s annotation %r", path, kind, ann.get("Name"))
            continue
        coords = sorted(ann.iter("Coordinate"), key=lambda c: int(float(c.get("Order", 0))))
        pts = [(float(c.get("X")), float(c.get("Y"))) for c in coords]
        out.append((group, _polygon(pts, path, group)))
    return out


def _parse_imagescope(root: Any, path: Path) -> list[tuple[str, BaseGeometry]]:
    """Aperio ImageScope XML: the class is the layer's Name, else its first attribute name."""
    out = []
    for ann in root.iter("Annotation"):
        name = ann.get("Name") or ""
        if not name:
            attrs = [a.get("Name", "") for a in ann.iter("Attribute")]
            attrs = [a for a in attrs if a and a != "Description"]
            name = attrs[0] if attrs else f"layer_{ann.get('Id', '?')}"
        positive, negative = [], []
        for reg in ann.iter("Region"):
            pts = [(float(v.get("X")), float(v.get("Y"))) for v in reg.iter("Vertex")]
            poly = _polygon(pts, path, name)
            (negative if reg.get("NegativeROA") == "1" else positive).append(poly)
        if not positive:
            continue
        geom = shapely.union_all(positive)
        if negative:
            geom = geom.difference(shapely.union_all(negative))
        out.append((name, geom))
    return out


def _parse_json(data: Any, path: Path) -> list[tuple[str, BaseGeometry]]:
    if isinstance(data, dict) and ("positive" in data or "negative" in data):
        return _parse_ncrf(data, path)
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise AnnotationError("JSON is neither a GeoJSON FeatureCollection, a list of features, "
                              "nor NCRF positive/negative lists",
                              "export the annotations as GeoJSON from QuPath", path)
    out = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or "geometry" not in feat:
            raise AnnotationError(f"feature {i} has no geometry",
                                  "export the annotations as GeoJSON from QuPath", path)
        props = feat.get("properties") or {}
        cls = props.get("classification")
        name = cls.get("name") if isinstance(cls, dict) else cls
        name = name or props.get("name") or "unclassified"
        try:
            geom = shape(feat["geometry"])
        except Exception as exc:
            raise AnnotationError(f"feature {i} ({name!r}) has a malformed geometry ({exc})",
                                  "export the annotations again", path) from exc
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            log.info("%s: skipping %s feature %d", path, geom.geom_type, i)
            continue
        out.append((str(name), geom))
    return out


def _parse_ncrf(data: dict[str, Any], path: Path) -> list[tuple[str, BaseGeometry]]:
    """Baidu NCRF's Camelyon16 JSON: tumour (positive) and exclusion (negative) outlines."""
    out = []
    for key, role_name in (("positive", "tumor"), ("negative", "negative")):
        for item in data.get(key, []):
            pts = [(float(x), float(y)) for x, y in item["vertices"]]
            out.append((role_name, _polygon(pts, path, role_name)))
    return out


def mask_to_annotations(mask: np.ndarray, downsample: float,
                        source: str | None = None) -> SlideAnnotations:
    """Turn a label mask image (1 tumour, 0 negative, 255 unlabelled) back into outlines."""
    regions = [Region("Tumor", "tumor", g) for g in mask_polygons(mask == POSITIVE, downsample)]
    if (mask == IGNORE).any() and (mask != IGNORE).any():
        regions += [Region("ROI", "roi", g) for g in mask_polygons(mask != IGNORE, downsample)]
    return SlideAnnotations(tuple(regions), source=source)


def mask_polygons(binary: np.ndarray, downsample: float) -> list[BaseGeometry]:
    """Outlines of a boolean mask, in the coordinates of a grid ``downsample`` times coarser."""
    contours, hierarchy = cv2.findContours(binary.astype(np.uint8), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE)
    out: list[BaseGeometry] = []
    if hierarchy is None:
        return out
    parents = hierarchy[0][:, 3]
    for i, c in enumerate(contours):
        if parents[i] != -1:
            continue
        holes = [contours[j].reshape(-1, 2) + 0.5 for j in np.nonzero(parents == i)[0]
                 if len(contours[j]) >= 3]
        shell = c.reshape(-1, 2) + 0.5
        # Contours run through boundary pixel centres; grow by half a pixel to their edges.
        poly = shapely.make_valid(Polygon(shell, holes) if len(shell) >= 3 else Polygon())
        poly = poly.buffer(0.5, join_style="mitre") if not poly.is_empty else shapely.box(
            *(shell.min(axis=0) - 0.5), *(shell.max(axis=0) + 0.5))
        out.append(shapely.affinity.scale(poly, downsample, downsample, origin=(0, 0)))
    return out

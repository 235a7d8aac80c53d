"""``mixsup export-qupath``: a prediction folder as files a pathologist reviews in QuPath.

Per slide it writes (atomically) into the output folder:

    <id>.ome.tif              the stitched probability map, uint8 (255 = probability 1), a
                              tiled pyramidal OME-TIFF whose pixel size (µm) makes it cover
                              the slide at the slide's own scale
    <id>.detections.geojson   one QuPath detection per scored patch, level-0 pixels, with the
                              measurement "tumour probability" (the patch's highest pixel)

and ``README.txt``, the steps in QuPath.

The detections are classified "mixsup tumour" (p >= 0.5) and "mixsup other", not QuPath's
own "Tumor" and "Other", so that they are never mistaken for a pathologist's classes; mixsup's
annotation reader skips detections (``labels.formats.qupath.MODEL_OUTPUT``), so a reviewed
file exported with them still in it gives only the drawn annotations as labels.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixsup.config import MPP_RANGE
from mixsup.errors import MixsupError
from mixsup.storage.atomic import atomic_open, atomic_path, write_text
from mixsup.storage.user_files import finite, output_dir, parse_json, read_text

if TYPE_CHECKING:
    import zarr

log = logging.getLogger(__name__)
MEASUREMENT = "tumour probability"
TUMOUR_AT = 0.5  # the pixel threshold of predict's suspicious regions
CLASSES = {"tumour": ("mixsup tumour", [200, 0, 0]), "other": ("mixsup other", [255, 200, 0]),
           "attention": ("mixsup patch", [128, 128, 128])}
TILE = 256
BAND = 1024  # rows of the map converted at a time
_FIX = "re-run `mixsup predict` for this slide into the same folder"
_NS = uuid.UUID("2f9d6c1e-5a4b-4c1e-9a57-6d2f3b8e1c40")  # ids are stable across exports

README = """\
mixsup predictions for QuPath (0.4 or later)
=============================================

Per slide: <id>.detections.geojson (one detection per scored patch) and <id>.ome.tif (the
probability map as an 8-bit image: 0..255 = probability 0..1).

1. Open the slide in QuPath (File > Open, or drag the slide file onto the window).
2. Import the patches: File > Import objects from file, or drag <id>.detections.geojson
   onto the viewer. Each patch is a detection classified "mixsup tumour" (p >= 0.5) or
   "mixsup other", with the measurement "{measurement}" (the patch's highest pixel
   probability). Coordinates are the slide's full-resolution pixels.
3. Colour by probability: Measure > Show measurement maps, choose "{measurement}".
   Toggle the detections with the D key; set their opacity with the toolbar slider.
4. The probability map as an image: add <id>.ome.tif to a project (File > Project >
   Add images). Its pixel size is the slide's times the map's downsample, so it has the
   slide's physical size; to lay it over the slide, open the slide and use
   Analyze > Interactive image alignment with the .ome.tif as the overlay (identity).
5. To send labels back to mixsup, draw tumour outlines as annotations of class "Tumor" and
   export them (File > Export objects as GeoJSON); save the file as
   annotations/<slide_id>.geojson in the dataset. Detections left in the export are skipped:
   mixsup never takes its own predictions for labels.

Slides:
{slides}
"""


def export_qupath(pred_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Every slide of a ``mixsup predict`` folder; slide id -> number of detections."""
    pred = Path(pred_dir)
    slides_dir = pred / "slides"
    if not slides_dir.is_dir():
        raise MixsupError("not a prediction folder (it has no slides/ folder)",
                          "pass the --out folder of `mixsup predict`", slides_dir)
    records = sorted(slides_dir.glob("*.json"))
    if not records:
        raise MixsupError("the prediction folder holds no slide record",
                          "predict some slides first", slides_dir)
    out = output_dir(out_dir)
    done: dict[str, int] = {}
    lines = []
    for rec_path in records:
        sid = rec_path.stem
        slide_path = _slide_path(rec_path)
        mpp = _slide_mpp(pred / "tiles" / f"{sid}.json", slide_path)
        probmap = pred / "probmaps" / f"{sid}.zarr"
        prob, downsample = _probmap(probmap)
        try:
            write_ome_tiff(out / f"{sid}.ome.tif", prob, mpp, downsample, name=sid)
        except RuntimeError as exc:  # the codec's, on a damaged chunk of the map
            raise MixsupError(f"a chunk of the probability map cannot be decoded ({exc})",
                              _FIX, probmap) from None
        coords, values, size0, attention = _patches(pred / "maps" / f"{sid}.zarr",
                                                    pred / "tiles" / f"{sid}.json")
        doc = patch_detections(coords, size0, values, sid, attention)
        with atomic_open(out / f"{sid}.detections.geojson") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        done[sid] = len(coords)
        size = "no pixel size (the slide has no MPP)" if mpp is None else \
            f"map pixel {mpp * downsample:.4g} µm"
        lines.append(f"  {sid}: {slide_path}  ({len(coords)} patches, {size})")
    write_text(out / "README.txt", README.format(measurement=MEASUREMENT,
                                                 slides="\n".join(lines)))
    return done


def write_ome_tiff(path: str | Path, prob: np.ndarray | zarr.Array, mpp_level0: float | None,
                   downsample: float, name: str | None = None) -> None:
    """``prob`` (H, W) in [0, 1] as a tiled, pyramidal (SubIFDs, halving until the longer side
    is under 256 px) uint8 OME-TIFF; pixel size ``mpp_level0 * downsample`` µm when known."""
    import cv2
    import tifffile

    levels = [_to_uint8(prob)]
    while max(levels[-1].shape) >= TILE:
        h, w = levels[-1].shape
        levels.append(cv2.resize(levels[-1], ((w + 1) // 2, (h + 1) // 2),
                                 interpolation=cv2.INTER_AREA))
    meta: dict[str, Any] = {"axes": "YX", "SignificantBits": 8}
    if name:
        meta["Name"] = name
    opts: dict[str, Any] = {"tile": (TILE, TILE), "compression": "zlib",
                            "photometric": "minisblack"}
    pixel = None if mpp_level0 is None else mpp_level0 * downsample
    if pixel is None:
        log.warning("%s: the slide has no MPP; the OME-TIFF has no pixel size, so QuPath "
                    "will not scale it to the slide", path)
    else:
        meta.update(PhysicalSizeX=pixel, PhysicalSizeXUnit="µm", PhysicalSizeY=pixel,
                    PhysicalSizeYUnit="µm")
    with atomic_path(path, suffix=".ome.tif") as tmp, tifffile.TiffWriter(
            tmp, bigtiff=levels[0].nbytes > 2**31, ome=True) as tif:
        for i, level in enumerate(levels):
            res: dict[str, Any] = {} if pixel is None else {
                "resolution": (1e4 / (pixel * 2**i),) * 2, "resolutionunit": "CENTIMETER"}
            if i == 0:
                tif.write(level, subifds=len(levels) - 1, metadata=meta, **res, **opts)
            else:
                tif.write(level, subfiletype=1, **res, **opts)


def patch_detections(coords: np.ndarray, size0: float, values: np.ndarray,
                     slide_id: str = "", attention: bool = False) -> dict[str, Any]:
    """A FeatureCollection of QuPath detections, one square per patch (level-0 corner
    ``coords`` and side ``size0``), as QuPath 0.4+ exports them."""
    ns = uuid.uuid5(_NS, slide_id)
    name = "relative attention" if attention else MEASUREMENT
    features = []
    for (x, y), v in zip(np.asarray(coords).tolist(), np.asarray(values).tolist(), strict=True):
        key = "attention" if attention else "tumour" if v >= TUMOUR_AT else "other"
        cls, color = CLASSES[key]
        x1, y1 = round(x + size0, 3), round(y + size0, 3)
        features.append({
            "type": "Feature", "id": str(uuid.uuid5(ns, f"{x},{y}")),
            "geometry": {"type": "Polygon",
                         "coordinates": [[[x, y], [x1, y], [x1, y1], [x, y1], [x, y]]]},
            "properties": {"objectType": "detection",
                           "classification": {"name": cls, "color": color},
                           "measurements": {name: round(float(v), 6)}}})
    return {"type": "FeatureCollection", "features": features}


def _to_uint8(prob: np.ndarray | zarr.Array) -> np.ndarray:
    """round(p * 255), converted a band of rows at a time (no float copy of a whole map)."""
    out = np.empty(prob.shape, np.uint8)
    for top in range(0, prob.shape[0], BAND):
        band = np.nan_to_num(np.asarray(prob[top:top + BAND], np.float32))
        out[top:top + BAND] = np.rint(np.clip(band, 0.0, 1.0) * 255)
    return out


def _json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise MixsupError(f"the {what} is missing", _FIX, path)
    doc = parse_json(read_text(path, what), path, what)
    if not isinstance(doc, dict):
        raise MixsupError(f"the {what} is not a JSON object", _FIX, path)
    return doc


def _slide_path(rec_path: Path) -> str:
    slide = _json(rec_path, "slide record").get("path")
    if not isinstance(slide, str) or not slide:
        raise MixsupError("the slide record has no slide path", _FIX, rec_path)
    return slide


def _slide_mpp(tiles_json: Path, slide: str) -> float | None:
    """The MPP the prediction used (its tiling record), else the slide file's, else None."""
    if tiles_json.is_file():
        return finite(_json(tiles_json, "tiling record").get("slide_mpp"), "slide_mpp",
                      tiles_json, low=MPP_RANGE[0], high=MPP_RANGE[1])
    from mixsup.slides.reader import Slide

    try:
        with Slide(slide) as s:
            return s.info.mpp
    except MixsupError as exc:
        log.warning("no tiling record %s and the slide cannot be opened (%s)", tiles_json, exc)
        return None


def _open(path: Path, what: str, array: bool) -> Any:
    from mixsup.storage.artefacts import open_array, open_store

    if not path.is_dir():
        raise MixsupError(f"the {what} is missing", _FIX, path)
    try:
        return open_array(path) if array else open_store(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # zarr raises several types
        raise MixsupError(f"cannot read the {what} ({type(exc).__name__})", _FIX, path) from exc


def _probmap(path: Path) -> tuple[zarr.Array, float]:
    arr = _open(path, "probability map", array=True)
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise MixsupError("the probability map is not a 2-D float array", _FIX, path)
    return arr, finite(arr.attrs.get("downsample"), "the probability map's downsample", path,
                       low=1e-6, high=1e6)


def _patches(path: Path, tiles_json: Path) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Level-0 corners, max probabilities, patch side and whether the values are attention."""
    group = _open(path, "patch map store", array=False)
    attrs = dict(group.attrs)
    try:
        coords = np.asarray(group["coords"][:], np.float64)
        values = np.asarray(group["max_prob"][:], np.float64)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # RuntimeError: a
        # chunk its codec cannot decode ("Zstd decompression error")
        raise MixsupError(f"the patch map store is incomplete ({type(exc).__name__})", _FIX,
                          path) from exc
    if coords.ndim != 2 or coords.shape[1:] != (2,) or values.shape != (len(coords),):
        raise MixsupError(f"the patch map store holds {coords.shape} coords for "
                          f"{values.shape} probabilities", _FIX, path)
    if not (np.isfinite(coords).all() and np.isfinite(values).all()
            and (values >= 0).all() and (values <= 1).all()):
        raise MixsupError("the patch map store holds non-finite coords or values outside "
                          "[0, 1]", _FIX, path)
    size = attrs.get("size0")
    where = path
    if size is None:
        size, where = _json(tiles_json, "tiling record").get("patch_size_level0"), tiles_json
    size0 = finite(size, "the patch size (level-0 px)", where, low=1e-6, high=1e9)
    return coords.astype(np.int64), values, size0, "values" in attrs

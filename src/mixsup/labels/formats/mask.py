"""Label mask images (PNG, TIFF, pyramidal TIFF) as annotations, and mixsup's mask PNGs.

A mask has no coordinates of its own: its scale comes from its slide (slide size / mask size).
Each pixel value maps to a role through ``annotations.mask_values`` when set, else through the
map a PNG written here declares in a text chunk, else ``DEFAULT_MASK_VALUES``. A pyramidal TIFF
is read at its largest level under ``MAX_PIXELS`` (Camelyon16's level 0 is 2e10 pixels), and
the outlines are simplified by half a mask pixel, so that patches rasterise them quickly.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.config import DEFAULT_MASK_VALUES, MaskRole
from mixsup.errors import AnnotationError
from mixsup.labels.regions import SlideAnnotations, mask_to_annotations
from mixsup.storage.atomic import atomic_path
from mixsup.storage.user_files import parse_json

MAX_PIXELS = 1 << 26  # 64 MB as uint8 (8192²); outlines are traced at that level at most
# Coarser masks label a whole training patch (512 px at level 0) with one pixel or less.
MAX_DOWNSAMPLE = 256
_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
VALUES_KEY = "mixsup:mask_values"  # PNG text chunk: the value -> role map, as JSON
_ROLES = ("tumor", "negative", "ignore")


def recognises(head: bytes) -> bool:
    """Is a file starting with these (at least 8) bytes a PNG or TIFF image?"""
    return head.startswith(_PNG) or head[:4] in _TIFF


def read_mask(path: Path, head: bytes, chosen: Mapping[int, MaskRole] | None,
              slide_dimensions: tuple[int, int] | None) -> SlideAnnotations:
    """The outlines of a label mask image, in level-0 pixels of its slide. ``head``: the
    file's first bytes (they tell PNG from TIFF); ``chosen``: the user's value map
    (``annotations.mask_values``), if set."""
    if slide_dimensions is None:
        raise AnnotationError("a label mask image has no coordinates of its own",
                              "give its slide (e.g. mixsup annotations MASK OUT --slide SLIDE), "
                              "so that the mask's scale is known", path)
    mask, declared = _decode(path, head.startswith(_PNG))
    downsample = _downsample((mask.shape[1], mask.shape[0]), slide_dimensions, path)
    found = [int(v) for v in np.unique(mask)]
    if chosen is not None:
        values, source = chosen, "annotations.mask_values"
    elif declared is not None:
        values, source = declared, f"the map the file declares ({VALUES_KEY})"
    else:
        values, source = DEFAULT_MASK_VALUES, "the default annotations.mask_values"
        if set(found) == {0, 255}:
            # Binary 0/255 masks mostly mean 255 = tumour (Camelyon16's ground truth among
            # them), which the default map would read as "unlabelled, no tumour".
            raise AnnotationError(
                "the mask holds only 0 and 255 and does not say what they mean (the default "
                "annotations.mask_values would read negative and unlabelled, with no tumour)",
                "if 255 marks tumour: --set 'annotations.mask_values={0: negative, 255: tumor}'"
                "; if it marks unlabelled pixels, set that map explicitly", path)
    unknown = [v for v in found if v not in values]
    if unknown:
        raise AnnotationError(
            f"mask values {unknown[:8]} have no role in {source}, {dict(values)}",
            "map every value, e.g. --set 'annotations.mask_values={0: negative, 255: tumor}' "
            "(roles: tumor, negative, ignore)", path)
    if all(values[v] == "ignore" for v in found):
        raise AnnotationError("the mask labels no pixel: every value in it maps to ignore",
                              "check annotations.mask_values, or drop the file", path)
    ann = mask_to_annotations(mask, downsample, source=str(path), values=values)
    # Traced outlines are staircases; half a mask pixel of tolerance keeps the pixels and drops
    # most vertices, which every training patch would otherwise pay for.
    return SlideAnnotations(tuple(
        dataclasses.replace(r, geometry=r.geometry.simplify(downsample / 2))
        for r in ann.regions), source=ann.source)


def write_png(path: str | Path, mask: np.ndarray,
              values: Mapping[int, MaskRole] = DEFAULT_MASK_VALUES) -> None:
    """A uint8 label mask as a PNG that declares its value map (read back without settings)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(VALUES_KEY, json.dumps({str(k): v for k, v in values.items()}))
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(mask, np.uint8), mode="L").save(tmp, pnginfo=info)


def _decode(path: Path, png: bool) -> tuple[np.ndarray, dict[int, MaskRole] | None]:
    """(one channel of non-negative integer labels, the value map the file declares if any)."""
    mask, declared = _png(path) if png else (_tiff_level(path), None)
    if mask.ndim == 3:
        mask = _one_channel(mask, path)
    if mask.ndim != 2 or mask.dtype.kind not in "uib" or (
            mask.dtype.kind == "i" and mask.size and mask.min() < 0):
        raise AnnotationError(f"a label mask must be one channel of non-negative integers (got "
                              f"shape {mask.shape}, {mask.dtype})", "export the mask again", path)
    return (mask.astype(np.uint8) if mask.dtype == bool else mask), declared


def _one_channel(mask: np.ndarray, path: Path) -> np.ndarray:
    """A grey mask stored as RGB(A) or grey+alpha: one of its equal channels."""
    channels = mask.shape[2]
    if channels in (2, 4) and (mask[..., -1] == mask[..., -1].flat[0]).all():
        mask, channels = mask[..., :-1], channels - 1  # a constant alpha carries nothing
    if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, channels)):
        raise AnnotationError(f"the mask has {channels} different channels",
                              "save one channel of label values (0, 1, ...), not colours", path)
    return mask[..., 0]


def _png(path: Path) -> tuple[np.ndarray, dict[int, MaskRole] | None]:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # capped below
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise AnnotationError(
                        f"the PNG mask is {w}x{h} px, over {MAX_PIXELS:,} pixels",
                        "save it downsampled (e.g. 1/16 of the slide), or as a pyramidal TIFF",
                        path)
                declared = _declared(img.info.get(VALUES_KEY), path)
                return np.asarray(img), declared  # palette PNGs: indices, not colours
    except Image.DecompressionBombError as exc:
        raise AnnotationError(f"the PNG mask is too large ({exc})",
                              "save it downsampled (e.g. 1/16 of the slide)", path) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise AnnotationError(f"unreadable PNG mask ({exc})", "export the mask again",
                              path) from exc


def _tiff_level(path: Path) -> np.ndarray:
    """The largest level under MAX_PIXELS of the file's largest image series."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            def size(level: Any) -> int:
                return int(level.keyframe.imagewidth) * int(level.keyframe.imagelength)

            series = max(tif.series, key=lambda s: size(s.levels[0]))
            if series.levels[0].axes not in ("YX", "YXS"):
                raise AnnotationError(
                    f"the mask TIFF's image has axes {series.levels[0].axes!r}",
                    "save one 2-D image of labels (a page stack or planar channels is not a "
                    "mask)", path)
            levels = sorted(series.levels, key=size, reverse=True)
            fits = [lv for lv in levels if size(lv) <= MAX_PIXELS]
            if not fits:
                kf = levels[-1].keyframe
                raise AnnotationError(
                    f"the mask's smallest level is {kf.imagewidth}x{kf.imagelength} px, over "
                    f"{MAX_PIXELS:,} pixels",
                    "write the mask with a pyramid, or downsampled (e.g. 1/16 of the slide)",
                    path)
            return np.asarray(fits[0].asarray())
    except AnnotationError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise AnnotationError(f"unreadable TIFF mask ({type(exc).__name__}: {exc})",
                              "export the mask again", path) from exc


def _declared(text: Any, path: Path) -> dict[int, MaskRole] | None:
    if text is None:
        return None
    try:
        pairs = parse_json(str(text), path, f"mask's {VALUES_KEY} text", AnnotationError)
        out = {int(k): v for k, v in pairs.items()}
        if out and all(isinstance(v, str) and v in _ROLES for v in out.values()):
            return out
    except (AnnotationError, ValueError, AttributeError):
        pass
    raise AnnotationError(f"the mask's {VALUES_KEY} text ({text!r}) is not a map of values to "
                          "tumor, negative or ignore", "write the mask again", path)


def _downsample(size: tuple[int, int], slide: tuple[int, int], path: Path) -> float:
    """Slide pixels per mask pixel. An integer factor whose rounding (floor or ceil) gives the
    mask's size on both axes is taken exactly; else the width ratio, if it gives the height to
    within a mask pixel."""
    (w, h), (sw, sh) = size, slide
    if w < 1 or h < 1 or max(sw / w, sh / h) > MAX_DOWNSAMPLE:
        raise AnnotationError(
            f"the mask ({w}x{h} px) is over {MAX_DOWNSAMPLE} times smaller than its slide "
            f"({sw}x{sh} px): a mask pixel would cover more than a training patch",
            f"write the mask at most {MAX_DOWNSAMPLE}x downsampled (e.g. {-(-sw // 32)}x"
            f"{-(-sh // 32)} px, 32x)", path)
    k = max(1, round(sw / w))
    if all(n in (s // k, -(-s // k)) for n, s in ((w, sw), (h, sh))):
        return float(k)
    ds = sw / w
    if abs(sh / ds - h) > 1.0:
        raise AnnotationError(
            f"the mask ({w}x{h} px) does not have its slide's shape ({sw}x{sh} px)",
            "check that the mask belongs to this slide and covers all of it", path)
    return ds

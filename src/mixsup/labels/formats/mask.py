"""Label mask images (PNG, TIFF, pyramidal TIFF) as annotations, and mixsup's mask PNGs.

A mask has no coordinates of its own: its scale comes from its slide (slide width / mask width),
and each pixel value maps to a role through ``annotations.mask_values``, or through the map a
PNG written here declares in a text chunk. A pyramidal TIFF is read at its largest level under
``MAX_PIXELS``; Camelyon16's level-0 masks are 10^10 pixels.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.atomic import atomic_path
from mixsup.config import DEFAULT_MASK_VALUES, MaskRole
from mixsup.errors import AnnotationError
from mixsup.labels.regions import SlideAnnotations, mask_to_annotations

MAX_PIXELS = 1 << 28  # 256 MB as uint8; outlines are traced at that level at most
_PNG = b"\x89PNG\r\n\x1a\n"
_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
VALUES_KEY = "mixsup:mask_values"  # PNG text chunk: the value -> role map, as JSON


def recognises(raw: bytes) -> bool:
    return raw.startswith(_PNG) or raw[:4] in _TIFF


def read_mask(raw: bytes, path: Path, values: Mapping[int, MaskRole],
              slide_dimensions: tuple[int, int] | None,
              values_chosen: bool = True) -> SlideAnnotations:
    """The outlines of a label mask image, in level-0 pixels of its slide. ``values_chosen``:
    the value map was set by the user, not left at its default."""
    if slide_dimensions is None:
        raise AnnotationError("a label mask image has no coordinates of its own",
                              "give its slide (e.g. mixsup annotations MASK OUT --slide SLIDE), "
                              "so that the mask's scale is known", path)
    mask, level_size, declared = _decode(raw, path)
    if declared is not None and not values_chosen:
        values, values_chosen = declared, True
    downsample = _downsample(level_size, slide_dimensions, path)
    found = np.unique(mask)
    unknown = [int(v) for v in found if int(v) not in values]
    if unknown:
        raise AnnotationError(
            f"mask values {unknown[:8]} have no role (annotations.mask_values maps "
            f"{dict(values)})",
            "map every value, e.g. --set 'annotations.mask_values={0: negative, 255: tumor}' "
            "(roles: tumor, negative, ignore)", path)
    if not values_chosen and {int(v) for v in found} == {0, 255}:
        # A binary 0/255 mask that does not say what it means: "negative, and unlabelled
        # where the tumour is drawn" by the default map, but 255 = tumour for most tools.
        raise AnnotationError(
            "the mask holds only 0 and 255 and does not say what they mean (the default "
            "annotations.mask_values would read negative and unlabelled, with no tumour)",
            "if 255 marks tumour: --set 'annotations.mask_values={0: negative, 255: tumor}'; "
            "if it marks unlabelled pixels, set that map explicitly", path)
    if all(values[int(v)] == "ignore" for v in found):
        raise AnnotationError("the mask labels no pixel: every value in it maps to ignore",
                              "check annotations.mask_values, or drop the file", path)
    return mask_to_annotations(mask, downsample, source=str(path), values=values)


def write_png(path: str | Path, mask: np.ndarray,
              values: Mapping[int, MaskRole] = DEFAULT_MASK_VALUES) -> None:
    """A uint8 label mask as a PNG that declares its value map (read back without settings)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(VALUES_KEY, json.dumps({str(k): v for k, v in values.items()}))
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(mask, np.uint8), mode="L").save(tmp, pnginfo=info)


def _decode(raw: bytes, path: Path
            ) -> tuple[np.ndarray, tuple[int, int], dict[int, MaskRole] | None]:
    """(single-channel mask, its (width, height), the value map it declares if any)."""
    declared = None
    if raw.startswith(_PNG):
        from PIL import Image

        try:
            with Image.open(io.BytesIO(raw)) as img:
                # palette PNGs: the indices are the labels, not the colours
                mask = np.asarray(img)
                declared = _declared(img.info.get(VALUES_KEY), path)
        except (OSError, ValueError) as exc:
            raise AnnotationError(f"unreadable PNG mask ({exc})", "export the mask again",
                                  path) from exc
    else:
        mask = _tiff_level(raw, path)
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[2])):
            raise AnnotationError(f"the mask has {mask.shape[2]} different channels",
                                  "save one channel of label values (0, 1, ...), not colours",
                                  path)
        mask = mask[..., 0]
    if mask.ndim != 2 or mask.dtype.kind not in "ub":
        raise AnnotationError(f"a label mask must be one channel of integers (got shape "
                              f"{mask.shape}, {mask.dtype})", "export the mask again", path)
    return mask.astype(np.uint8) if mask.dtype == bool else mask, (mask.shape[1],
                                                                   mask.shape[0]), declared


def _declared(text: Any, path: Path) -> dict[int, MaskRole] | None:
    if text is None:
        return None
    try:
        pairs = json.loads(text)
        out = {int(k): v for k, v in pairs.items()}
        if all(v in ("tumor", "negative", "ignore") for v in out.values()):
            return out
    except (ValueError, AttributeError):
        pass
    raise AnnotationError(f"the mask's {VALUES_KEY} text ({text!r}) is not a map of values to "
                          "tumor, negative or ignore", "write the mask again", path)


def _tiff_level(raw: bytes, path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(raw)) as tif:
            levels = tif.series[0].levels
            fits = [lv for lv in levels if int(np.prod(lv.shape[:2])) <= MAX_PIXELS]
            if not fits:
                h, w = levels[-1].shape[:2]
                raise AnnotationError(
                    f"the mask's smallest level is {w}x{h} px, over {MAX_PIXELS:,} pixels",
                    "write the mask with a pyramid, or downsampled (e.g. 1/16 of the slide)",
                    path)
            return np.asarray(fits[0].asarray())
    except AnnotationError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise AnnotationError(f"unreadable TIFF mask ({type(exc).__name__}: {exc})",
                              "export the mask again", path) from exc


def _downsample(size: tuple[int, int], slide: tuple[int, int], path: Path) -> float:
    """Slide pixels per mask pixel. An integer factor whose rounding (floor or ceil) gives the
    mask's size on both axes is taken exactly; else the width ratio, if the height agrees."""
    (w, h), (sw, sh) = size, slide
    k = max(1, round(sw / w))
    if all(n in (s // k, -(-s // k)) for n, s in ((w, sw), (h, sh))):
        return float(k)
    ds = sw / w
    if abs(sh / ds - h) > max(1.0, 0.01 * h):
        raise AnnotationError(
            f"the mask ({w}x{h} px) does not have its slide's shape ({sw}x{sh} px)",
            "check that the mask belongs to this slide and covers all of it", path)
    return ds

"""A dataset whose pixel labels are mask images: `mixsup annotations` writes them from the
outlines, `mixsup validate` accepts them, and training reads the same tumour pixels."""

from __future__ import annotations

import re
import shutil

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.labels.table import load_dataset
from mixsup.train.preflight import read_train_annotations
from tests.labels.samples import iou


def _areas(validate_output: str) -> dict[str, float]:
    """slide id -> tumour mm² from `mixsup validate`'s pixel-label lines."""
    found = re.findall(r"^  (\S+): .* tumour ([0-9.]+) mm²", validate_output, re.M)
    return {sid: float(a) for sid, a in found}


def test_mask_images_label_a_dataset_as_its_outlines_do(shapes_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(shapes_data, data, ignore=shutil.ignore_patterns("tiles"))
    cfg = load_config("tiny")
    assert main(["validate", str(data)]) == 0
    before = _areas(capsys.readouterr().out)
    records = [r for r in load_dataset(data).slides if r.annotation is not None]
    assert records
    outlines = read_train_annotations(records, cfg, strict=True).annotations
    for rec in records:
        png = rec.annotation.with_suffix(".png")
        assert main(["annotations", str(rec.annotation), str(png), "--slide", str(rec.path),
                     "--downsample", "4"]) == 0
        rec.annotation.unlink()
    assert main(["validate", str(data)]) == 0
    out = capsys.readouterr().out
    assert "dataset OK" in out and "(mask image)" in out and "(outlines)" not in out
    after = _areas(out)  # validate says what training will read: the same tumour areas
    assert after.keys() == before.keys() and any(before.values())
    for sid, area in before.items():
        assert abs(after[sid] - area) <= 0.05 * area + 1e-4, (sid, area, after[sid])
    masked = load_dataset(data).slides
    assert {r.annotation.suffix for r in masked if r.annotation is not None} == {".png"}
    from_masks = read_train_annotations([r for r in masked if r.annotation is not None], cfg,
                                        strict=True).annotations
    assert from_masks.keys() == outlines.keys()
    assert any(not ann.tumor.is_empty for ann in outlines.values())
    for sid, ann in outlines.items():
        a = ann.rasterize(0, 0, 192, 192, 4.0)
        b = from_masks[sid].rasterize(0, 0, 192, 192, 4.0)
        assert (a == b).mean() > 0.98, sid
        if (a == 1).any():
            assert iou(a, b) > 0.95, sid

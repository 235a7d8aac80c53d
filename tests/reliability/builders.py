"""Small hostile-input builders shared by the regression and fuzz tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mixsup.synth.pyramid_tiff import array_renderer, write_pyramid


def cli_fails(capsys: Any, argv: list[str], *needles: str) -> str:
    """Run the CLI: exit 2 (from the command, or from the parser for a flag its argparse type
    refuses), one error line (the dataset check may list several problems under it), no
    traceback and no catch-all, every needle in it."""
    from mixsup.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err and "bug in mixsup" not in err
    for needle in needles:
        assert needle in err, err
    return err


def small_slide(path: Path, size: int = 512, mpp: float = 1.0) -> Path:
    """A pyramidal TIFF slide of grey-pink tissue."""
    img = np.full((size, size, 3), (210, 160, 190), np.uint8)
    write_pyramid(path, size, size, array_renderer(img), mpp=mpp)
    return path


def prediction_folder(root: Path, slide: Path, record: dict[str, Any] | None = None,
                      meta: Any = None) -> Path:
    """A ``mixsup predict`` folder for one slide ``s0``, written by hand (no model): its
    predict.json, predictions.csv and slide record, each replaceable."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "slides").mkdir(exist_ok=True)
    (root / "predict.json").write_text(json.dumps(
        {"operating_threshold": 0.5, "mode": "mixed"} if meta is None else meta))
    (root / "predictions.csv").write_text("slide_id,probability,prediction\ns0,0.8,1\n")
    rec = {"slide_id": "s0", "path": str(slide), "probability": 0.8, "prediction": 1,
           "n_patches": 3, "topk": [{"rank": 1, "x": 0, "y": 0, "size": 128.0,
                                     "max_pixel_prob": 0.9, "patch_prob": None}]}
    (root / "slides" / "s0.json").write_text(json.dumps(rec if record is None else record))
    return root

"""The QuPath export command: a prediction folder as QuPath detections and OME-TIFF maps."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixsup.cli.common import Command, in_arg, out_arg


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("export-qupath", help="a prediction folder's patches and probability "
                       "maps as QuPath detections (GeoJSON) and pyramidal OME-TIFFs")
    p.add_argument("pred", type=in_arg, help="the --out folder of `mixsup predict`")
    p.add_argument("--out", required=True, type=out_arg, help="folder to write into")
    return {"export-qupath": cmd_export_qupath}


def cmd_export_qupath(args: argparse.Namespace) -> int:
    from mixsup.predict.qupath import export_qupath

    done = export_qupath(args.pred, args.out)
    for sid, n in done.items():
        print(f"{sid:<24} {n} patches")
    print(f"wrote {len(done)} slide(s) to {args.out}; QuPath steps in "
          f"{Path(args.out) / 'README.txt'}")
    return 0

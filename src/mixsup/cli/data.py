"""Data commands: info, synth, validate, tile, annotations."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mixsup.cli.common import (
    Command,
    config_args,
    in_arg,
    load_cfg,
    mpp_arg,
    number_in,
    out_arg,
    print_dataset,
    split_fractions,
)
from mixsup.errors import MixsupError
from mixsup.storage.user_files import output_dir


def register(sub: argparse._SubParsersAction) -> dict[str, Command]:
    p = sub.add_parser("info", help="print a slide's metadata as JSON")
    p.add_argument("slide", type=in_arg)
    p.add_argument("--backend", default="auto",
                   choices=["auto", "tifftiles", "openslide", "tiffslide"])
    p.add_argument("--mpp", type=mpp_arg, default=None, help="MPP override")

    p = sub.add_parser("synth", help="generate a dataset of pyramidal TIFF slides")
    p.add_argument("out", type=out_arg)
    p.add_argument("--kind", choices=["shapes", "pcam"], default="shapes")
    p.add_argument("--n-slides", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="slide side in level-0 pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pcam", default="../shared/data/pcam", type=in_arg,
                   help="PatchCamelyon folder (for --kind pcam)")
    p.add_argument("--patients", type=int, default=None,
                   help="pcam only: N patients x 5 lymph nodes with Camelyon17 node classes")
    p.add_argument("--truth", default=None, type=out_arg, help="answer key folder: every "
                   "slide's true outlines (default: OUT-truth beside OUT, never inside it)")
    p.add_argument("--compression", choices=["jpeg", "zlib"], default="jpeg",
                   help="tile compression; zlib needs no imagecodecs (bigger, lossless files)")
    p.add_argument("--split-shares", type=split_fractions, default=None,
                   metavar="TRAIN,VAL,TEST", help="each split's share of the slides (default: "
                   "shapes 0.6,0.2,0.2, pcam 0.5,0.15,0.35); 0,0,1 makes an all-test set for "
                   "experiment --test-data")
    p.add_argument("--pcam-pool", choices=["all", "dev", "sealed"], default="all",
                   help="pcam only: val and test slides draw from this pool of PCam's valid "
                   "patches: dev (tune on it) or sealed (a pre-registered test; see "
                   "docs/preregistration.md); default all, as before the pools")

    p = sub.add_parser("validate", help="check a dataset: slides.csv, every slide (opened: "
                       "header, levels, MPP, a few tiles) and every annotation")
    p.add_argument("data", type=in_arg)
    p.add_argument("--fast", action="store_true",
                   help="do not open the slides (slides.csv and outlines only)")
    config_args(p)

    p = sub.add_parser("tile", help="tissue-detect and tile every slide of a dataset")
    p.add_argument("data", type=in_arg)
    p.add_argument("--out", default=None, type=out_arg,
                   help="tiles folder (default: DATA/tiles/<settings>)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad slide")
    config_args(p)

    p = sub.add_parser("annotations", help="convert annotations to GeoJSON or a mask PNG")
    p.add_argument("source", type=in_arg, help="ASAP/ImageScope XML, QuPath GeoJSON, NCRF "
                   "JSON, or a label mask image (PNG/TIFF; needs --slide)")
    p.add_argument("dest", help="output .geojson or .png")
    p.add_argument("--slide", default=None, type=in_arg, help="slide, for the mask size and "
                   "bounds checks (and a mask image's scale)")
    p.add_argument("--downsample", type=number_in(1, 1e6, "downsample"), default=32.0,
                   help="mask pixel size (level 0 px, 1 to 256)")
    config_args(p)
    return {"info": cmd_info, "synth": cmd_synth, "validate": cmd_validate, "tile": cmd_tile,
            "annotations": cmd_annotations}


def cmd_info(args: argparse.Namespace) -> int:
    from mixsup.slides import open_slide

    with open_slide(args.slide, backend=args.backend, mpp=args.mpp) as slide:
        print(json.dumps(slide.info.as_dict(), indent=2))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from mixsup.synth.layout import answer_key

    if args.split_shares and args.patients:
        raise MixsupError("--split-shares cannot be used with --patients",
                          "drop one: a patient's 5 nodes share one split")
    if args.pcam_pool != "all" and args.kind != "pcam":
        raise MixsupError("--pcam-pool is for --kind pcam", "add --kind pcam or drop it")
    shares = {"splits": args.split_shares} if args.split_shares else {}
    start = time.perf_counter()
    if args.kind == "shapes":
        from mixsup.synth.shapes import make_shapes

        out = make_shapes(args.out, n_slides=args.n_slides or 20, size=args.size or 1280,
                          seed=args.seed, progress=not args.quiet, **shares,
                          compression=args.compression, truth_dir=args.truth)
    else:
        from mixsup.synth.pcam import make_pcam

        out = make_pcam(args.out, args.pcam, n_slides=args.n_slides or 60,
                        size=args.size or 3072, seed=args.seed, patients=args.patients,
                        **shares,
                        progress=not args.quiet, compression=args.compression,
                        truth_dir=args.truth, pool=args.pcam_pool)
    print_dataset(out)
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s; the answer key (true outlines, "
          f"for `mixsup rounds --truth`) in {args.truth or answer_key(out)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mixsup.dataset.validate import validate_dataset

    result = validate_dataset(args.data, load_cfg(args), fast=args.fast)
    print_dataset(args.data)
    print(f"opened {result.slides_opened} slide(s)" if not args.fast else
          "slides not opened (--fast): their headers, MPP and tiles are unchecked")
    if result.annotations:
        print("pixel labels (what training will read):")
        print("\n".join(result.annotations))
    if result.masks_unchecked:
        print(f"mask images not checked (--fast needs no slide): "
              f"{', '.join(result.masks_unchecked)}")
    if result.tissue:
        print("tissue (what tiling will use):")
        print("\n".join(result.tissue))
    print("dataset OK")
    return 0


def cmd_tile(args: argparse.Namespace) -> int:
    from mixsup.dataset.tiles import tile_dataset
    from mixsup.labels.table import load_dataset

    cfg = load_cfg(args)
    ds = load_dataset(args.data)
    out = output_dir(Path(args.out) if args.out else default_tiles_dir(ds.root, cfg),
                     "tiles folder")
    report = tile_dataset(ds, cfg, out, strict=args.strict, progress=not args.quiet)
    _print_tiling(report, out)
    return 1 if report.skipped and not report.tiles else 0


def cmd_annotations(args: argparse.Namespace) -> int:
    from mixsup.labels.annotations import read_annotations
    from mixsup.labels.formats.mask import MAX_DOWNSAMPLE, MAX_PIXELS, write_png
    from mixsup.labels.formats.qupath import write_geojson
    from mixsup.slides import open_slide

    if args.downsample > MAX_DOWNSAMPLE:
        raise MixsupError(f"--downsample {args.downsample:g} is over {MAX_DOWNSAMPLE}: a mask "
                          "pixel would cover more than a training patch",
                          f"pass --downsample between 1 and {MAX_DOWNSAMPLE}")
    cfg = load_cfg(args)
    dest = Path(args.dest)
    if dest.suffix.lower() not in (".geojson", ".json", ".png"):
        raise MixsupError("unknown output type", "name the output .geojson or .png", dest)
    output_dir(dest.parent, "output's folder")
    dims = None
    if args.slide:
        with open_slide(args.slide, mpp=cfg.reader.mpp or 1.0) as slide:
            dims = slide.dimensions
    ann = read_annotations(args.source, cfg.annotations, dims)
    if dest.suffix.lower() in (".geojson", ".json"):
        write_geojson(dest, ann)
    elif dest.suffix.lower() == ".png":
        if dims is None:
            *_, maxx, maxy = ann.tumor.union(ann.labelled_area or ann.tumor).bounds
            dims = (int(maxx) + 1, int(maxy) + 1)
            print("note: without --slide the mask covers the outlines' extent, not a slide; "
                  "give --slide to use it as a dataset's label mask", file=sys.stderr)
        w, h = (max(1, round(d / args.downsample)) for d in dims)
        if w * h > MAX_PIXELS:
            raise MixsupError(f"a mask at --downsample {args.downsample:g} would be {w}x{h} px",
                              f"raise --downsample (the mask may have {MAX_PIXELS:,} pixels)",
                              dest)
        write_png(dest, ann.rasterize(0, 0, w, h, args.downsample))
    print(f"wrote {dest} ({len(ann.regions)} outlines)")
    return 0


def default_tiles_dir(root: Path, cfg) -> Path:
    t = cfg.tiling
    return root / "tiles" / f"mpp{t.mpp:g}_p{t.patch_size}_o{t.overlap}"


def _print_tiling(report, out: Path) -> None:
    s = report.summary()
    secs = list(report.seconds.values())
    mean = sum(secs) / len(secs) if secs else 0.0
    print(f"tiled {s['slides_tiled']} slide(s): {s['patches']} patches, "
          f"{mean:.2f} s per slide on average -> {out}")
    if report.no_tissue:
        print(f"no tissue on: {', '.join(report.no_tissue)}")
    for sid, reason in report.skipped.items():
        print(f"skipped {sid}: {reason}")
    if s["tissue_removed"]:
        from mixsup.slides.tissue_qc import describe_removed

        print("tissue QC, share of each slide's detected tissue removed:")
        for sid, removed in s["tissue_removed"].items():
            print(f"  {sid}: {describe_removed(removed)}")

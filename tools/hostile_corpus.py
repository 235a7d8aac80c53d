#!/usr/bin/env python3
"""Run ``mixsup`` on a corpus of hostile inputs and count how each case ends (issues 39, 40).

A developer tool, not part of ``make test``: it builds a small dataset, a finished tiny run (its
bundle), a feature folder and a prediction folder once, then generates several hundred cases
over the classes of hostile input that the fuzz tests cover in-process:

    run-folder      a finished run's file damaged, read by ``train --resume`` and ``rounds``
    bundle          bundle.json's fields or a weights file damaged, read by ``predict``
    feature-folder  a ``mixsup features`` folder damaged, read by ``train --mode abmil``
    prediction      a prediction folder damaged, read by ``export-qupath`` and ``evaluate``
    encoder         bad encoder specs and weights files (``features``, ``train``)
    experiment      bad ``experiment`` arguments (--modes, --seeds, --ablate, --jobs, --folds)
    paths           odd paths in every path argument of every command
    special         FIFOs, folders, devices and symlink loops where a file is read

Each case runs as a subprocess ``mixsup ...`` in a folder of its own with a timeout, and is
counted as exit 0, exit 2, exit 70 (the catch-all: a bug), timeout, a signal, or another
status. Cases that start real work are avoided: training runs on a trap dataset whose slides
cannot be read (``--strict`` stops at them after every other check), so that arguments that
pass the checks end there instead of training.

Usage, from the repository root, with the project's Python::

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python tools/hostile_corpus.py --cases 300 \\
        --out build/hostile_corpus.json

The summary (counts overall and per class, and every case that did not end cleanly: its
command and last line of standard error) goes to ``--out`` and standard output. The exit
status is 1 when any case ended with 70, a timeout or a signal, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers
from tests.helpers import FAST
from tests.reliability.tamper import (
    BAD_VALUES,
    FEATURE_DAMAGE,
    damage_feature_store,
    damage_weight,
    json_paths,
)

TINY = ["--preset", "tiny", *(a for s in FAST for a in ("--set", s))]
INTERNAL_ERROR = 70
CLEAN = ("0", "1 (all skipped)", "2")

# -- hostile values -----------------------------------------------------------------------------
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 0.5, -0.0, 1e-300, 1e308, -1e308, float("nan"),
    float("inf"), float("-inf"), 10**400, -(10**30), 2**63, "", " ", "x", "nan", "NaN", "0.5",
    "1" * 5000, "\x00", "a\nb", "é", "\ud800", "/proc/nope/x", "/dev/zero", "mixed", "abmil",
    [], {}, [1], [[]], {"a": 1}, [None], [float("nan")], {"0": 1}, [[[[[[[[1]]]]]]]],
]


def hostile(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.7:
        return copy.deepcopy(rng.choice(HOSTILE))
    if pick < 0.8:
        return rng.randint(-(10**12), 10**12)
    if pick < 0.9:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.uniform(-1, 2)])
    return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 8)))


def edit_json(doc: Any, rng: random.Random, focus: tuple[tuple, ...] = ()) -> tuple[Any, str]:
    """``doc`` with one value set to a hostile one, removed, or a stray key added; or the
    whole document replaced. Returns the document and what was done."""
    doc = copy.deepcopy(doc)

    def exists(path: tuple) -> bool:
        node = doc
        try:
            for key in path:
                node = node[key]
        except (KeyError, IndexError, TypeError):
            return False
        return True

    targets = [p for p in focus if exists(p)]
    paths = targets if targets and rng.random() < 0.6 else list(json_paths(doc))
    path = rng.choice(paths)
    how = rng.choice(["set", "set", "set", "drop", "add", "whole"])
    value = hostile(rng)
    if how == "whole" or not path:
        return value, f"document replaced by {_short(value)}"
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    where = ".".join(map(str, path))
    if how == "drop":
        del parent[path[-1]]
        return doc, f"{where} removed"
    if how == "add" and isinstance(parent, dict):
        parent["stray"] = value
        return doc, f"stray key beside {where}: {_short(value)}"
    parent[path[-1]] = value
    return doc, f"{where} = {_short(value)}"


def damage_bytes(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    how = rng.choice(["cut", "cut", "flip", "nul", "latin", "empty", "junk"])
    if how == "cut" and raw:
        n = rng.randint(0, len(raw) - 1)
        return raw[:n], f"cut to {n} bytes"
    if how in ("flip", "nul") and raw:
        i = rng.randint(0, len(raw) - 1)
        byte = rng.randint(0, 255) if how == "flip" else 0
        return raw[:i] + bytes([byte]) + raw[i + 1:], f"byte {i} set to {byte}"
    if how == "latin":
        return b"\xff\xfe" + raw[2:], "not UTF-8 (starts ff fe)"
    if how == "junk":
        return os.urandom(rng.randint(0, 64)), "random bytes"
    return b"", "emptied"


def damage_checkpoint(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    import torch

    state = torch.load(io.BytesIO(raw), weights_only=True)
    weights = dict(state.get("model", {}))
    how = rng.choice(["nan", "shape", "drop", "extra", "text", "int", "top", "top"])
    what = how
    if weights and how != "top":
        name = rng.choice(sorted(weights))
        what = f"{how} {name}"
        damage_weight(weights, how, name, rng.choice(BAD_VALUES))
        state["model"] = weights
    else:
        key = rng.choice(sorted(state))
        value = hostile(rng)
        state[key] = value
        what = f"checkpoint[{key!r}] = {_short(value)}"
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), what


def damage_file(path: Path, rng: random.Random, focus: tuple[tuple, ...] = ()) -> str:
    """Damage ``path`` in place (a new file: checkpoints are hard links to the fixture's)."""
    raw = path.read_bytes()
    path.unlink()
    if path.suffix in (".json", ".yaml") and rng.random() < 0.65:
        import yaml

        doc = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
        new, what = edit_json(doc, rng, focus)
        path.write_bytes(json.dumps(new).encode())
        return what
    if path.suffix == ".pt" and rng.random() < 0.5:
        data, what = damage_checkpoint(raw, rng)
        path.write_bytes(data)
        return what
    if path.suffix in (".npy", ".npz") and rng.random() < 0.5:
        import numpy as np

        array = rng.choice([np.zeros(0), np.full((3, 2), -5), np.full((2, 2), 2**40),
                            np.array([[np.nan, 1.0]]), np.zeros((2, 3)), np.array(["ab"]),
                            np.zeros((1, 1, 1))])
        with open(path, "wb") as fh:
            if path.suffix == ".npy":
                np.save(fh, array)
            else:
                np.savez(fh, coords=array, tissue=array)
        return f"arrays of shape {array.shape}, {array.dtype}"
    data, what = damage_bytes(raw, rng)
    path.write_bytes(data)
    return what


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- fixtures ------------------------------------------------------------------------------------
@dataclass
class Fixtures:
    root: Path
    data: Path  # 6 shapes slides, all annotated
    trap: Path  # the same table, every slide unreadable: work stops at the first read
    run: Path  # a finished tiny run (mixed mode)
    feats: Path  # `mixsup features` of data's train and val slides
    pred: Path  # `mixsup predict` of one slide
    slide: Path
    annotation: Path
    config: Path
    labels: Path


def build_fixtures(root: Path, mixsup: list[str], env: dict[str, str]) -> Fixtures:
    """Build (or reuse) the fixtures under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    data, run, feats, pred = root / "data", root / "run", root / "feats", root / "pred"
    if not (data / "slides.csv").is_file():
        from mixsup.synth.shapes import make_shapes

        make_shapes(data, n_slides=6, size=768, seed=1, annotated_fraction=1.0,
                    progress=False)
    trap = root / "trap"
    if not (trap / "slides.csv").is_file():
        shutil.copytree(data, trap)
        for slide in (trap / "slides").iterdir():
            slide.write_bytes(b"II*\x00" + b"\x00" * 60)  # a TIFF header and nothing
    steps = [(run / "bundle" / "bundle.json", ["train", str(data), "--out", str(run), *TINY]),
             (feats / "features.json", ["features", str(data), "--out", str(feats), *TINY,
                                        "--splits", "train,val"]),
             (pred / "predictions.csv", ["predict", str(run),
                                         str(data / "slides" / "slide_005.tiff"), "--out",
                                         str(pred)])]
    for done, argv in steps:
        if not done.is_file():
            print(f"building {done.parent.name}: mixsup {' '.join(argv[:2])} ...", flush=True)
            subprocess.run([*mixsup, "-q", *argv], check=True, env=env,
                           stdout=subprocess.DEVNULL)
    slide = data / "slides" / "slide_005.tiff"
    annotation = root / "ann.geojson"
    annotation.write_text(json.dumps({"type": "Feature", "properties": {"name": "Tumor"},
                                      "geometry": {"type": "Polygon", "coordinates": [
                                          [[10, 10], [200, 10], [200, 200], [10, 10]]]}}))
    config = root / "cfg.yaml"
    config.write_text("runtime:\n  num_workers: 0\n")
    labels = root / "labels.csv"
    labels.write_text("slide_id,label\nslide_005,1\nslide_004,0\n")
    return Fixtures(root, data, trap, run, feats, pred, slide, annotation, config, labels)


def _link_or_copy(src: str, dst: str) -> None:
    if src.endswith(".pt"):  # replaced by mixsup, never written into; the damage unlinks first
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=_link_or_copy,
                    ignore=shutil.ignore_patterns("figures", "graphs"))
    return dst


# -- cases ---------------------------------------------------------------------------------------
@dataclass
class Case:
    kind: str
    what: str
    argv: list[str]
    garbage: bool = False  # exit 0 would accept garbage (an input that cannot be right)


Setup = Callable[[Path, random.Random, Fixtures], Case]

RUN_FILES = ["config.yaml", "summary.json", "round_0/summary.json", "round_1/summary.json",
             "round_2/summary.json", "SEL/stage2/summary.json", "round_2/stage2/summary.json",
             "round_1/pools.json", "stage1.json", "phases.json", "tiles/slide_000.json",
             "tiles/slide_000.npz", "tiles/summary.json", "bundle/bundle.json",
             "round_1/model.pt", "SEL/stage2/model.pt", "round_0/model.pt",
             "round_1/negatives.npy", "bundle/theta1.pt",
             "round_1/maps/slide_000.zarr/zarr.json",
             "round_1/maps/slide_000.zarr/max_prob/zarr.json",
             "round_1/maps/slide_000.zarr/prob/zarr.json",
             "round_1/maps/slide_000.zarr/max_prob/c/0",
             "round_1/maps/slide_000.zarr/prob/c/0/0/0"]
RUN_FOCUS = (("selected_round",), ("operating_threshold",), ("val", "scores"),
             ("val", "labels"), ("train_curve",), ("val_loss",), ("final_loss",),
             ("slide_path",), ("mpp",), ("n_patches",), ("key",), ("attributes", "size0"),
             ("attributes", "n_patches"), ("attributes", "version"), ("shape",),
             ("data_type",), ("tiling", "mpp"), ("stage1", "rounds"), ("stage2", "top_k"),
             ("model", "encoder"), ("seed",), ("stage1", "threshold"))


def case_run_folder(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    run = copy_folder(fx.run, tmp / "run")
    selected = json.loads((fx.run / "summary.json").read_text())["selected_round"]
    rel = rng.choice(RUN_FILES).replace("SEL", f"round_{selected}")
    what = f"{rel}: {damage_file(run / rel, rng, RUN_FOCUS)}"
    if rng.random() < 0.6 and "maps" not in rel:
        return Case("run-folder", what, ["train", str(fx.data), "--out", str(run), *TINY,
                                         "--resume"])
    return Case("run-folder", what, ["rounds", str(run), "--data", str(fx.data)])


BUNDLE_FOCUS = (("operating_threshold",), ("mode",), ("format",), ("theta2",), ("theta1",),
                ("preprocessing", "mpp"), ("preprocessing", "patch_size"),
                ("preprocessing", "overlap"), ("preprocessing", "map_downsample"),
                ("preprocessing", "top_k"), ("preprocessing", "stain"),
                ("preprocessing", "normalisation", "theta1", "mean"),
                ("preprocessing", "normalisation", "theta1", "std"),
                ("preprocessing", "tissue", "thumbnail_mpp"), ("config", "tiling", "mpp"),
                ("config", "stage2", "top_k"), ("config", "model", "encoder"),
                ("config", "stain", "normalise"), ("config", "model", "encoder_kwargs"))


def case_bundle(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    bundle = copy_folder(fx.run / "bundle", tmp / "bundle")
    rel = rng.choice(["bundle.json"] * 4 + ["theta1.pt", "theta2.pt"])
    if rel == "bundle.json" and rng.random() < 0.15:  # a stain reference, drawn
        doc = json.loads((bundle / rel).read_text())
        doc["config"]["stain"] = {"normalise": rng.choice(["macenko", "reinhard"])}
        doc["preprocessing"]["stain"] = rng.choice([
            hostile(rng), {"method": rng.choice(["macenko", "reinhard", "x"]),
                           "values": [rng.choice([0.0, 1e300, -5.0, rng.uniform(-2, 2)])
                                      for _ in range(rng.choice([6, 8, 3]))]}])
        (bundle / rel).unlink()
        (bundle / rel).write_text(json.dumps(doc))
        what = f"stain reference {_short(doc['preprocessing']['stain'])}"
    else:
        what = damage_file(bundle / rel, rng, BUNDLE_FOCUS)
    return Case("bundle", f"{rel}: {what}", ["predict", str(bundle), str(fx.slide), "--out",
                                             str(tmp / "pred")])


FEATURE_FILES = ["features.json", "slide_000.zarr/zarr.json",
                 "slide_000.zarr/features/zarr.json", "slide_000.zarr/coords/zarr.json",
                 "slide_000.zarr/features/c/0/0", "slide_000.zarr/coords/c/0/0",
                 "slide_004.zarr/features/c/0/0"]
FEATURE_FOCUS = (("attributes", "key"), ("attributes", "version"), ("attributes", "n_patches"),
                 ("attributes", "dim"), ("shape",), ("data_type",), ("codecs",), ("id",))


def case_feature_folder(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    feats = copy_folder(fx.feats, tmp / "feats")
    if rng.random() < 0.25:  # sound metadata, bad arrays
        import zarr

        slide = rng.choice(["slide_000", "slide_004"])
        how = rng.choice(FEATURE_DAMAGE)
        damage_feature_store(zarr.open_group(str(feats / f"{slide}.zarr"), mode="r+"), how)
        what = f"{slide}.zarr features: {how}"
    else:
        rel = rng.choice(FEATURE_FILES)
        what = f"{rel}: {damage_file(feats / rel, rng, FEATURE_FOCUS)}"
    return Case("feature-folder", what, ["train", str(fx.data), "--mode", "abmil", "--out",
                                         str(tmp / "run"), *TINY, "--set", "abmil.epochs=1",
                                         "--set", f"abmil.features={feats}"])


PRED_FILES = ["predict.json", "predictions.csv", "slides/slide_005.json", "topk.csv",
              "maps/slide_005.zarr/zarr.json", "maps/slide_005.zarr/prob/c/0/0/0",
              "probmaps/slide_005.zarr/zarr.json", "probmaps/slide_005.zarr/c/0/0",
              "regions/slide_005.geojson"]
PRED_FOCUS = (("operating_threshold",), ("mode",), ("path",), ("n_patches",), ("topk",),
              ("probability",), ("attributes", "mpp"), ("shape",), ("data_type",))


def case_prediction(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    pred = copy_folder(fx.pred, tmp / "pred")
    rel = rng.choice(PRED_FILES)
    if not (pred / rel).is_file():  # the zarr layout differs: any chunk of that store
        store = pred / rel.split(".zarr")[0]
        store = store.with_name(store.name + ".zarr")
        chunks = sorted(p for p in store.rglob("*") if p.is_file()) if store.is_dir() else []
        rel = str(rng.choice(chunks).relative_to(pred)) if chunks else "predict.json"
    what = f"{rel}: {damage_file(pred / rel, rng, PRED_FOCUS)}"
    if rng.random() < 0.7:
        return Case("prediction", what, ["export-qupath", str(pred), "--out",
                                         str(tmp / "qupath")])
    return Case("prediction", what, ["evaluate", str(pred / "predictions.csv"), "--labels",
                                     str(fx.labels), "--out", str(tmp / "ev")])


ENCODERS = ["nosuchmodel", "", " ", "resnet", "mobilenetv3_small_100 ", "uni", "virchow2",
            "hf-hub:nobody/nothing", "timm/resnet18", "../../etc/passwd", "a\nb", "null", "~",
            "[1]", "{}", "1e3", "resnet18.a1_in1k", "vit_tiny_patch16_224", "é", "x" * 300]
KWARGS = ["{drop_rate: 2}", "{drop_rate: .nan}", "{in_chans: 1}", "{num_classes: 3}",
          "{pretrained: true}", "{checkpoint_path: /etc/passwd}", "{img_size: -1}",
          "{img_size: 10000000}", "{bogus: 1}", "{global_pool: nope}", "[1, 2]", "7", "null",
          "{drop_path_rate: 0.5}", "{act_layer: os.system}", "{features_only: true}",
          "{'': 1}", "{depth: 1e9}", "{output_stride: 3}", "{in_chans: true}"]


def case_encoder(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    weights = tmp / rng.choice(["w.pth", "w.safetensors", "w.bin"])
    kind = rng.choice(["empty", "text", "json", "tensors", "folder", "fifo", "nested"])
    if kind == "empty":
        weights.write_bytes(b"")
    elif kind == "text":
        weights.write_text("not weights\n")
    elif kind == "json":
        weights.write_text('{"state_dict": 1}')
    elif kind == "tensors":
        import torch

        torch.save({rng.choice(["conv_stem.weight", "x", "state_dict"]):
                    rng.choice([torch.zeros(1), torch.full((2, 2), float("nan")),
                                torch.zeros(0)])}, weights)
    elif kind == "folder":
        weights.mkdir()
    elif kind == "fifo":
        os.mkfifo(weights)
    else:
        import torch

        torch.save({"state_dict": {"a": {"b": torch.zeros(1)}}}, weights)
    pick = rng.random()
    if pick < 0.35:
        enc = rng.choice(ENCODERS)
        return Case("encoder", f"features --encoder {enc!r}",
                    ["features", str(fx.trap), "--out", str(tmp / "f"), *TINY, "--splits",
                     "val", "--encoder", enc])
    if pick < 0.6:
        section = rng.choice(["model", "stage2", "mil", "abmil"])
        kw = rng.choice(KWARGS)
        mode = {"model": "mixed", "stage2": "mixed", "mil": "image", "abmil": "abmil"}[section]
        extra = ["--set", "stage2.init=encoder"] if section == "stage2" else []
        return Case("encoder", f"{section}.encoder_kwargs={kw}",
                    ["train", str(fx.trap), "--strict", "--mode", mode, "--out",
                     str(tmp / "run"), *TINY, *extra, "--set", f"{section}.encoder_kwargs={kw}"])
    if pick < 0.8:
        mode = rng.choice(["mixed", "image", "abmil", "pixel"])
        return Case("encoder", f"train --mode {mode} --weights ({kind} {weights.suffix})",
                    ["train", str(fx.trap), "--strict", "--mode", mode, "--out",
                     str(tmp / "run"), *TINY, "--weights", str(weights)], garbage=True)
    return Case("encoder", f"features --weights ({kind} {weights.suffix})",
                ["features", str(fx.trap), "--out", str(tmp / "f"), *TINY, "--splits", "val",
                 "--weights", str(weights)], garbage=True)


# No NUL: a command line cannot hold one (the in-process fuzz tests pass them).
MODES_TEXT = ["mixed", "pixel", "image", "abmil", "mixed,mixed", "Mixed", "", ",", "mixed,",
              " pixel", "x", "mixed,pixel,image,abmil", "\x01", "é", "mixed pixel"]
SEEDS_TEXT = ["0", "0,1", "00,0", "-1", "4294967295", "4294967296", "1e3", "²", "٣", "0x1",
              "", ",", "1,,2", " 1", "+1", "1" * 5000, "nan", "0,1,2,3,4,5,6,7,8,9"]
ABLATIONS = ["pixel-labels", "slides", "pixel-slides", "pseudo-labels", "keep-top", "teacher",
             "fine-tumour", "stage2-epochs", "em-ratio", "freeze", "stage2-freeze", "stain",
             "bogus", "", "pixel_slides"]
ABLATION_VALUES = ["1", "0", "-1", "3", "0.5", "1.5", "1e9", "confident", "soft", "average",
                   "2-3-5", "1-1-1", "0-0-0", "1-2", "2--3-5", "true", "none", "macenko", "nan",
                   "inf", "", "null", "~", "[1,2]", "#", "a:b", "\x7f", "1" * 5000, "3,3"]
NUMBERS = ["0", "1", "2", "3", "50", "51", "257", "-1", "", "1.5", "٣", "1e3", "0x2",
           "1" * 5000, "nan", " 2"]
JOBS = ["0", "1", "2", "257", "-1", "", "1.5", "٣", "1e3", "0x2", "1" * 5000, "nan", " 2"]


def case_experiment(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    argv = ["experiment", str(fx.trap), "--out", str(tmp / "exp"), *TINY]
    parts = []
    if rng.random() < 0.6:
        parts += ["--modes", rng.choice(MODES_TEXT)]
    if rng.random() < 0.5:
        parts += ["--seeds", rng.choice(SEEDS_TEXT)]
    for _ in range(rng.choice([0, 1, 1, 2])):
        values = ",".join(rng.choice(ABLATION_VALUES) for _ in range(rng.randint(0, 3)))
        parts += ["--ablate", f"{rng.choice(ABLATIONS)}={values}"]
    for flag in ("--jobs", "--folds", "--time-min", "--cpus-per-run", "--gpus-per-run",
                 "--mem-gb"):
        if rng.random() < 0.2:  # no more than 3 jobs: each is a process that imports torch
            parts += [flag, rng.choice(JOBS if flag == "--jobs" else NUMBERS)]
    parts += rng.choice([[], ["--no-base"], ["--no-share"], ["--per-center"],
                         ["--launcher", "slurm"], ["--launcher", "submitit-local"],
                         ["--set", "stage1.steps_per_epoch=null"],
                         ["--test-data", str(fx.data)], ["--test-data", str(tmp / "no")]])
    if not parts:
        parts = ["--modes", rng.choice(MODES_TEXT)]
    return Case("experiment", " ".join(parts), argv + parts)


# command -> (its line, {placeholder: "in" | "out"}); optional placeholders are dropped with
# their flag unless fuzzed. Training commands use the trap dataset (and --strict).
PATH_COMMANDS: dict[str, tuple[list[str], dict[str, str]]] = {
    "info": (["info", "SLIDE"], {"SLIDE": "in"}),
    "synth": (["synth", "OUT", "--n-slides", "2", "--size", "256", "--compression", "zlib",
               "--truth", "TRUTH_OUT"], {"OUT": "out", "TRUTH_OUT": "out"}),
    "synth pcam": (["synth", "OUT", "--kind", "pcam", "--pcam", "PCAM"], {"PCAM": "in"}),
    "validate": (["validate", "DATA", "--fast", "--config", "CFG"], {"DATA": "in", "CFG": "in"}),
    "tile": (["tile", "TRAP", "--out", "OUT", "--config", "CFG"],
             {"TRAP": "in", "OUT": "out", "CFG": "in"}),
    "annotations": (["annotations", "ANN", "DEST", "--slide", "SLIDE", "--config", "CFG"],
                    {"ANN": "in", "DEST": "out", "SLIDE": "in", "CFG": "in"}),
    "train": (["train", "TRAP", "--strict", "--out", "OUT", "--weights", "WEIGHTS", "--config",
               "CFG", *TINY], {"TRAP": "in", "OUT": "out", "WEIGHTS": "in", "CFG": "in"}),
    "features": (["features", "TRAP", "--out", "OUT", "--weights", "WEIGHTS", "--config", "CFG",
                  *TINY], {"TRAP": "in", "OUT": "out", "WEIGHTS": "in", "CFG": "in"}),
    "experiment": (["experiment", "TRAP", "--out", "OUT", "--test-data", "TEST_DATA",
                    "--config", "CFG", *TINY],
                   {"TRAP": "in", "OUT": "out", "TEST_DATA": "in", "CFG": "in"}),
    "rounds": (["rounds", "RUN", "--data", "DATA", "--truth", "TRUTH"],
               {"RUN": "in", "DATA": "in", "TRUTH": "in"}),
    "config": (["config", "--config", "CFG"], {"CFG": "in"}),
    "demo": (["demo", "--out", "OUT"], {"OUT": "out"}),
    "predict": (["predict", "RUN", "SLIDE", "--out", "OUT", "--config", "CFG"],
                {"RUN": "in", "SLIDE": "in", "OUT": "out", "CFG": "in"}),
    "predict data": (["predict", "RUN", "--data", "DATA", "--split", "test", "--out", "OUT"],
                     {"DATA": "in"}),
    "evaluate": (["evaluate", "PREDS", "--labels", "LABELS", "--out", "OUT"],
                 {"PREDS": "in", "LABELS": "in", "OUT": "out"}),
    "stage train": (["stage", "train", "RUN", "--data", "DATA"], {"RUN": "in", "DATA": "in"}),
    "stage predict": (["stage", "predict", "RUN", "--data", "DATA", "--out", "OUT"],
                      {"RUN": "in", "DATA": "in", "OUT": "out"}),
    "stage evaluate": (["stage", "evaluate", "PREDS", "--labels", "LABELS", "--out", "OUT"],
                       {"PREDS": "in", "LABELS": "in", "OUT": "out"}),
    # only PRED: with a valid one the viewer would serve until the timeout
    "view": (["view", "PRED", "--data", "DATA", "--port", "0"], {"PRED": "in"}),
    "export-qupath": (["export-qupath", "PRED", "--out", "OUT"], {"PRED": "in", "OUT": "out"}),
}
OPTIONAL = {"WEIGHTS", "TEST_DATA", "TRUTH_OUT", "PCAM"}
# Odd paths that can never be a valid input or output: `demo` (which would run end to end
# with a valid --out) and the "in" slots draw only from these.
BAD_ALWAYS = ["", " ", "-", "-x", "a\nb", "a\rb", "\t", "x\x01y", "x\x7f", "x" * 300,
              "/proc/nope/x", "SPECIAL/FILE/sub", "SPECIAL/LOOP/x", "SPECIAL/FIFO",
              "SPECIAL/LOOP", "SPECIAL/DANGLING", "SPECIAL/DIR/nothing.csv"]


def make_specials(folder: Path) -> Path:
    """A regular file, a folder, a FIFO, a symlink loop, a dangling link and a link to
    /dev/zero, in ``folder`` (one set per case: an output may be written into them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "FILE").write_text("x\n")
    (folder / "DIR").mkdir()
    os.mkfifo(folder / "FIFO")
    os.symlink("LOOP", folder / "LOOP")
    os.symlink(folder / "nothing", folder / "DANGLING")
    os.symlink("/dev/zero", folder / "ZERO.tiff")
    return folder


# Paths outside the case's folder that are only ever given where mixsup reads: it may run as
# root, and an output path such as / or /etc would be written into.
READ_ONLY = ["/", "/etc", "/dev/null", "/dev/zero", "/proc/self/mem"]


def odd_path(rng: random.Random, tmp: Path, direction: str) -> str:
    special = make_specials(tmp / "special")
    pool = [
        *BAD_ALWAYS, ".", "..", "~", "$HOME", "*", "é.tiff", "s p a c e", "nul",
        "SPECIAL/FILE", "SPECIAL/DIR", "SPECIAL/ZERO.tiff", os.fsdecode(b"caf\xe9"),
        os.fsdecode(bytes(tmp) + b"/n\xff"), "/".join([str(tmp)] + ["y" * 200] * 24),
        "../" * rng.randint(1, 4) + "nowhere",
        "".join(chr(rng.randint(1, 0x24F)) for _ in range(rng.randint(1, 10))).lstrip("/"),
        *(READ_ONLY if direction == "in" else [])]
    pick = rng.choice(BAD_ALWAYS if direction == "never valid" else pool)
    return pick.replace("SPECIAL", str(special))


def case_paths(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    command = rng.choice(sorted(PATH_COMMANDS))
    line, slots = PATH_COMMANDS[command]
    slot = rng.choice(sorted(slots))
    direction = "never valid" if command in ("demo", "experiment") else slots[slot]
    odd = odd_path(rng, tmp, direction)
    values = {"SLIDE": str(fx.slide), "DATA": str(fx.data), "TRAP": str(fx.trap),
              "CFG": str(fx.config), "ANN": str(fx.annotation), "RUN": str(fx.run),
              "PRED": str(fx.pred), "PREDS": str(fx.pred / "predictions.csv"),
              "LABELS": str(fx.labels), "TRUTH": str(fx.data.parent / "data-truth")}
    argv: list[str] = []
    for arg in line:
        if arg == slot:
            argv.append(odd)
        elif arg in OPTIONAL:
            argv.pop()
        elif slots.get(arg) == "out":
            argv.append(str(tmp / arg.lower()))
        else:
            argv.append(values.get(arg, arg))
    if command in ("rounds",) and slot != "RUN":  # rounds writes into its run: a copy
        run = copy_folder(fx.run, tmp / "run")
        argv[argv.index(str(fx.run))] = str(run)
    exists = os.path.lexists(odd) if "\x00" not in odd else False
    return Case("paths", f"{command} {slot}={odd!r}", argv,
                garbage=slots[slot] == "in" and not exists)


def case_special(tmp: Path, rng: random.Random, fx: Fixtures) -> Case:
    """A FIFO, a folder, a device or a symlink loop inside a dataset or where a file is read."""
    kind = rng.choice(["fifo", "dir", "zero", "loop", "dangling"])

    def make(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "zero":
            os.symlink("/dev/zero", path)
        elif kind == "loop":
            os.symlink(path.name, path)
        else:
            os.symlink(tmp / "nothing", path)

    where = rng.choice(["slides.csv", "annotation", "slide", "config", "labels", "preds",
                        "predict.json", "slide record", "bundle.json", "features.json"])
    if where in ("slides.csv", "annotation", "slide"):
        data = tmp / "data"
        shutil.copytree(fx.data, data)
        target = {"slides.csv": data / "slides.csv",
                  "annotation": data / "annotations" / "slide_000.geojson",
                  "slide": data / "slides" / "slide_000.tiff"}[where]
        make(target)
        argv = rng.choice([["validate", str(data)], ["validate", str(data), "--fast"],
                           ["train", str(data), "--strict", "--out", str(tmp / "run"), *TINY],
                           ["predict", str(fx.run), "--data", str(data), "--split", "train",
                            "--out", str(tmp / "pred"), "--strict"]])
        if argv[0] == "predict" and where != "slides.csv":
            argv = ["predict", str(fx.run), str(target), "--out", str(tmp / "pred")]
        return Case("special", f"{where} is a {kind}", argv, garbage=True)
    if where in ("config", "labels", "preds"):
        target = tmp / {"config": "c.yaml", "labels": "l.csv", "preds": "p.csv"}[where]
        make(target)
        argv = {"config": ["config", "--config", str(target)],
                "labels": ["evaluate", str(fx.pred / "predictions.csv"), "--labels",
                           str(target), "--out", str(tmp / "ev")],
                "preds": ["evaluate", str(target), "--labels", str(fx.labels), "--out",
                          str(tmp / "ev")]}[where]
        return Case("special", f"{where} is a {kind}", argv, garbage=True)
    if where in ("predict.json", "slide record"):
        pred = copy_folder(fx.pred, tmp / "pred")
        make(pred / ("predict.json" if where == "predict.json" else "slides/slide_005.json"))
        return Case("special", f"{where} is a {kind}",
                    ["export-qupath", str(pred), "--out", str(tmp / "q")], garbage=True)
    if where == "bundle.json":
        bundle = copy_folder(fx.run / "bundle", tmp / "bundle")
        make(bundle / "bundle.json")
        return Case("special", f"bundle.json is a {kind}",
                    ["predict", str(bundle), str(fx.slide), "--out", str(tmp / "p")],
                    garbage=True)
    feats = copy_folder(fx.feats, tmp / "feats")
    make(feats / "features.json")
    return Case("special", f"features.json is a {kind}",
                ["train", str(fx.data), "--mode", "abmil", "--out", str(tmp / "run"), *TINY,
                 "--set", "abmil.epochs=1", "--set", f"abmil.features={feats}"])


CLASSES: dict[str, tuple[Setup, float]] = {
    "run-folder": (case_run_folder, 0.17), "bundle": (case_bundle, 0.12),
    "feature-folder": (case_feature_folder, 0.10), "prediction": (case_prediction, 0.10),
    "encoder": (case_encoder, 0.10), "experiment": (case_experiment, 0.12),
    "paths": (case_paths, 0.20), "special": (case_special, 0.09),
}


# -- running -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    id: int
    kind: str
    what: str
    argv: list[str]
    status: str  # "0", "1 (all skipped)", "2", "70", "timeout", "signal N", "exit N"...
    seconds: float
    last_stderr: str
    garbage: bool


def run_case(case: Case, cwd: Path, mixsup: list[str], env: dict[str, str],
             timeout: float) -> tuple[str, str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([*mixsup, "-q", *case.argv], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    text = err.decode("utf-8", "backslashreplace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if ln.startswith("error:")),
                lines[-1] if lines else "")
    if rc is None:
        status = "timeout"
    elif rc < 0:
        status = f"signal {-rc}"
    elif rc in (0, 2, INTERNAL_ERROR):
        status = str(rc)
    elif rc == 1 and b"skipped " in out:  # predict, tile: every input skipped, each named
        status = "1 (all skipped)"
    else:
        status = f"exit {rc}"
    return status, last[:400], time.perf_counter() - start


def outside(work: Path) -> dict[Path, set[str]]:
    """What the folders around the cases hold (where an odd output path could write); not
    /tmp, where other programs write."""
    places = [Path("/"), Path("/etc"), Path.home(), work, Path.cwd()]
    return {p: set(os.listdir(p)) for p in places if p.is_dir()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--out", default="build/hostile_corpus.json", help="summary JSON")
    parser.add_argument("--work", default=None, help="folder for the fixtures and the cases "
                        "(default: a new temporary folder; an existing one reuses its fixtures)")
    parser.add_argument("--only", action="append", choices=sorted(CLASSES), default=[],
                        help="run only this class of cases (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep every case's folder")
    args = parser.parse_args()

    exe = Path(sys.executable).parent / "mixsup"
    mixsup = [str(exe)] if exe.is_file() else [sys.executable, "-m", "mixsup"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="hostile-corpus-"))
    t0 = time.perf_counter()
    fx = build_fixtures(work / "fixtures", mixsup, env)
    print(f"fixtures ready in {time.perf_counter() - t0:.0f} s under {fx.root}", flush=True)

    rng = random.Random(args.seed)
    classes = {k: v for k, v in CLASSES.items() if not args.only or k in args.only}
    kinds = list(classes)
    weights = [classes[k][1] for k in kinds]
    outcomes: list[Outcome] = []
    cases_dir = work / "cases"
    for i in range(args.cases):
        kind = rng.choices(kinds, weights)[0]
        case_rng = random.Random(f"{args.seed}-{i}")
        tmp = cases_dir / f"{i:04d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cwd = tmp / "cwd" / "a" / "b" / "c" / "d"  # `..` chains stay inside the case's folder
        cwd.mkdir(parents=True)
        try:
            case = classes[kind][0](tmp, case_rng, fx)
            if any("\x00" in a for a in case.argv):
                raise ValueError("a NUL in the command line")
        except Exception as exc:  # a bug of this tool's, not mixsup's: reported apart
            outcomes.append(Outcome(i, kind, f"setup: {exc!r}", [], "setup failed", 0.0, "",
                                    False))
            continue
        before = outside(work)
        status, last, secs = run_case(case, cwd, mixsup, env, args.timeout)
        wrote = {str(p / name) for p, names in outside(work).items()
                 for name in names - before.get(p, set())}
        if wrote:  # an output left the case's folder
            status, last = "wrote outside", ", ".join(sorted(wrote))[:400]
        outcomes.append(Outcome(i, kind, case.what, case.argv, status, secs, last,
                                case.garbage))
        print(f"[{i + 1}/{args.cases}] {status:>7} {secs:5.1f}s {kind}: {case.what[:90]}",
              flush=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    def bad(o: Outcome) -> bool:
        return o.status not in CLEAN or (o.status == "0" and o.garbage)

    counts = Counter(o.status for o in outcomes)
    by_class = {k: dict(Counter(o.status for o in outcomes if o.kind == k)) for k in kinds}
    summary = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cases": len(outcomes), "seed": args.seed, "timeout_s": args.timeout,
        "seconds": round(time.perf_counter() - t0, 1),
        "counts": dict(counts), "by_class": by_class,
        "exit_0_on_garbage": sum(o.status == "0" and o.garbage for o in outcomes),
        "non_clean": [{"id": o.id, "class": o.kind, "what": o.what, "status": o.status,
                       "command": "mixsup -q " + " ".join(map(_shell_word, o.argv)),
                       "last_stderr": o.last_stderr,
                       **({"exit_0_on_garbage": True} if o.status == "0" else {})}
                      for o in outcomes if bad(o)],
        "slowest": [{"id": o.id, "class": o.kind, "seconds": round(o.seconds, 1),
                     "what": o.what} for o in sorted(outcomes, key=lambda o: -o.seconds)[:5]],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False,
                              default=str) + "\n")
    print(json.dumps({k: summary[k] for k in ("cases", "counts", "by_class",
                                               "exit_0_on_garbage", "seconds")}, indent=2))
    for item in summary["non_clean"]:
        print(f"- [{item['status']}] {item['class']}: {item['what'][:100]}\n    "
              f"{item['command'][:300]}\n    {item['last_stderr'][:300]}")
    print(f"summary: {out}")
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(o.status not in CLEAN for o in outcomes) else 0


def _shell_word(arg: str) -> str:
    import shlex

    return shlex.quote(arg.encode("utf-8", "backslashreplace").decode())


if __name__ == "__main__":
    sys.exit(main())

"""Cached patch features: one frozen encoder's embedding of every tissue patch, one zarr store
per slide, for attention MIL (``--mode abmil``) and anyone else's slide-level models.

    FEATS/features.json     the encoder and tiling they were made with (their fingerprint)
    FEATS/<id>.zarr         features (N, D) in the dtype the device produced, coords (N, 2)

A folder holds one encoder's features only: another encoder (or tiling) is refused, so two
kinds of features are never mixed. Each store appears atomically, so a killed run resumes
with the slides it had not finished. What is read back is checked where it is read: a store
whose arrays do not fit together, its tiling or the encoder (width 0, another width, not
floats, NaN) is one ``MixsupError`` naming it (``STORE_FIX``), never a failure deep in
training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mixsup.config import Config, EncoderSpec
from mixsup.dataset.tiles import SlideSet
from mixsup.errors import MixsupError
from mixsup.inference.cpu_backend import inference_model
from mixsup.inference.patch_maps import Router, patch_batches
from mixsup.inference.settings import InferSettings
from mixsup.runtime.device import autocast, to_input
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import progress_bar
from mixsup.slides.patches import SlideSource
from mixsup.storage.artefacts import new_group, open_store
from mixsup.storage.atomic import write_json
from mixsup.storage.user_files import own_file, parse_json, read_text

FEATURES_VERSION = 1
INDEX = "features.json"


def fingerprint(cfg: Config, spec: EncoderSpec) -> dict[str, Any]:
    """What the features depend on: the encoder spec (its weights file by identity: resolved
    path, size, modification time), the patches' tiling and tissue settings."""
    weights = None
    if spec.weights:
        path = Path(spec.weights)
        if not path.is_file():
            raise MixsupError("encoder weights file not found",
                              "check --weights or abmil.weights", path)
        st = path.stat()
        weights = {"file": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    encoder = spec.model_dump(mode="json", include=set(EncoderSpec.model_fields) - {"weights"})
    return {"version": FEATURES_VERSION, "encoder": encoder, "weights_file": weights,
            "tiling": cfg.tiling.model_dump(mode="json"),
            "tissue": cfg.tissue.identity(), "reader_mpp": cfg.reader.mpp}


def fingerprint_id(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


# No encoder's embedding comes near this (float16 stops at 65504); past it the head's float32
# activations overflow into a NaN loss.
MAX_FEATURE = 1e6
STORE_FIX = ("this feature folder is damaged: delete this store and rerun `mixsup features` "
             "into the same folder (training and prediction also compute a missing store)")


@dataclass(frozen=True)
class SlideFeatures:
    """One slide's store by reference: its arrays are read when asked for, so that a
    dataset's features are never all in memory at once."""

    path: Path
    n: int  # patches
    dim: int

    @property
    def features(self) -> np.ndarray:
        """(N, D) in the stored dtype: finite floats, of the shape the store was opened with."""
        with damaged_store(self.path):
            values = np.asarray(cast(Any, open_store(self.path)["features"])[:])
        return checked_features(values, self.n, self.dim, self.path, STORE_FIX)

    @property
    def coords(self) -> np.ndarray:
        """(N, 2) level-0 top-left corners."""
        with damaged_store(self.path):
            coords = np.asarray(cast(Any, open_store(self.path)["coords"])[:])
        return coords


@contextlib.contextmanager
def damaged_store(path: Path) -> Iterator[None]:
    """Read a feature store inside this block: whatever a damaged one raises is one
    ``MixsupError`` naming it."""
    try:
        with own_file(path, "feature store", STORE_FIX):
            yield
    except RuntimeError as exc:  # a codec's, on a truncated chunk ("Zstd decompression error")
        raise MixsupError(f"the feature store is damaged ({exc})", STORE_FIX, path) from None


def checked_features(values: np.ndarray, n: int, dim: int, path: Path, fix: str) -> np.ndarray:
    """``values`` when they are finite floats of shape (n, dim), else a ``MixsupError``."""
    if values.dtype.kind != "f":
        raise MixsupError(f"features of dtype {values.dtype}, not floating point", fix, path)
    if values.shape != (n, dim):
        raise MixsupError(f"features of shape {values.shape}, not ({n}, {dim})", fix, path)
    if not np.isfinite(values).all():
        raise MixsupError("the features hold NaN or infinite values", fix, path)
    if values.size and float(np.abs(values).max()) > MAX_FEATURE:
        raise MixsupError(f"the features hold values beyond ±{MAX_FEATURE:g}, no encoder's "
                          "output", fix, path)
    return values


def check_widths(stores: list[SlideFeatures], width: int | None = None,
                 fix: str = STORE_FIX) -> int:
    """The features' one width (``width``, the encoder's, where given): every slide with
    patches must have it, else a ``MixsupError`` naming the first that does not."""
    for s in stores:
        if not s.n:
            continue
        if width is None:
            width = s.dim
        elif s.dim != width:
            raise MixsupError(f"features {s.dim} wide where the encoder's (and the other "
                              f"slides') are {width} wide: another encoder's features", fix,
                              s.path)
    if width is None:
        raise MixsupError("no slide has features", "check that the slides have tissue",
                          stores[0].path.parent if stores else None)
    return width


def claim_folder(out: Path, fp: dict[str, Any]) -> None:
    """Make ``out`` this fingerprint's folder, or refuse when it holds other features."""
    if check_claim(out, fp):
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / INDEX, {"id": fingerprint_id(fp), "fingerprint": fp})


def check_claim(out: Path, fp: dict[str, Any]) -> bool:
    """Whether ``out`` is this fingerprint's folder already; refuses (writing nothing) when
    it holds other features."""
    index = out / INDEX
    if index.is_file():
        held = read_index(out)
        if not _same(held, fp):
            raise MixsupError(f"this folder holds features of another encoder or tiling "
                              f"({_encoder_name(held)}); features are never mixed",
                              FOLDER_FIX, out)
        return True
    if out.is_dir() and any(out.glob("*.zarr")):
        raise MixsupError("this folder holds feature stores without features.json",
                          FOLDER_FIX, out)
    if out.is_dir() and any(out.glob("*.h5")):
        raise MixsupError("this folder holds .h5 files (TRIDENT's or CLAM's features?), not "
                          "mixsup's", "to train on them set abmil.features_format=trident; "
                          "otherwise " + FOLDER_FIX, out)
    return False


FOLDER_FIX = ("name another folder for these features (`mixsup features --out`, or "
              "abmil.features for training): one folder per encoder")


def read_index(folder: Path) -> object:
    """``features.json`` as parsed (a user may have edited it: checked by the callers)."""
    return parse_json(read_text(folder / INDEX, INDEX), folder / INDEX, INDEX)


def _same(held: object, fp: dict[str, Any]) -> bool:
    return isinstance(held, dict) and held.get("id") == fingerprint_id(fp)


def holds(folder: Path, fp: dict[str, Any]) -> bool:
    """Whether ``folder`` is this fingerprint's feature folder."""
    return (folder / INDEX).is_file() and _same(read_index(folder), fp)


def _encoder_name(held: object) -> str:
    fp = held.get("fingerprint") if isinstance(held, dict) else None
    enc = fp.get("encoder") if isinstance(fp, dict) else None
    name = enc.get("encoder") if isinstance(enc, dict) else None
    return name if isinstance(name, str) else "unknown"


def store_path(out: Path, slide_id: str) -> Path:
    return out / f"{slide_id}.zarr"


def open_features(path: Path, key: str | None = None,
                  coords: np.ndarray | None = None) -> SlideFeatures | None:
    """A slide's finished store by reference (checked by its attributes, array shapes and
    dtypes and, given the tiling's ``coords``, its patches; the features are read later), or
    None when absent or made from other tiles or by another version (then it is computed
    again). A store of these tiles that does not fit together is a ``MixsupError`` naming it."""
    if not os.path.lexists(path):
        return None
    with damaged_store(path):
        group = open_store(path)
        attrs = dict(group.attrs)
        if attrs.get("version") != FEATURES_VERSION or (key is not None
                                                        and attrs.get("key") != key):
            return None
        feats, stored = cast(Any, group["features"]), cast(Any, group["coords"])
        n = attrs.get("n_patches")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n_patches is {n!r}, not a count")
        if len(feats.shape) != 2 or feats.shape[0] != n or tuple(stored.shape) != (n, 2):
            raise ValueError(f"arrays of shapes features {tuple(feats.shape)}, coords "
                             f"{tuple(stored.shape)} for {n} patches")
        if feats.shape[1] < 1 or feats.dtype.kind != "f" or stored.dtype.kind not in "iu":
            raise ValueError(f"features of width {feats.shape[1]} and dtype {feats.dtype}, "
                             f"coords of dtype {stored.dtype}")
        if coords is not None and not np.array_equal(np.asarray(stored[:]), coords):
            raise ValueError(f"its {n} patches are not the tiling's {len(coords)}")
    return SlideFeatures(path, n, int(feats.shape[1]))


def _published(path: Path, key: str | None) -> bool:
    """Whether a finished store of these tiles is at ``path`` (a damaged one is not)."""
    try:
        return open_features(path, key) is not None
    except MixsupError:
        return False


class FeatureSink:
    """One slide's features, gathered in memory (N x D, small beside its pixels) and written
    atomically by ``finish``."""

    def __init__(self, path: Path, coords: np.ndarray, attrs: dict[str, Any]) -> None:
        self.path, self.coords, self.attrs = path, np.asarray(coords, np.int64), attrs
        self.blocks: dict[int, np.ndarray] = {}

    def write(self, feats: np.ndarray, offset: int) -> None:
        self.blocks[offset] = feats

    def finish(self) -> SlideFeatures:
        feats = (np.concatenate([self.blocks[k] for k in sorted(self.blocks)])
                 if self.blocks else np.zeros((0, int(self.attrs.get("dim", 0))), np.float32))
        write_store(self.path, feats, self.coords, self.attrs)
        return SlideFeatures(self.path, len(feats), int(feats.shape[1]))

    def abort(self) -> None:
        self.blocks.clear()


def write_store(path: Path, feats: np.ndarray, coords: np.ndarray,
                attrs: dict[str, Any]) -> None:
    """Publish a slide's store atomically. Where another process (a parallel run sharing the
    folder) has published the same slide's store meanwhile, its store stays and this one is
    dropped: both hold the same features."""
    if not np.isfinite(feats).all():
        raise MixsupError("the encoder gave non-finite features",
                          "check the encoder's weights and input normalisation", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        group = new_group(tmp / "g.zarr")
        group.create_array("features", data=feats,
                           chunks=(max(1, min(len(feats), 1024)), max(1, feats.shape[1])))
        group.create_array("coords", data=np.asarray(coords, np.int64).reshape(-1, 2))
        group.attrs.update({**attrs, "version": FEATURES_VERSION, "n_patches": len(feats),
                            "dtype": str(feats.dtype)})
        if _published(path, attrs.get("key")):
            return
        if path.exists():  # a stale or broken store: set aside, then removed
            os.replace(path, tmp / "old")
        try:
            os.replace(tmp / "g.zarr", path)
        except OSError:
            if not _published(path, attrs.get("key")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embed_slides(encoder: torch.nn.Module, sources: list[SlideSource],
                 jobs: list[tuple[int, np.ndarray]], patch_size: int, mpp: float,
                 settings: InferSettings, open_sink: Any, progress: bool = False,
                 desc: str = "features") -> Iterator[tuple[int, Any]]:
    """Yield (slide index, ``sink.finish()``) for each job (slide index, level-0 coords): the
    encoder's embedding of every patch, through the same loader as ``map_slides``."""
    encoder.eval()
    net = inference_model(encoder, settings, patch_size)
    router = Router(jobs, 1, open_sink)
    yield from router.empty()
    n = sum(router.sizes)
    if not n:
        return
    batches, loader = patch_batches(sources, jobs, router.sizes, patch_size, mpp, settings)
    bar = progress_bar(total=n, desc=desc, unit="patch", disable=not progress)
    try:
        with torch.inference_mode():
            for rows, batch in zip(batches, loader, strict=True):
                with autocast(settings.device, settings.amp):
                    out = net(to_input(batch, settings.device, settings.channels_last))
                # float16 stays float16 on disk; bfloat16, which zarr lacks, becomes float32
                # (float16 could overflow its range)
                half = out.dtype == torch.float16
                feats = out.to(torch.float16 if half else torch.float32).cpu().numpy()
                yield from router.feed(rows.start, feats)
                bar.update(len(feats))
    except BaseException:
        router.abort()
        raise
    finally:
        bar.close()


def extract_features(slides: SlideSet, which: list[int], cfg: Config, spec: EncoderSpec,
                     out: Path, device: torch.device, progress: bool = True,
                     dist: Dist = SINGLE) -> dict[int, SlideFeatures]:
    """The features of ``slides``' ``which`` slides in ``out``: reused where a finished store
    of the same tiles exists, else computed (under torchrun each rank computes a shard)."""
    from mixsup.models.factory import build_embedder, embedding_dim

    fp = fingerprint(cfg, spec)
    if dist.main:
        claim_folder(out, fp)
    dist.barrier()
    done: dict[int, SlideFeatures] = {}
    todo = []
    for i in which:
        t = slides.tilesets[i]
        got = open_features(store_path(out, slides.records[i].slide_id), t.key, t.coords)
        if got is None:
            todo.append(i)
        else:
            done[i] = got
    todo = dist.all_gather(todo)[0]  # rank 0's view: every rank takes the same branches
    if todo:
        encoder = build_embedder(spec).to(device)
        settings = InferSettings.from_config(cfg, device, out / "graphs")
        t0 = slides.tilesets[todo[0]]

        def sink(i: int, _n: int, _m: int) -> FeatureSink:
            t = slides.tilesets[i]
            return FeatureSink(store_path(out, slides.records[i].slide_id), t.coords,
                               {"key": t.key, "slide_id": slides.records[i].slide_id,
                                "fingerprint": fingerprint_id(fp),
                                "written_by_rank": dist.rank,
                                "dim": embedding_dim(encoder)})

        mine = dist.shard([(i, slides.tilesets[i].coords) for i in todo])
        for _ in embed_slides(encoder, slides.sources, mine, t0.patch_size, t0.mpp, settings,
                              sink, progress, "features"):
            pass
    dist.barrier()
    for i in todo:
        got = open_features(store_path(out, slides.records[i].slide_id),
                            slides.tilesets[i].key, slides.tilesets[i].coords)
        if got is None:
            raise MixsupError(f"the features of {slides.records[i].slide_id} were not "
                              "written", "re-run the command to resume", out)
        done[i] = got
    return done


@dataclass(frozen=True)
class FeaturesResult:
    out: Path
    slides: int
    patches: int
    dim: int
    skipped: dict[str, str]


def extract_dataset(data_dir: str | Path, out: str | Path, cfg: Config,
                    splits: tuple[str, ...] = ("train", "val", "test"), progress: bool = True,
                    dist: Dist = SINGLE) -> FeaturesResult:
    """``mixsup features``: tile the dataset's ``splits`` and store ``cfg.abmil``'s encoder
    features of every tissue patch in ``out`` (one folder per encoder; resumes)."""
    from mixsup.dataset.tiles import slide_set
    from mixsup.labels.table import load_dataset
    from mixsup.models.factory import build_embedder
    from mixsup.runtime.device import pick_device

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MixsupError("--out is a file", "name a folder for the features", out)
    if cfg.stain.normalise != "none":
        raise MixsupError(f"stain.normalise={cfg.stain.normalise} is not available for "
                          "cached features (attention MIL)", "set stain.normalise=none")
    data = load_dataset(data_dir)
    if dist.main:  # refused before any tiling
        fp = fingerprint(cfg, cfg.abmil)
        if not holds(out, fp):  # an unknown encoder or unusable weights claim nothing
            build_embedder(cfg.abmil)
        claim_folder(out, fp)
    slides = slide_set(data, splits, cfg, out / "tiles", False, progress, dist)
    device = pick_device(cfg.runtime, dist.local_rank)
    got = extract_features(slides, list(range(len(slides.records))), cfg, cfg.abmil, out,
                           device, progress, dist)
    return FeaturesResult(out, len(got), sum(f.n for f in got.values()),
                          max((f.dim for f in got.values() if f.n), default=0),
                          dict(slides.skipped))

"""The reference stain of a run (``stain.normalise``): fitted once on tissue patches of the
training slides (or of ``stain.reference_slide``), written to ``<folder>/stain.json`` and read
back on a resume, so that every round, θ2 and the bundle see one reference."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from mixsup.config import Config
from mixsup.dataset.tiles import SlideSet
from mixsup.errors import MixsupError
from mixsup.slides.pool import SlidePool
from mixsup.slides.stain_normalise import (
    MAX_FIT_PIXELS,
    MIN_TISSUE_SHARE,
    StainReference,
    fit_pixels,
    fit_reference,
    stained_share,
)
from mixsup.storage.atomic import write_json
from mixsup.storage.user_files import parse_json, read_text

log = logging.getLogger(__name__)
STAIN_FILE = "stain.json"
_SAMPLE_SEED = 7  # the reference is a property of the data, the same for every run seed


def run_stain_reference(cfg: Config, slides: SlideSet, folder: Path,
                        write: bool = True) -> StainReference | None:
    """The run's reference stain: ``folder/stain.json`` where an earlier start wrote it,
    else fitted on ``slides`` (and written when ``write``); None when normalisation is off."""
    method = cfg.stain.normalise
    if method == "none":
        return None
    if (folder / STAIN_FILE).is_file():
        return saved_stain_reference(cfg, folder)
    ref = fit_run_reference(cfg, slides)
    if write:
        write_json(folder / STAIN_FILE, ref.record())
    log.info("stain reference (%s) fitted on %d patches of %s", method,
             cfg.stain.reference_patches, cfg.stain.reference_slide or "the training slides")
    return ref


def saved_stain_reference(cfg: Config, folder: Path) -> StainReference | None:
    """The reference a run fitted (``folder/stain.json``), for what reads its slides again
    after training; None when normalisation is off."""
    method = cfg.stain.normalise
    if method == "none":
        return None
    path = folder / STAIN_FILE
    if not path.is_file():
        raise MixsupError(f"the run normalises stains ({method}) but its {STAIN_FILE} is "
                          "missing", "restore the file, or train again (`mixsup train "
                          "--resume` fits it anew only before any model exists)", path)
    ref = StainReference.from_record(parse_json(read_text(path, "stain reference"), path,
                                                "stain reference"), path)
    if ref.method != method:
        raise MixsupError(f"{STAIN_FILE} holds a {ref.method} reference, the config asks "
                          f"for {method}", "train into a new folder, or restore the config "
                          "this run started with", path)
    return ref


def fit_run_reference(cfg: Config, slides: SlideSet) -> StainReference:
    """A ``cfg.stain.normalise`` reference fitted on a seeded sample of the tissue patches of
    ``slides`` (of ``stain.reference_slide`` alone where set): patches at least half tissue,
    where there are any."""
    method = cfg.stain.normalise
    if method == "none":
        raise ValueError("stain.normalise is none")
    ids = [r.slide_id for r in slides.records]
    chosen = list(range(len(ids)))
    if cfg.stain.reference_slide is not None:
        if cfg.stain.reference_slide not in ids:
            raise MixsupError(f"stain.reference_slide {cfg.stain.reference_slide!r} is not a "
                              "training slide with tissue", "name a slide_id of split=train "
                              "(slides.csv), or unset it to fit on all training slides")
        chosen = [ids.index(cfg.stain.reference_slide)]
    refs = np.array([(i, j) for i in chosen for j in range(len(slides.tilesets[i]))],
                    dtype=np.int64).reshape(-1, 2)
    mostly = np.array([slides.tilesets[i].tissue[j] >= 0.5 for i, j in refs], dtype=bool)
    if mostly.any():
        refs = refs[mostly]
    rng = np.random.default_rng(_SAMPLE_SEED)
    pick = refs[rng.permutation(len(refs))[:cfg.stain.reference_patches]]
    pool = SlidePool([replace(s, stain=None) for s in slides.sources])
    t, budget = cfg.tiling, max(1, MAX_FIT_PIXELS // max(1, len(pick)))
    patches = []
    try:  # each patch kept as a pixel sample: 4096 patches of 512 px would be 3 GB
        for i, j in pick:
            x, y = (int(v) for v in slides.tilesets[i].coords[j])
            patch = pool.read(int(i), x, y, t.patch_size, t.mpp)
            if stained_share(patch) >= MIN_TISSUE_SHARE:
                patches.append(fit_pixels(patch, budget, rng))
    finally:
        pool.close()
    try:
        return fit_reference(method, patches)
    except ValueError as exc:
        raise MixsupError(f"no stain reference could be fitted: {exc}",
                          "set stain.reference_slide to a slide with plenty of tissue, raise "
                          "stain.reference_patches, or set stain.normalise=none") from exc


def with_stain(slides: SlideSet, stain: StainReference | None) -> SlideSet:
    """``slides`` whose patches are read on ``stain`` (unchanged when None)."""
    if stain is None:
        return slides
    return replace(slides, sources=[replace(s, stain=stain) for s in slides.sources])

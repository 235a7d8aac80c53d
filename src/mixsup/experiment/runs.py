"""The experiment's runs: each variant at each seed trained (or resumed) in its own folder,
then its test slides predicted and evaluated; one after the other, or in child processes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mixsup.config import Config
from mixsup.config.run import saved_config
from mixsup.dataset.tiles import tile_dataset, tiling_fingerprint
from mixsup.errors import MixsupError
from mixsup.evaluate.metrics import SlideMetrics
from mixsup.evaluate.report import Evaluation, evaluate
from mixsup.experiment.cluster import LOCAL, Launcher, run_as_jobs
from mixsup.labels.table import Dataset, load_dataset
from mixsup.predict.engine import collect_inputs, dataset_outlines, predict
from mixsup.runtime.parallel_runs import run_in_processes
from mixsup.runtime.progress import phase
from mixsup.storage.atomic import write_text
from mixsup.train.api import train
from mixsup.train.reuse import seed_round0, seed_rounds, seed_tiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """One variant at one seed: trained, its test split predicted and evaluated."""

    variant: str
    seed: int
    run: Path
    pred: Path  # its predictions on the experiment's test slides
    train_seconds: float
    selected_round: int | None  # None: the mode has no rounds (image)
    selection_rule: str
    evaluation: Evaluation
    theta1: SlideMetrics | None = None  # θ1's own slide score (top-K mean max probability)


@dataclass(frozen=True)
class HeldOut:
    """The slides every run is scored on: the training dataset's test split, or another
    dataset's (an external test set), whose predictions, reports and tables get their own
    folders, so that the training dataset's own stay as they are."""

    data: Path
    slides: list[tuple[str, Path]]
    suffix: str = ""  # "" for the training dataset's test split, else "-<its folder name>"

    @classmethod
    def of(cls, data_dir: Path, test_data: str | Path | None) -> HeldOut:
        if test_data is None or Path(test_data).resolve() == data_dir.resolve():
            return cls(data_dir, collect_inputs([], str(data_dir), "test"))
        other = Path(test_data).resolve()
        test = [r for r in load_dataset(other).slides if r.split == "test"]
        if {r.label for r in test} - {None} != {0, 1}:
            raise MixsupError("the --test-data dataset needs labelled test slides of both "
                              "classes", "mark its held-out slides split=test, with labels 0 "
                              "and 1 (`mixsup synth --split-shares 0,0,1` writes such a "
                              "dataset)", other / "slides.csv")
        return cls(other, collect_inputs([], str(other), "test"), f"-{other.name}")

    @property
    def labels(self) -> Path:
        return self.data / "slides.csv"

    def tables(self, out: Path) -> Path:
        """Where the experiment's tables and figures about these slides go."""
        return out / f"test{self.suffix}" if self.suffix else out

    def note(self) -> str:
        where = ("the training dataset's test split" if not self.suffix else
                 f"the test split of {self.data}, an external test set (each run's "
                 f"pred{self.suffix}/)")
        return f"Test slides: {len(self.slides)}, {where}."


@dataclass(frozen=True)
class Job:
    """One run of the grid: a variant at a seed, in its own folder."""

    variant: Variant
    seed: int
    cfg: Config
    run: Path
    suffix: str = ""  # its test set's (``HeldOut.suffix``)
    stage1_from: Path | None = None  # a run whose θ1 rounds this one may reuse (``reuse``)
    round0_from: Path | None = None  # the other segmenter mode's run: its round 0 is this one's
    tiles_from: Path | None = None  # the experiment's tilings of the training slides
    test_tiles_from: Path | None = None  # ... and of its test slides (``share_tilings``)

    @property
    def pred(self) -> Path:
        return self.run / f"pred{self.suffix}"

    @property
    def report(self) -> Path:
        return self.run / f"report{self.suffix}"

    @property
    def name(self) -> str:
        return f"{self.variant.name}, seed {self.seed}"

    @property
    def log(self) -> Path:
        """Where the run logs when it runs in a child process."""
        return self.run / "experiment.log"


def share_tilings(data_dir: Path, held_out: HeldOut, cfgs: list[Config], out: Path,
                  progress: bool) -> dict[str, tuple[Path, Path]]:
    """Each slide tiled once per experiment and tiling setting, for every run to start from:
    fingerprint -> (the training dataset's tilings, the test slides' tilings)."""
    shared: dict[str, tuple[Path, Path]] = {}
    data = load_dataset(data_dir)
    for cfg in cfgs:
        fp = tiling_fingerprint(cfg)
        if fp in shared:
            continue
        own = out / "tiles" / fp
        with phase(out, "tiling"):
            tile_dataset(data, cfg, own, progress=progress)
            test = own
            if held_out.suffix:
                test = out / "tiles" / f"{fp}{held_out.suffix}"
                other = load_dataset(held_out.data)
                tile_dataset(Dataset(other.root, tuple(other.split("test"))), cfg, test,
                             progress=progress)
        shared[fp] = (own, test)
    return shared


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("=", "")


def run_grid(grid: list[Job], data_dir: Path, held_out: HeldOut, workers: int,
             progress: bool, launcher: Launcher = LOCAL,
             jobs_folder: Path | None = None) -> dict[str, list[RunResult]]:
    """Every job's result by variant, in the grid's order whatever order they finish in.
    ``launcher``: local processes (``workers`` at once, or in this process for 1) or cluster
    jobs (``experiment.cluster``, their logs in ``jobs_folder``). Runs that start from another
    run's rounds are started after the others, so that those rounds exist."""
    fn = partial(run_one, data_dir=data_dir, held_out=held_out, progress=False)
    waves = grid_waves(grid)

    def wave(indices: list[int]) -> Iterator[tuple[int, RunResult]]:
        jobs = [grid[i] for i in indices]
        if launcher.cluster:
            return run_as_jobs(fn, jobs, launcher, jobs_folder or Path("."),
                               name=lambda j: j.name)
        return run_in_processes(fn, jobs, min(workers, len(jobs)), name=lambda j: j.name,
                                log_path=lambda j: j.log)

    finished: Iterator[tuple[int, RunResult]]
    if workers == 1 and not launcher.cluster:
        finished = ((i, run_one(job, data_dir, held_out, progress))
                    for i, job in enumerate(grid))
    else:
        finished = ((indices[k], r) for indices in waves if indices
                    for k, r in wave(indices))
    done: dict[int, RunResult] = {}
    for i, result in finished:
        done[i] = result
        log.info("experiment: [%d/%d] %s finished: AUC %.3f, trained in %.0f s%s",
                 len(done), len(grid), grid[i].name, result.evaluation.overall.auc,
                 result.train_seconds, f" (log: {grid[i].log})" if workers > 1 else "")
    results: dict[str, list[RunResult]] = {}
    for i in sorted(done):
        results.setdefault(done[i].variant, []).append(done[i])
    return results


def grid_waves(grid: list[Job]) -> list[list[int]]:
    """The grid's job indices in waves: a job that copies another run's rounds comes in a
    wave after that run's (a pixel stage-2 variant copies the plain pixel run, which copies
    mixed's round 0: three waves)."""
    by_run = {j.run: i for i, j in enumerate(grid)}
    depth: dict[int, int] = {}

    def depth_of(i: int, seen: frozenset[int] = frozenset()) -> int:
        if i not in depth:
            sources = [by_run.get(p) for p in (grid[i].stage1_from, grid[i].round0_from)
                       if p is not None]
            depth[i] = 1 + max((depth_of(s, seen | {i}) for s in sources
                                if s is not None and s not in seen | {i}), default=-1)
        return depth[i]

    levels = [depth_of(i) for i in range(len(grid))]
    return [[i for i, d in enumerate(levels) if d == level] for level in range(max(levels) + 1)]


def check_same_settings(train_dir: Path, cfg: Config) -> None:
    """A run folder already there is resumed only if it was started with ``cfg`` (the device
    and loader settings aside): an experiment rerun into the same --out with another --set
    would otherwise report the old runs under the new settings."""
    stored = saved_config(train_dir)
    if stored is None:
        return
    old, new = stored.model_dump(mode="json"), cfg.model_dump(mode="json")
    changed = [k for k in new if k != "runtime" and old.get(k) != new[k]]
    if changed:
        raise MixsupError(f"this run was trained with other {', '.join(changed)} settings "
                          "than the experiment now asks for", "use a new --out for the new "
                          "settings, or delete this run folder to train it again",
                          train_dir / "config.yaml")


def run_one(job: Job, data_dir: Path, held_out: HeldOut, progress: bool) -> RunResult:
    """Train (or resume) one run, predict the test slides with it and evaluate."""
    v, seed, cfg, run = job.variant, job.seed, job.cfg, job.run
    log.info("experiment: %s, seed %d", v.name, seed)
    if job.stage1_from is not None:
        seed_rounds(job.stage1_from / "train", run / "train", cfg)
    if job.round0_from is not None:
        seed_round0(job.round0_from / "train", run / "train", cfg)
    if job.tiles_from is not None:
        seed_tiles(job.tiles_from, run / "train" / "tiles")
    if job.test_tiles_from is not None:
        seed_tiles(job.test_tiles_from, job.pred / "tiles")
    t0 = time.perf_counter()
    trained = train(data_dir, run / "train", cfg, mode=v.mode,
                    resume=(run / "train" / "config.yaml").is_file(), progress=progress)
    seconds = _train_seconds(run / "train", time.perf_counter() - t0)
    with phase(run, f"predict{job.suffix}"):
        predict(run / "train", held_out.slides, job.pred, progress=progress,
                outlines=dataset_outlines(held_out.data))
    with phase(run, f"evaluate{job.suffix}"):
        ev = evaluate(job.pred / "predictions.csv", held_out.labels, job.report)
    s = trained.summary
    return RunResult(v.name, seed, run, job.pred, seconds, s.selected_round if s else None,
                     s.selection.rule if s and s.selection else "", ev)


def _train_seconds(train_dir: Path, measured: float) -> float:
    """Wall time of the training, kept beside the run so that a resumed experiment reports
    the time of the run that did the work, not of the reload."""
    path = train_dir / "wall_seconds.json"
    if path.is_file():
        return float(json.loads(path.read_text())["seconds"])
    write_text(path, json.dumps({"seconds": round(measured, 1)}))
    return measured

"""An experiment's runs as cluster jobs: each run is one Slurm job submitted with submitit
(or, for a try on one machine, submitit's local executor), the tables gathered here when they
have finished. A run already finished is resumed (it reloads and predicts), so that the same
command after a failure or a timeout only redoes what is missing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from mixsup.errors import MixsupError

J = TypeVar("J")
R = TypeVar("R")
log = logging.getLogger(__name__)
LAUNCHERS = ("processes", "slurm", "submitit-local")
POLL_S = 5.0


@dataclass(frozen=True)
class Launcher:
    """Where the runs of an experiment go: ``processes`` (``--jobs N`` local processes, the
    default), ``slurm`` (a job per run) or ``submitit-local`` (the same jobs on this
    machine, for trying a cluster setup)."""

    kind: Literal["processes", "slurm", "submitit-local"] = "processes"
    partition: str | None = None
    minutes: int = 240
    cpus: int = 8
    gpus: int = 0
    mem_gb: int = 32

    @property
    def cluster(self) -> bool:
        return self.kind != "processes"


LOCAL = Launcher()


def check_launcher(launcher: Launcher) -> None:
    """Refuse, before any work, a launcher that cannot start."""
    if not launcher.cluster:
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise MixsupError(f"--launcher {launcher.kind} needs the submitit package",
                          "pip install 'mixsup[cluster]' (or pip install submitit)") from None
    if launcher.kind == "slurm" and not launcher.partition:
        raise MixsupError("--launcher slurm needs a partition", "add --partition NAME")


def executor(launcher: Launcher, folder: Path) -> Any:
    """A submitit executor for ``launcher``, its logs and pickles under ``folder``."""
    check_launcher(launcher)
    import submitit

    ex = submitit.AutoExecutor(folder=folder, cluster="local" if launcher.kind ==
                               "submitit-local" else "slurm")
    params: dict[str, Any] = {"timeout_min": launcher.minutes,
                              "cpus_per_task": launcher.cpus, "name": "mixsup"}
    if launcher.gpus:
        params["gpus_per_node"] = launcher.gpus
    if launcher.kind == "slurm":
        params.update(slurm_partition=launcher.partition, mem_gb=launcher.mem_gb)
    ex.update_parameters(**params)
    return ex


def run_as_jobs(fn: Callable[[J], R], jobs: Sequence[J], launcher: Launcher, folder: Path,
                name: Callable[[J], str]) -> Iterator[tuple[int, R]]:
    """``(index, fn(job))`` for each of ``jobs`` as its cluster job finishes. A failed job
    stops the gathering with one error naming the run and its log; the others go on."""
    ex = executor(launcher, folder)
    submitted: list[Any] = []
    try:
        for job in jobs:
            submitted.append(ex.submit(fn, job))
    except Exception as exc:
        _cancel(submitted)
        raise MixsupError(f"submitting run {name(jobs[len(submitted)])} failed: "
                          f"{_last_line(exc)}", "check --partition and the other job "
                          "settings against your cluster (sinfo)", folder) from exc
    log.info("%d run(s) submitted (%s): job ids %s; logs in %s", len(jobs), launcher.kind,
             ", ".join(str(s.job_id) for s in submitted), folder)
    pending = dict(enumerate(submitted))
    try:
        yield from _gather(pending, jobs, name)
    except BaseException:
        # a failed run, or the command stopped: no job may go on writing into a run folder
        # that the next command resumes
        _cancel(list(pending.values()))
        raise


def _gather(pending: dict[int, Any], jobs: Sequence[J], name: Callable[[J], str]
            ) -> Iterator[tuple[int, R]]:
    while pending:
        for i, sub in list(pending.items()):
            if not sub.done():
                continue
            del pending[i]
            try:
                result = sub.result()
            except Exception as exc:
                raise MixsupError(
                    f"run {name(jobs[i])} failed as job {sub.job_id}: {_last_line(exc)}; the "
                    "jobs still running were cancelled", "read its log, fix the cause and "
                    "re-run the same command: finished runs are kept and unfinished ones "
                    "resume", Path(sub.paths.stderr)) from exc
            yield i, result
        if pending:
            time.sleep(POLL_S)


def _cancel(jobs: list[Any]) -> None:
    for job in jobs:
        try:
            if not job.done():
                job.cancel(check=False)
        except Exception as exc:  # cancelling is best effort; the error that led here matters
            log.warning("could not cancel job %s: %s", getattr(job, "job_id", "?"), exc)


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else repr(exc)

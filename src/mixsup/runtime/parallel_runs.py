"""Independent runs in N parallel processes, the CPU cores split between them.

Each child is a fresh ``spawn`` interpreter that limits its threads to its share of the cores
before it imports torch (this module imports no torch: the limit is set by the pool's
initializer, before the job's function and its imports are unpickled) and logs to the run's
own file. A failed run stops the scheduling of new ones; the runs in progress finish, so that
nothing done is lost, and the error names the failed run and its log. A child dies with its
parent: a killed command leaves no runs training on as orphans.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TypeVar

from mixsup.errors import MixsupError

J = TypeVar("J")
R = TypeVar("R")
log = logging.getLogger(__name__)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_process(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or cpu_cores()) // workers)


def run_in_processes(fn: Callable[[J], R], jobs: Sequence[J], workers: int,
                     name: Callable[[J], str], log_path: Callable[[J], Path]
                     ) -> Iterator[tuple[int, R]]:
    """``(index, fn(job))`` for each of ``jobs`` as it finishes, ``workers`` at a time.

    ``fn`` must be picklable (a module-level function, or a ``functools.partial`` of one).
    """
    # The workers are forked in submit(), by the thread that iterates this generator, and
    # their parent-death signal fires when that thread ends: iterate it from a thread that
    # outlives the pool (the main one), and do not set max_tasks_per_child, whose
    # replacement workers the pool's own thread would fork.
    threads = threads_per_process(workers)
    log.info("%d run(s) in %d processes of %d thread(s); each run logs to its own file",
             len(jobs), workers, threads)
    start = time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_child, initargs=(threads, os.getpid())) as pool:
        futures: dict[Future[R], int] = {
            pool.submit(_child, fn, job, log_path(job), threads): i for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise _died(jobs, futures, name, log_path, start) from None
                except Exception as exc:
                    raise MixsupError(
                        f"run {name(jobs[i])} failed: {exc}",
                        "read its log, fix the cause and re-run the same command: finished runs "
                        "are kept and unfinished ones resume", log_path(jobs[i])) from exc
                yield i, result
        finally:
            pending = [f for f in futures if f.cancel()]
            if pending or any(not f.done() for f in futures):
                log.warning("waiting for the runs in progress to finish (%d not started)",
                            len(pending))


def _died(jobs: Sequence[J], futures: dict[Future[R], int], name: Callable[[J], str],
          log_path: Callable[[J], Path], start: float) -> MixsupError:
    """A child process was killed (by the kernel's out-of-memory killer, or a signal): the
    pool cannot tell which run it held, so name the unfinished runs that had started."""
    unfinished = [jobs[i] for f, i in futures.items()
                  if not f.done() or f.exception() is not None]
    started = [j for j in unfinished
               if log_path(j).is_file() and log_path(j).stat().st_mtime >= start]
    named = ", ".join(f"{name(j)} (log: {log_path(j)})" for j in started or unfinished)
    return MixsupError(f"a run's process died (killed, or out of memory?) while running one of: "
                       f"{named}", "re-run with fewer --jobs; finished runs are kept")


def _init_child(threads: int, parent: int) -> None:
    """The pool's initializer: runs in each child before torch is imported."""
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies. A parent killed by a signal runs no cleanup,
    so without this its runs would go on training as orphans, holding the cores."""
    if not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("this run will not stop with its parent: prctl failed (%s)",
                    os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _child(fn: Callable[[J], R], job: J, log_file: Path, threads: int) -> R:
    import torch

    torch.set_num_threads(threads)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        return fn(job)
    except BaseException:
        log.exception("the run failed")
        raise
    finally:
        handler.close()

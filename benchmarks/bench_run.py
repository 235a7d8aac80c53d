"""One `small` mixed run end to end (train, then predict the test split), on PyTorch inference
(``runtime.backend=torch``) and on the default backend (auto), in the same invocation, on the
same generated PCam mosaic and seed. Prints the wall time per phase, both test AUCs, and last
``ratio_run X`` (default / torch, whole run).

    python benchmarks/bench_run.py [--slides 20] [--size 3072] [--preset small] [--set K=V ...]

``--set`` applies to both runs (e.g. fewer training steps where the machine is slow: the
training phases do not depend on the backend, the inference phases do).

Needs ../shared/data/pcam beside the checkout. Not a test: it trains two models (minutes).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from mixsup.config import load_config
from mixsup.labels.table import load_dataset
from mixsup.predict.engine import collect_inputs, predict
from mixsup.train import api, rounds, stage2
from mixsup.train.api import train

PCAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "pcam"
PHASES = ("θ1 fit", "E-step", "θ2 fit", "val", "predict", "other")


class PhaseClock:
    """Exclusive wall time per phase: a phase nested in another is not counted twice."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[list[float]] = []  # [start, time spent in nested phases]

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.stack.append([time.perf_counter(), 0.0])
        try:
            yield
        finally:
            start, nested = self.stack.pop()
            spent = time.perf_counter() - start
            self.seconds[name] += spent - nested
            if self.stack:
                self.stack[-1][1] += spent

    def wrap(self, module: Any, attr: str, name: str) -> None:
        inner: Callable[..., Any] = getattr(module, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return inner(*args, **kwargs)

        setattr(module, attr, timed)


def one_run(data: Path, out: Path, preset: str, overrides: list[str],
            backend: str) -> tuple[dict[str, float], float, list[str]]:
    clock = PhaseClock()
    originals = [(m, a, getattr(m, a)) for m, a, _ in HOOKS]
    for module, attr, name in HOOKS:
        clock.wrap(module, attr, name)
    cfg = load_config(preset, overrides=[*overrides, f"runtime.backend={backend}"])
    start = time.perf_counter()
    try:
        summary = train(data, out / "run", cfg, progress=False).summary
        with clock.phase("predict"):
            result = predict(out / "run", collect_inputs([], str(data), "test"), out / "pred",
                             progress=False)
    finally:
        for module, attr, fn in originals:
            setattr(module, attr, fn)
    total = time.perf_counter() - start
    clock.seconds["other"] = total - sum(clock.seconds.values())
    labels = {r.slide_id: r.label for r in load_dataset(data).slides if r.split == "test"}
    scores = {r.slide_id: r.probability for r in result.rows}
    ids = sorted(scores)
    auc = float(roc_auc_score([labels[i] for i in ids], [scores[i] for i in ids]))
    assert summary is not None
    rows = [f"round {r.round}: θ1 loss {r.final_loss:.6f}, θ2 train loss {r.stage2_train_loss}, "
            f"pools {r.pools}" for r in summary.rounds]
    return {**clock.seconds, "total": total}, auc, rows


HOOKS = [(rounds, "fit", "θ1 fit"), (rounds, "e_step", "E-step"),
         (api, "run_stage2", "θ2 fit"), (stage2, "_validate", "val")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slides", type=int, default=20)
    ap.add_argument("--size", type=int, default=3072)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not PCAM.is_dir():
        raise SystemExit(f"needs {PCAM} (../shared beside the checkout)")
    from mixsup.synth.pcam import make_pcam

    data = Path(tempfile.gettempdir()) / f"mixsup-bench-run-pcam-{args.slides}-{args.size}"
    if not (data / "slides.csv").is_file():
        print(f"generating {args.slides} PCam slides of {args.size} px in {data}...", flush=True)
        make_pcam(data, PCAM, n_slides=args.slides, size=args.size, seed=25, progress=False)
    times, aucs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("torch", "auto"):
            times[backend], aucs[backend], rows = one_run(
                data, (args.out or Path(tmp)) / backend, args.preset, args.set, backend)
            print(f"{backend}: {times[backend]['total']:.0f} s, test AUC "
                  f"{aucs[backend]:.4f}", *rows, sep="\n  ", flush=True)
    print(f"preset={args.preset} slides={args.slides} size={args.size} set={args.set}")
    print(f"{'phase':<10} {'torch s':>9} {'auto s':>9} {'ratio':>7}")
    for name in (*PHASES, "total"):
        a, b = times["torch"].get(name, 0.0), times["auto"].get(name, 0.0)
        print(f"{name:<10} {a:9.1f} {b:9.1f} {b / a if a else float('nan'):7.2f}")
    print(f"test AUC torch {aucs['torch']:.4f} auto {aucs['auto']:.4f} "
          f"|diff| {abs(aucs['torch'] - aucs['auto']):.4f}")
    print(f"ratio_run {times['auto']['total'] / times['torch']['total']:.2f}")


if __name__ == "__main__":
    main()

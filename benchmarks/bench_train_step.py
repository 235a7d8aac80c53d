"""One optimiser step of θ1 (the segmenter, pixel BCE) and θ2 (the classifier, one logit) on
the CPU, for the ways of running it that keep the numbers: the input in channels_last memory
(what the fit loops do today, the baseline), the input in NCHW memory, the weights converted to
channels_last too, and (``--compile``) ``torch.compile`` (inductor) of the baseline. The
variants take turns within each repeat, so drift in the machine's load hits them alike.

    OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py [--preset small] [--repeats 3]
        [--steps 6] [--compile]

Prints seconds per step per variant (median over repeats, with the range) and each variant's
ratio to the baseline (time / baseline time: below 1 is faster), and the largest difference
of the loss after the timed steps from the baseline's (the same seed and batches).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mixsup.config import load_config
from mixsup.models.factory import build_segmenter, build_theta2

Variant = tuple[str, bool, bool, bool]  # name, input channels_last, weights channels_last, compile
VARIANTS: tuple[Variant, ...] = (("input CL (today)", True, False, False),
                                 ("input NCHW", False, False, False),
                                 ("input + weights CL", True, True, False))
COMPILED: Variant = ("torch.compile", True, False, True)


class Runner:
    """A model, its optimiser and fixed batches: ``step`` does one training step."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                 variant: Variant) -> None:
        _, cl_input, cl_weights, compile_ = variant
        self.model = copy.deepcopy(model).train()
        if cl_weights:
            self.model.to(memory_format=torch.channels_last)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.model, dynamic=False) if compile_ else self.model)
        layout = torch.channels_last if cl_input else torch.contiguous_format
        self.x, self.y = x.contiguous(memory_format=layout), y
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.loss = float("nan")

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        out = self.forward(self.x)
        loss = F.binary_cross_entropy_with_logits(out.float().reshape(self.y.shape), self.y)
        loss.backward()
        self.opt.step()
        self.loss = loss.detach().item()


def bench(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
          variants: tuple[Variant, ...], repeats: int, steps: int) -> None:
    runners = {}
    for v in variants:
        torch.manual_seed(0)
        runners[v[0]] = r = Runner(model, x, y, v)
        t = time.perf_counter()
        r.step()  # warm-up (compilation, oneDNN primitive caches)
        print(f"{name}: {v[0]}: first step {time.perf_counter() - t:.1f} s", flush=True)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, r in runners.items():
            t = time.perf_counter()
            for _ in range(steps):
                r.step()
            times[k].append((time.perf_counter() - t) / steps)
    base = variants[0][0]
    base_med = statistics.median(times[base])
    for k, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base], strict=True)]
        print(f"{name}: {k:20s} {statistics.median(ts):6.3f} s/step "
              f"[{min(ts):.3f}-{max(ts):.3f}]  ratio {statistics.median(ts) / base_med:.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]  loss {runners[k].loss:.6f} "
              f"(|diff| {abs(runners[k].loss - runners[base].loss):.1e})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    cfg = load_config(args.preset)
    variants = VARIANTS + ((COMPILED,) if args.compile else ())
    size = cfg.tiling.patch_size
    print(f"cpu, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"preset {args.preset}, {size} px", flush=True)
    g = torch.Generator().manual_seed(0)
    b1 = cfg.stage1.batch_size
    x1 = torch.rand(b1, 3, size, size, generator=g)
    y1 = (torch.rand(b1, 1, size, size, generator=g) > 0.8).float()
    torch.manual_seed(0)
    theta1 = build_segmenter(cfg.model, load_weights=False)
    bench("θ1", theta1, x1, y1, variants, args.repeats, args.steps)
    b2 = cfg.stage2.slides_per_batch * cfg.stage2.top_k
    x2 = torch.rand(b2, 3, size, size, generator=g)
    y2 = (torch.rand(b2, generator=g) > 0.5).float()
    theta2 = build_theta2(cfg.model, cfg.stage2, load_weights=False)
    bench("θ2", theta2, x2, y2, variants, args.repeats, args.steps)


if __name__ == "__main__":
    main()

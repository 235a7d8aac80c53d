"""The epoch loop shared by θ1's initialisation and M-steps, with per-epoch checkpoints."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset

from mixsup.config import RuntimeConfig, TrainingConfig
from mixsup.config.run import RUN_FIX
from mixsup.errors import MixsupError
from mixsup.inference.patch_maps import make_loader
from mixsup.models.freeze import FROZEN
from mixsup.runtime.device import autocast, compiled, to_input, use_channels_last
from mixsup.runtime.dist import SINGLE, Dist
from mixsup.runtime.progress import progress_bar
from mixsup.storage.artefacts import load_checkpoint_into, save_checkpoint
from mixsup.storage.atomic import write_json
from mixsup.storage.user_files import own_file
from mixsup.train.loss import soft_bce
from mixsup.train.stain import hed_jitter

log = logging.getLogger(__name__)


class NonFiniteLoss(MixsupError):
    """A NaN or inf loss; the batch is saved for diagnosis."""


class TrainingSet(Protocol):
    """What ``fit`` needs from a training dataset besides indexing."""

    epoch: int  # set by ``fit`` before each epoch, for per-epoch augmentation seeds

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...

    def describe(self, indices: list[int]) -> list[Any]:
        """JSON-serialisable references to these items (slide and coordinates), so that a
        failing batch can be found again."""
        ...


class EpochSampler(Protocol):
    """Batches of dataset indices; rank-aware under torchrun."""

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[list[int]]: ...


LossFn = Callable[[torch.nn.Module, Any, torch.device, RuntimeConfig], torch.Tensor]


def segmenter_loss(model: torch.nn.Module, batch: Any, device: torch.device,
                   runtime: RuntimeConfig) -> torch.Tensor:
    img, target, valid = batch
    x = to_input(img, device, use_channels_last(runtime, device, training=True))
    with autocast(device, runtime.amp):
        logits = model(x)
    return soft_bce(logits[:, 0], target.to(device), valid.to(device))


def lr_at(step: int, total: int, base: float, cfg: TrainingConfig) -> float:
    """Linear warm-up over the first ``warmup_fraction`` of the steps, then cosine to 0
    (or constant)."""
    warm = round(cfg.warmup_fraction * total)
    if step < warm:
        return base * (step + 1) / warm
    if cfg.lr_schedule == "constant" or total <= warm:
        return base
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


def fit(model: torch.nn.Module, dataset: TrainingSet, sampler: EpochSampler, epochs: int,
        lr: float, weight_decay: float, runtime: RuntimeConfig, device: torch.device,
        ckpt_path: Path, loss_fn: LossFn = segmenter_loss,
        on_epoch: Callable[[int, float], None] | None = None,
        progress: bool = True, desc: str = "train", dist: Dist = SINGLE,
        training: TrainingConfig | None = None,
        before_epoch: Callable[[int], None] | None = None,
        optimizer_state: dict[str, Any] | None = None) -> list[float]:
    """Train for ``epochs``; resumes from ``ckpt_path`` when it holds finished epochs.

    ``training`` sets the learning-rate schedule and the HED stain jitter applied to each
    batch's images. ``before_epoch(epoch)`` runs before each epoch's loader is built, with the
    model as trained so far (the MIL baseline re-selects its patches there).

    Under torchrun the model is wrapped in DistributedDataParallel, each rank draws its own
    batches from ``sampler`` (which must be rank-aware), rank 0 writes the checkpoints and the
    epoch loss is the mean over ranks.
    """
    training = training or TrainingConfig()
    model.to(device)  # weights stay NCHW: the input's layout picks the kernels (to_input)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if optimizer_state is not None:  # continue an earlier fit's moments
        opt.load_state_dict(optimizer_state)
    losses: list[float] = []
    start = 0
    if ckpt_path.is_file():
        state = load_checkpoint_into(model, ckpt_path, RUN_FIX, device)
        with own_file(ckpt_path, "checkpoint", RUN_FIX):
            opt.load_state_dict(state["optimizer"])
            losses, start = [float(v) for v in state["losses"]], int(state["epoch"])
        log.info("%s: resuming after epoch %d of %d", desc, start, epochs)
    net = _distributed(model, runtime, device, dist)
    forward = compiled(net, runtime.compile)
    # one draw from the seeded global generator, so a resumed run jitters its epochs alike
    stain_seed = int(torch.randint(2**31 - 1, ()).item())
    torch_dataset = cast(Dataset, dataset)  # a TrainingSet is indexed as a Dataset is
    step = _Step(forward, opt, loss_fn, device, runtime, training, lr,
                 epochs * len(sampler), ckpt_path.parent, dataset.describe)
    for epoch in range(start, epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        net.train()
        bar = progress_bar(make_loader(torch_dataset, sampler, runtime.num_workers, device),
                           desc=f"{desc} epoch {epoch + 1}/{epochs}", unit="batch",
                           disable=not progress, leave=False)
        gen = torch.Generator().manual_seed(stain_seed + epoch)
        total, count, t0 = 0.0, 0, time.perf_counter()
        for i, (ids, batch) in enumerate(zip(iter(sampler), bar, strict=True)):
            loss = step(batch, list(ids), epoch, epoch * len(sampler) + i, gen)
            total += loss * len(batch[0])
            count += len(batch[0])
            bar.set_postfix(loss=f"{total / count:.4f}",
                            patches_s=f"{count / (time.perf_counter() - t0):.1f}")
        bar.close()
        losses.append(dist.mean(total / max(count, 1)))
        if dist.main:
            save_checkpoint(ckpt_path, {"model": _unwrap(net).state_dict(),
                                        "optimizer": opt.state_dict(),
                                        "epoch": epoch + 1, "losses": losses})
            if on_epoch:
                on_epoch(epoch + 1, losses[-1])
        dist.barrier()
    if epochs > 0:
        loader = make_loader(torch_dataset, sampler, runtime.num_workers, device)
        recalibrate_bn(net, loader, loss_fn, device, runtime, runtime.bn_recalibration_batches)
        dist.broadcast_buffers(_unwrap(net))
    if net is not model:
        model.load_state_dict(_unwrap(net).state_dict())
    return losses


class _Step:
    """One optimiser step on a batch: stain jitter on the device, the learning rate of the
    schedule, the loss (a NaN or inf saves the batch and raises ``NonFiniteLoss``)."""

    def __init__(self, forward: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn: LossFn,
                 device: torch.device, runtime: RuntimeConfig, training: TrainingConfig,
                 lr: float, total_steps: int, diag_dir: Path,
                 describe: Callable[[list[int]], list[Any]]) -> None:
        self.forward, self.opt, self.loss_fn = forward, opt, loss_fn
        self.device, self.runtime, self.training = device, runtime, training
        self.lr, self.total_steps, self.diag_dir = lr, total_steps, diag_dir
        self.describe = describe

    def __call__(self, batch: Any, ids: list[int], epoch: int, global_step: int,
                 gen: torch.Generator) -> float:
        t = self.training
        # Jittered on the device: on the host this float math starved GPU training.
        images = batch[0].to(self.device, non_blocking=True)
        batch = (hed_jitter(images, t.stain_sigma, t.stain_bias, gen), *batch[1:])
        for group in self.opt.param_groups:
            group["lr"] = lr_at(global_step, self.total_steps, self.lr, t)
        loss = self.loss_fn(self.forward, batch, self.device, self.runtime)
        value = loss.item()
        if not math.isfinite(value):
            diag = self.diag_dir / f"nonfinite_epoch{epoch + 1}.json"
            write_json(diag, {"epoch": epoch + 1, "batch_indices": ids,
                              "items": self.describe(ids)})
            raise NonFiniteLoss(f"loss became {value} in epoch {epoch + 1}",
                                f"inspect the saved batch in {diag}; lower stage1.lr or "
                                "check those patches", self.diag_dir)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return value


@torch.no_grad()
def recalibrate_bn(net: torch.nn.Module, loader: DataLoader, loss_fn: LossFn,
                   device: torch.device, runtime: RuntimeConfig, max_batches: int) -> None:
    """Recompute BatchNorm running statistics with the final weights ("precise BN").

    The running averages lag behind weights that still move quickly at the end of a short
    training; in eval mode that mismatch can saturate every output (seen with stage 2 on
    PCam mosaics: eval-mode probabilities of exactly 0 or 1 for every slide).
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
           and not getattr(m, FROZEN, False)]
    if not bns or max_batches <= 0 or getattr(_unwrap(net), "frozen_bn", False):
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    net.train()
    for k, batch in enumerate(loader):
        if k >= max_batches:
            break
        loss_fn(net, batch, device, runtime)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    net.eval()


def _unwrap(net: torch.nn.Module) -> torch.nn.Module:
    return getattr(net, "module", net)


def _distributed(model: torch.nn.Module, runtime: RuntimeConfig, device: torch.device,
                 dist: Dist) -> torch.nn.Module:
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if runtime.sync_bn:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("runtime.sync_bn needs GPUs; keeping per-rank BatchNorm on CPU")
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one log line; a torn last line from a crash is skipped by readers."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")

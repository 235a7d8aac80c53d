"""Inference on the CPU through OpenVINO or ONNX Runtime instead of PyTorch.

A model's forward pass is exported to ONNX from its weights in memory (weights that
``storage.artefacts`` loaded safely, or that this process trained), cached as ``<key>.onnx`` in the
settings' graph folder and keyed by the hash of those weights and the input shape: a checkpoint
that changes gets a new key, a cached file with another stamp is rebuilt, and a graph is never
taken from anywhere else. benchmarks/bench_estep.py and bench_run.py measure the gain.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mixsup.errors import MixsupError
from mixsup.inference.settings import InferSettings
from mixsup.runtime.device import compiled
from mixsup.storage.artefacts import load_graph, save_graph

log = logging.getLogger(__name__)
GRAPH_VERSION = "1"  # bump when the export below changes
OPSET = 17
def weights_key(model: torch.nn.Module, input_shape: tuple[int, ...]) -> str:
    """Hash of the module's structure, weights and the exported input shape."""
    h = hashlib.sha256(repr((GRAPH_VERSION, OPSET, input_shape, str(model))).encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:40]


def export_graph(model: torch.nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """ONNX of ``model``'s eval-mode forward pass; the batch dimension stays free."""
    was_training = model.training
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval().cpu(), (torch.zeros(input_shape),), cast(Any, buf),
                          dynamo=False, input_names=["x"], output_names=["logits"],
                          opset_version=OPSET,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    model.train(was_training)
    return buf.getvalue()


def cached_graph(model: torch.nn.Module, input_shape: tuple[int, ...],
                 graph_dir: Path | None, key: str | None = None) -> bytes:
    """The exported graph from ``graph_dir``'s cache, exported (and cached) when missing or
    stale; without a folder, exported in memory. ``key``: ``weights_key``, when known."""
    key = key or weights_key(model, input_shape)
    path = None if graph_dir is None else graph_dir / f"{key}.onnx"
    got = None if path is None else load_graph(path, key)
    if got is not None:
        return got
    graph = export_graph(model, input_shape)
    if path is None:
        return graph
    try:
        return save_graph(path, graph, key)
    except MixsupError as exc:  # a read-only bundle: run without the cache
        log.warning("cannot cache the inference graph (%s); exported it in memory", exc.what)
        return graph


class ExportedModel(torch.nn.Module):
    """Stands in for a model in inference: float NCHW batch in, the model's logits out."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], backend: str) -> None:
        super().__init__()
        self.run, self.backend = run, backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x.detach().cpu().contiguous().numpy()))


def session(graph: bytes, backend: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function running ``graph`` on ``threads`` CPU threads."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"x": x})[0]
    import openvino as ov

    core = ov.Core()
    net = core.compile_model(core.read_model(graph, ov.Tensor(np.empty(0, np.uint8))), "CPU",
                             {"INFERENCE_NUM_THREADS": threads,
                              # f32: bf16 (the default on AMX CPUs) changes the maps at 1e-2
                              "INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: np.asarray(net([x])[0])


def exported(model: torch.nn.Module, backend: str, input_shape: tuple[int, ...],
             graph_dir: Path | None) -> ExportedModel:
    """``model`` run by ``backend`` on as many threads as torch uses in this process. The last
    sessions are kept: a round's θ1 maps the training slides, then the validation slides."""
    key = weights_key(model, input_shape)
    ident = (key, backend, torch.get_num_threads())
    if ident not in _RECENT:
        graph = cached_graph(model, input_shape, graph_dir, key)
        _RECENT[ident] = ExportedModel(session(graph, backend, ident[2]), backend)
        while len(_RECENT) > 2:
            del _RECENT[next(iter(_RECENT))]
    return _RECENT[ident]


_RECENT: dict[tuple[str, str, int], ExportedModel] = {}


def inference_model(model: torch.nn.Module, settings: InferSettings,
                    patch_size: int) -> torch.nn.Module:
    """The module that runs ``model``'s inference under ``settings``: itself (compiled when
    asked) on the torch backend, else its exported graph in the chosen engine."""
    if isinstance(model, ExportedModel):
        return model
    if settings.backend == "torch":
        return compiled(model, settings.compile)
    return exported(model, settings.backend, (1, 3, patch_size, patch_size), settings.graph_dir)

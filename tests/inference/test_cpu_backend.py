"""θ1's maps and θ2's patch probabilities through OpenVINO / ONNX Runtime equal PyTorch's, and
the exported graph is cached by the weights' hash, rebuilt when stale."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest
import torch

from mixsup.config import load_config
from mixsup.inference import cpu_backend, settings
from mixsup.inference.cpu_backend import ExportedModel, cached_graph, inference_model, weights_key
from mixsup.inference.patch_maps import map_slides
from mixsup.inference.settings import InferSettings
from mixsup.inference.theta2 import patch_probs
from mixsup.methods.bundle import load_bundle
from mixsup.slides.patches import PatchReader, SlideSource
from mixsup.storage.artefacts import load_graph, save_graph

CPU = torch.device("cpu")
ENGINES = [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(name) is None or importlib.util.find_spec("onnx") is None,
    reason=f"{name} or onnx is not installed")) for name in ("onnxruntime", "openvino")]


def _sources(shapes_data, n: int = 2) -> list[SlideSource]:
    paths = sorted((shapes_data / "slides").glob("*.tiff"))[:n]
    return [SlideSource(p.stem, str(p)) for p in paths]


@pytest.mark.parametrize("engine", ENGINES)
def test_maps_and_theta2_probabilities_equal_pytorchs(engine, trained, shapes_data, tmp_path):
    models = load_bundle(trained.run_dir)
    sources = _sources(shapes_data)
    grid = np.array([(x, y) for y in range(0, 640, 96) for x in range(0, 640, 96)])
    jobs = [(0, grid), (1, grid[:9])]
    torch_settings = InferSettings(CPU, batch_size=16)
    fast = replace(torch_settings, backend=engine, graph_dir=tmp_path, channels_last=False)
    ref = dict(map_slides(models.theta1, sources, jobs, 128, 1.0, torch_settings))
    got = dict(map_slides(models.theta1, sources, jobs, 128, 1.0, fast))
    for i in ref:
        np.testing.assert_allclose(got[i].max_prob, ref[i].max_prob, rtol=0, atol=1e-5)
        # the stored maps are float16: equal up to its rounding
        np.testing.assert_allclose(got[i].maps.astype(np.float32),
                                   ref[i].maps.astype(np.float32), rtol=1e-3, atol=1e-5)
    reader = PatchReader(sources, np.column_stack([np.zeros(8, np.int64), grid[:8]]), 128, 1.0)
    patches = torch.stack([reader[j] for j in range(8)])[None]
    valid = torch.ones(1, 8, dtype=torch.bool)
    assert models.theta2 is not None
    net = inference_model(models.theta2, fast, 128)
    assert isinstance(net, ExportedModel)
    assert inference_model(models.theta2, fast, 128) is net  # the session is kept
    with torch.inference_mode():
        want = patch_probs(models.theta2, patches, valid, CPU, False, True)
        have = patch_probs(net, patches, valid, CPU, False, False)
    np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=0, atol=1e-5)


def test_the_graph_is_cached_by_the_weights_hash_and_rebuilt_when_stale(tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU())
    shape = (1, 3, 16, 16)
    key = weights_key(model, shape)
    first = cached_graph(model, shape, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.onnx"]
    assert load_graph(tmp_path / f"{key}.onnx", key) == first

    def no_export(*_args: object) -> bytes:
        raise AssertionError("exported again although the cache holds the graph")

    monkeypatch.setattr(cpu_backend, "export_graph", no_export)
    assert cached_graph(model, shape, tmp_path) == first
    monkeypatch.undo()
    # a file under the right name but stamped for other weights is stale: rebuilt
    save_graph(tmp_path / f"{key}.onnx", first, "another key")
    assert load_graph(tmp_path / f"{key}.onnx", key) is None
    assert cached_graph(model, shape, tmp_path) == first
    (tmp_path / f"{key}.onnx").write_bytes(b"not a graph")
    assert cached_graph(model, shape, tmp_path) == first
    # new weights, new key; the input shape is part of it too
    with torch.no_grad():
        model[0].bias.add_(1.0)
    assert weights_key(model, shape) != key
    assert weights_key(model, (1, 3, 32, 32)) != weights_key(model, shape)


def test_a_graph_that_points_at_external_data_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper

    weight = helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [1.0])
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("float_data")
    weight.external_data.add(key="location", value="/etc/passwd")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["logits"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT,
                                                             [1])], [weight])
    data = helper.make_model(graph).SerializeToString()
    save_graph(tmp_path / "g.onnx", data, "k")
    assert load_graph(tmp_path / "g.onnx", "k") is None


def test_backend_choice(monkeypatch):
    assert settings.resolve_backend("auto", torch.device("cuda", 0)) == "torch"
    assert settings.resolve_backend("openvino", torch.device("cuda", 0)) == "torch"
    assert settings.resolve_backend("torch", CPU) == "torch"
    monkeypatch.setattr(settings, "_installed", lambda *_m: False)
    assert settings.resolve_backend("auto", CPU) == "torch"  # falls back, with a log line
    with pytest.raises(Exception, match="needs the onnxruntime and onnx packages"):
        settings.resolve_backend("onnxruntime", CPU)
    monkeypatch.setattr(settings, "_installed", lambda *_m: True)
    assert settings.resolve_backend("auto", CPU) == "openvino"
    cfg = load_config("tiny", overrides=["runtime.backend=torch"])
    assert InferSettings.from_config(cfg, CPU).backend == "torch"


@pytest.mark.skipif(not settings._installed("openvino", "onnx"), reason="needs openvino")
def test_a_finished_run_keeps_no_training_graphs(trained):
    # the fixture trained with runtime.backend=auto, so its rounds ran through the graphs
    assert (trained.run_dir / "config.yaml").is_file()
    assert not (trained.run_dir / "graphs").exists()

"""No file mixsup loads can run code: the package scan, and the refusals of each format."""

from __future__ import annotations

import ast
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from mixsup.camelyon.classifier import train_node_forest
from mixsup.camelyon.workflow import load_node_forest, save_node_forest
from mixsup.cli import main
from mixsup.errors import MixsupError
from mixsup.inference.map_store import open_maps
from mixsup.storage.artefacts import load_arrays, load_sklearn, open_store, save_sklearn

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mixsup"
ONE_PLACE = "storage/artefacts.py"  # relative to the package
FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                     "marshal"}
UNSAFE_CALLS = {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all",
                "yaml.full_load", "yaml.full_load_all", "pandas.read_pickle", "torch.jit.load",
                "torch.hub.load", "numpy.lib.format.read_array"}
# Serialisation that only storage/artefacts.py may call, so that every format is decided there.
SERIALISERS = {"torch.load", "torch.save", "numpy.load", "numpy.save", "numpy.savez",
               "numpy.savez_compressed", "zarr.open", "zarr.open_group", "zarr.open_array",
               "zarr.create", "zarr.create_array", "zarr.create_group", "zarr.group",
               "zarr.array", "zarr.load", "zarr.save", "skops.io.load", "skops.io.loads",
               "skops.io.dump", "skops.io.dumps", "safetensors.torch.load_file",
               "onnx.load", "onnx.load_model", "onnx.load_from_string", "onnx.save",
               "onnx.save_model"}


def findings(source: str, filename: str) -> list[str]:
    """Every way ``source`` could load a code-running file, or serialise outside artefacts."""
    tree = ast.parse(source)
    alias: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"import {a.name}")
                root = a.name.split(".")[0]
                alias[a.asname or root] = a.name if a.asname else root
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for a in node.names:
                if {module.split(".")[0], a.name} & FORBIDDEN_MODULES:
                    found.append(f"from {module} import {a.name}")
                alias[a.asname or a.name] = f"{module}.{a.name}"

    def dotted(expr: ast.expr) -> str:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return ""
        return ".".join([alias.get(expr.id, expr.id), *reversed(parts)])

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        true = {k.arg for k in node.keywords
                if isinstance(k.value, ast.Constant) and k.value.value is True}
        first = node.args[0] if node.args else None
        if name == "torch.load" and "weights_only" not in true:
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name == "numpy.load" and "allow_pickle" in true:
            found.append(f"line {node.lineno}: numpy.load(allow_pickle=True)")
        if name in UNSAFE_CALLS:
            found.append(f"line {node.lineno}: {name}")
        if name in SERIALISERS and filename != ONE_PLACE:
            found.append(f"line {node.lineno}: {name} outside {ONE_PLACE}")
        if (name in ("__import__", "importlib.import_module") and isinstance(first, ast.Constant)
                and str(first.value).split(".")[0] in FORBIDDEN_MODULES):
            found.append(f"line {node.lineno}: imports {first.value}")
    return found


def test_package_has_no_code_running_loader():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50 and (PACKAGE / ONE_PLACE).is_file()
    bad = {str(f.relative_to(PACKAGE)): got for f in files
           if (got := findings(f.read_text(), f.relative_to(PACKAGE).as_posix()))}
    assert not bad, bad


@pytest.mark.parametrize("source", [
    "import pickle",
    "import joblib as jl",
    "from joblib import load",
    "from sklearn.externals import joblib",
    "import torch\ntorch.load('m.pt')",
    "import torch\ntorch.load('m.pt', weights_only=False)",
    "from torch import load\nload('m.pt', weights_only=True)",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import zarr\nzarr.open_group('s.zarr', mode='r')",
    "import skops.io\nskops.io.load('f.skops')",
    "import importlib\nimportlib.import_module('dill')",
])
def test_scan_catches_each_way_in(source):
    assert findings(source, "somewhere.py")


def test_scan_lets_the_safe_forms_through():
    ok = ("import torch\nimport yaml\nimport json\n"
          "from mixsup.storage.artefacts import load_arrays\n"
          "torch.load('m.pt', map_location='cpu', weights_only=True)\nyaml.safe_load(t)\n"
          "json.loads(t)\nload_arrays('a.npz')\n")
    assert findings(ok, ONE_PLACE) == []
    assert findings("import numpy as np\nnp.load('a.npy')", ONE_PLACE) == []


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _forest():
    rng = np.random.default_rng(0)
    rows = [{"a": float(v), "b": float(w)} for v, w in rng.normal(size=(24, 2))]
    classes = ["negative", "itc", "micro", "macro"] * 6
    return rows, train_node_forest(rows, classes, folds=2, n_estimators=5)


def test_forest_round_trip(tmp_path):
    rows, forest = _forest()
    save_node_forest(tmp_path, forest, 16.0)
    assert (tmp_path / "stage" / "node_forest.skops").is_file()
    again, heatmap_um = load_node_forest(tmp_path)
    assert heatmap_um == 16.0 and again.feature_names == forest.feature_names
    np.testing.assert_array_equal(again.predict_proba(rows), forest.predict_proba(rows))


@pytest.mark.parametrize("name,needle", [("node_forest.joblib", "joblib.*convert"),
                                         ("node_forest.skops", "not a skops file")])
def test_stage_predict_refuses_a_pickled_forest(tmp_path, shapes_data, capsys, name, needle):
    import joblib

    marker = tmp_path / "marker"
    run = tmp_path / "run"
    (run / "stage").mkdir(parents=True)
    joblib.dump({"forest": _Evil(marker), "heatmap_um": 16.0}, run / "stage" / name)
    code = main(["stage", "predict", str(run), "--data", str(shapes_data), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and name in err and re.search(needle, err), err
    assert not marker.exists()
    with pytest.raises(MixsupError):
        load_node_forest(run)
    assert not marker.exists()


def test_the_advertised_conversion_of_an_old_joblib_forest_works(tmp_path):
    import subprocess
    import sys

    import joblib

    rows, forest = _forest()
    old = tmp_path / "stage" / "node_forest.joblib"
    old.parent.mkdir()
    joblib.dump({"forest": forest, "heatmap_um": 8.0}, old)  # what older runs wrote
    with pytest.raises(MixsupError, match="refused") as err:
        load_node_forest(tmp_path)
    command = re.search(r'python -c "(.*)"', str(err.value)).group(1)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    subprocess.run([sys.executable, "-c", command], check=True, env=env, timeout=120)
    again, heatmap_um = load_node_forest(tmp_path)
    assert heatmap_um == 8.0
    np.testing.assert_array_equal(again.predict_proba(rows), forest.predict_proba(rows))


def test_unknown_types_in_a_skops_file_are_refused(tmp_path):
    path = tmp_path / "stage" / "node_forest.skops"
    save_sklearn(path, {"format": "mixsup-node-forest-v1", "models": [_Evil(tmp_path / "m")]})
    with pytest.raises(MixsupError, match="Untrusted types.*_Evil") as err:
        load_node_forest(tmp_path)
    assert str(path) in str(err.value) and not (tmp_path / "m").exists()


def test_a_forest_whose_nodes_point_outside_is_refused(tmp_path):
    _, forest = _forest()
    forest.models[-1].estimators_[0].tree_.children_left[0] = 10**6
    save_node_forest(tmp_path, forest, 16.0)
    with pytest.raises(MixsupError, match="node table"):
        load_node_forest(tmp_path)
    _, forest = _forest()
    tree = forest.models[0].estimators_[1].tree_
    tree.feature[int(np.nonzero(tree.children_left != -1)[0][0])] = 7  # only 2 features
    save_sklearn(tmp_path / "f.skops", {"models": forest.models})
    with pytest.raises(MixsupError, match="node table"):
        load_sklearn(tmp_path / "f.skops")


def test_pickled_numpy_arrays_are_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "negatives.npy"
    np.save(path, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(MixsupError, match="allow_pickle"):
        load_arrays(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(MixsupError, match="negatives.npy"):
        load_arrays(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_stores_with_foreign_codecs_are_refused(tmp_path):
    import zarr
    from zarr.codecs.numcodecs import Zlib

    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group.create_array("prob", data=np.zeros((2, 4, 4), np.float16), compressors=[Zlib()])
    with pytest.raises(MixsupError, match="refused to read array 'prob'"):
        open_store(tmp_path / "s.zarr")
    assert open_maps(tmp_path / "s.zarr") is None  # treated as absent: recomputed

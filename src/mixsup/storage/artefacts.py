"""How every artefact of a run is saved and loaded, in formats whose loading cannot run code.

- checkpoints and weights: torch files read with ``weights_only=True``, or safetensors;
- scikit-learn models: skops files, read with an explicit list of trusted types; the one
  trusted type that is not plain data (a tree's node table) is checked before use;
- arrays: .npy / .npz without pickled objects;
- map stores: zarr, opened for reading only when every array is numeric and plainly coded.

JSON and YAML (``yaml.safe_load``) are data-only parsers and are used where the files are
read. ``tests/storage/test_artefacts.py`` fails when another module calls these libraries' save and
load functions, or when pickle, joblib or an unsafe loader appears anywhere in the package.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixsup.errors import MixsupError
from mixsup.storage.atomic import atomic_path
from mixsup.storage.user_files import own_file

if TYPE_CHECKING:  # imported where used: tiling needs neither torch nor zarr
    import torch
    import zarr

CHECKPOINT_FORMAT = "mixsup-checkpoint-v1"
# skops trusts scikit-learn's estimators and plain data already; a tree's node table is trusted
# only after _check_trees (out-of-range node or feature indices would be read unchecked).
SKLEARN_TRUSTED = ("sklearn.tree._tree.Tree",)
# The codecs zarr applies on its own (mixsup writes bytes + zstd); anything else, such as an
# object codec, was not written by mixsup.
STORE_CODECS = {"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose"}


# -- torch ----------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    import torch

    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a mixsup checkpoint; refuses pickles that would run code and foreign files."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise MixsupError("checkpoint not found", "check the path", path) from exc
    except Exception as exc:
        raise MixsupError(f"refused to load checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})",
                          "only load mixsup checkpoints from sources you trust; this file is "
                          "not a plain weights file", path) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise MixsupError("not a mixsup checkpoint", "pass a file written by mixsup", path)
    return state


def load_checkpoint_into(module: torch.nn.Module, path: str | Path, fix: str,
                         map_location: str | torch.device = "cpu",
                         key: str = "model") -> dict[str, Any]:
    """The weights that checkpoint ``path`` holds under ``key`` into ``module``, strictly
    (``fill_strictly``); returns the checkpoint, for its other entries. A missing or damaged
    file, or weights of another network, is one ``MixsupError`` naming the file (and the first
    tensor at fault), with ``fix``."""
    import torch

    with own_file(path, "checkpoint", fix):
        state = load_checkpoint(path, map_location)
        weights = state.get(key)
        if not isinstance(weights, dict) or not weights or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) and not v.is_complex()
                for k, v in weights.items()):
            raise MixsupError(f"the checkpoint holds no weights under {key!r} (a mapping of "
                              "names to real tensors)", fix, path)
        fill_strictly(module, weights, path)
    return state


WEIGHT_FIX = ("pass weights saved from the configured timm architecture, named as timm names "
              "them (a state_dict in .safetensors, .bin or .pth)")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of a .pth / .pt / .bin state_dict read with
    ``torch.load(weights_only=True)``, in file order."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MixsupError("weights file not found", "check the path", path)
    state: Any  # torch.load returns whatever the file holds
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MixsupError(f"cannot load weights ({type(exc).__name__})",
                          "pass a state_dict saved with torch.save or safetensors",
                          path) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise MixsupError(f"not a state_dict (holds a {type(state).__name__} that is not "
                          "names to tensors)",
                          "pass a state_dict saved with torch.save or safetensors", path)
    return state


def load_weights_into(module: torch.nn.Module, path: str | Path,
                      head: Sequence[str] = ()) -> None:
    """Local pretrained weights (.safetensors / .bin / .pth / .pt) into ``module``, strictly
    (``fill_strictly``)."""
    fill_strictly(module, read_weights(path), path, head)


def fill_strictly(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                  path: str | Path, head: Sequence[str] = ()) -> None:
    """Every tensor of ``state`` fills the tensor of ``module`` of the same name and shape,
    and every tensor of ``module`` is filled, except under ``head``: the names (module
    prefixes, e.g. ``classifier``) of a head that the caller starts afresh, or that the file's
    network has and ``module`` lacks; the file's tensors there are left unused. Anything else
    (another architecture, a ``module.`` prefix, a partial file) is refused with one error
    that names the first mismatches."""
    def in_head(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in head)

    own = module.state_dict()
    # BatchNorm fills a missing step counter itself (files converted from other frameworks
    # lack it); it is no weight.
    missing = [k for k in own if k not in state and not in_head(k)
               and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not in_head(k)]
    reshaped = [k for k in state if k in own and not in_head(k) and own[k].shape != state[k].shape]
    if missing or unexpected or reshaped:
        raise MixsupError(
            f"the weights do not fit the model (the model has {len(own)} tensors, the file "
            f"{len(state)}): "
            + "; ".join(part for part in (
                _first(f"{len(missing)} of the model's not in the file", missing),
                _first(f"{len(unexpected)} of the file's not in the model", unexpected),
                _first(f"{len(reshaped)} of another shape", [
                    f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the "
                    "model" for k in reshaped])) if part)
            + _prefix_hint(unexpected, own), WEIGHT_FIX, path)
    module.load_state_dict({k: v for k, v in state.items() if not in_head(k)}, strict=False)


def _first(what: str, names: list[str], n: int = 3) -> str:
    if not names:
        return ""
    return f"{what} (first: {', '.join(names[:n])}{', ...' if len(names) > n else ''})"


def _prefix_hint(unexpected: list[str], own: Mapping[str, Any]) -> str:
    """Names that match once a leading ``module.`` (DataParallel) or ``model.`` is dropped."""
    for name in unexpected:
        prefix, _, rest = name.partition(".")
        if rest in own:
            return f"; the file's names carry a prefix {prefix + '.'!r} that the model's do not"
    return ""


# -- scikit-learn ---------------------------------------------------------------------------

def save_sklearn(path: str | Path, obj: Any) -> None:
    """``obj`` (scikit-learn estimators inside plain data) as a skops file."""
    import skops.io

    with atomic_path(path, suffix=".skops") as tmp:
        skops.io.dump(obj, tmp)


def load_sklearn(path: str | Path, fix: str = "retrain it with this version of mixsup") -> Any:
    """A skops file written by ``save_sklearn``; pickles and unknown types are refused."""
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if not path.is_file():
        raise MixsupError("model file not found", "check the path", path)
    if not zipfile.is_zipfile(path):
        raise MixsupError("refused to load: not a skops file (a pickle or joblib file can run "
                          "code when loaded)", fix, path)
    try:
        obj = skops.io.load(path, trusted=list(SKLEARN_TRUSTED))
    except UntrustedTypesFoundException as exc:
        raise MixsupError(f"refused to load: {str(exc).splitlines()[0]}", fix, path) from exc
    except Exception as exc:
        raise MixsupError(f"cannot read model file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]})", fix, path) from exc
    for tree, n_features in _trees(obj):
        if not _sound_tree(tree, n_features):
            raise MixsupError("refused to load: a decision tree's node table points outside "
                              "itself or its features", fix, path)
    return obj


def _trees(obj: Any, n_features: int | None = None) -> Iterator[tuple[Any, int | None]]:
    """Every fitted decision tree in ``obj``, with the feature count its forest passes it."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _trees(v, n_features)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _trees(v, n_features)
    elif hasattr(obj, "tree_"):
        yield obj, n_features
    elif hasattr(obj, "estimators_"):
        yield from _trees(list(obj.estimators_), getattr(obj, "n_features_in_", None))


def _sound_tree(est: Any, n_features: int | None) -> bool:
    """Children come after their parent and inside the table; split features exist."""
    t = est.tree_
    n = int(t.node_count)
    left, right, feature = (np.asarray(a, np.int64) for a in
                            (t.children_left, t.children_right, t.feature))
    split = left != -1
    own = np.arange(n)[split]
    limit = min(int(est.n_features_in_), int(t.n_features), n_features or int(t.n_features))
    return bool(n >= 1 and len(left) == len(right) == len(feature) == n
                and np.array_equal(split, right != -1)
                and (left[split] > own).all() and (right[split] > own).all()
                and (left[split] < n).all() and (right[split] < n).all()
                and (feature[split] >= 0).all() and (feature[split] < limit).all())


# -- numpy ----------------------------------------------------------------------------------

def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """One array as .npy (a single ``array=``) or several as .npz, never as pickled objects."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp, open(tmp, "wb") as fh:
        if path.suffix == ".npy":
            (array,) = arrays.values()
            np.save(fh, array, allow_pickle=False)
        else:
            np.savez(fh, allow_pickle=False, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz (or ``{"array": ...}`` for an .npy); object arrays, and a file
    that holds no arrays (truncated, foreign), are refused naming it."""
    try:
        with open(path, "rb") as fh:  # numpy leaves its own handle open on a truncated .npz
            data = np.load(fh, allow_pickle=False)
            if isinstance(data, np.ndarray):
                return {"array": data}
            with data:
                return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MixsupError(f"cannot read the arrays ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                          "recompute it with mixsup", path) from None


# -- zarr -----------------------------------------------------------------------------------

def new_group(path: str | Path) -> zarr.Group:
    import zarr

    return zarr.open_group(str(path), mode="w")


def new_array(path: str | Path, **kwargs: Any) -> zarr.Array:
    import zarr

    return zarr.create_array(str(path), **kwargs)


def open_store(path: str | Path) -> zarr.Group:
    """A zarr group opened read-only; refused unless every array is numeric and plainly coded."""
    import zarr

    with _store_metadata(path):
        group = zarr.open_group(str(path), mode="r")
        arrays = list(group.arrays())
    for name, array in arrays:
        _check_plain(array, name, path)
    return group


def open_array(path: str | Path) -> zarr.Array:
    """A zarr array (a stitched probability map) opened read-only, with ``open_store``'s
    checks."""
    import zarr

    with _store_metadata(path):
        array = zarr.open_array(str(path), mode="r")
    _check_plain(array, Path(path).name, path)
    return array


@contextlib.contextmanager
def _store_metadata(path: str | Path) -> Iterator[None]:
    """Opening a store: metadata that zarr cannot take (a ``zarr.json`` edited or damaged:
    zarr raises ValueError, TypeError, KeyError, or OverflowError for a fill value past its
    dtype) is one ``MixsupError`` naming the store. A missing store stays an ``OSError``."""
    try:
        yield
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError) as exc:
        raise MixsupError(f"cannot read the store's metadata ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
                          "recompute it with mixsup", path) from None


def _check_plain(array: zarr.Array, name: str, path: str | Path) -> None:
    meta = array.metadata.to_dict()
    raw = meta.get("codecs", ())
    entries = raw if isinstance(raw, Sequence) and not isinstance(raw, str) else (raw,)
    codecs = {str(c.get("name")) if isinstance(c, Mapping) else str(c) for c in entries}
    if (meta.get("zarr_format") != 3 or not codecs <= STORE_CODECS
            or array.dtype.kind not in "biuf"):
        raise MixsupError(f"refused to read array {name!r} ({array.dtype}, codecs "
                          f"{sorted(codecs)})", "recompute it with mixsup", path)


# -- onnx -----------------------------------------------------------------------------------

GRAPH_KEY = "mixsup_key"


def save_graph(path: str | Path, graph: bytes, key: str) -> bytes:
    """An exported inference graph, stamped with ``key`` (the hash of the weights it was
    exported from); returns the stamped bytes."""
    import onnx

    proto = onnx.load_from_string(graph)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=GRAPH_KEY, value=key)
    data = proto.SerializeToString()
    with atomic_path(path, suffix=".onnx") as tmp:
        tmp.write_bytes(data)
    return data


def load_graph(path: str | Path, key: str) -> bytes | None:
    """The graph ``save_graph`` wrote for ``key``; None when it is missing, unreadable, stamped
    with another key (stale), or points at data outside itself (an ONNX file may name external
    weight files, which mixsup never writes)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception:  # a truncated or foreign file: rebuilt by the caller
        return None
    stamps = {p.key: p.value for p in proto.metadata_props}
    external = any(t.data_location == onnx.TensorProto.EXTERNAL
                   for t in proto.graph.initializer)
    return data if stamps.get(GRAPH_KEY) == key and not external else None

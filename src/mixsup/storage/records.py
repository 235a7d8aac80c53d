"""One JSON conversion for the frozen result dataclasses that cross module boundaries (round
and stage-2 summaries, predictions...). pydantic, already the config's validator, checks the
fields on the way in, and keys no field names are refused, so a file with a missing or
misspelt key fails where it is read."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from mixsup.storage.user_files import own_file, read_json

T = TypeVar("T")

_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(cls: type) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def to_json(obj: object) -> Any:
    """Plain JSON values (dict keys as strings); NaN stays NaN, as ``json.dumps`` writes it."""
    return _plain(_adapter(type(obj)).dump_python(obj, mode="python"))


def from_json(cls: type[T], data: Any) -> T:
    """``cls`` from parsed JSON; raises ``ValueError`` for a missing, mistyped or unknown key
    (pydantic ignores unknown keys of stdlib dataclasses, so they are checked here)."""
    unknown = _unknown_keys(cls, data, cls.__name__)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:  # its text spans lines; the first problem is enough
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{cls.__name__}{'.' + where if where else ''}: {first['msg']}"
                         ) from None


def read_record(cls: type[T], path: Path, what: str, fix: str,
                upgrade: Callable[[Any], Any] = lambda data: data) -> T:
    """``cls`` from the JSON file at ``path`` that mixsup wrote, ``upgrade`` first turning an
    older layout into this one; a file that does not fit is one ``MixsupError`` naming it,
    with ``fix`` (``storage.user_files.own_file``)."""
    with own_file(path, what, fix):
        return from_json(cls, upgrade(read_json(path, what)))


def _unknown_keys(tp: Any, data: Any, where: str) -> list[str]:
    """Keys of ``data`` that no field of the dataclass(es) in type ``tp`` names."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return next((found for arg in typing.get_args(tp) if arg is not type(None)
                     for found in [_unknown_keys(arg, data, where)]), [])
    if origin in (list, tuple) and isinstance(data, list | tuple):
        item = typing.get_args(tp)[0]
        return [k for i, v in enumerate(data) for k in _unknown_keys(item, v, f"{where}[{i}]")]
    if origin is dict and isinstance(data, dict):
        value = typing.get_args(tp)[1]
        return [k for key, v in data.items() for k in _unknown_keys(value, v, f"{where}.{key}")]
    if not (dataclasses.is_dataclass(tp) and isinstance(tp, type) and isinstance(data, dict)):
        return []
    hints = typing.get_type_hints(tp)
    names = {f.name for f in dataclasses.fields(tp)}
    out = [f"{where}.{key}" for key in data if key not in names]
    for key, value in data.items():
        if key in names:
            out += _unknown_keys(hints[key], value, f"{where}.{key}")
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

"""One JSON conversion for the frozen result dataclasses that cross module boundaries (round
and stage-2 summaries, predictions...). pydantic, already the config's validator, checks the
fields on the way in, so a file with a missing or misspelt key fails where it is read."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter

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
    return _adapter(cls).validate_python(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

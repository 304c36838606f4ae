"""Typed configs to JSON and back: ``from_json(Config, to_json(config)) == config``.

Checkpoints store their run's config this way, so a run directory alone rebuilds the algorithm that
wrote it. Plain Python (no JAX). Dataclass fields decode by their annotations: nested dataclasses,
``tuple[X, ...]``, ``X | None``, ``Literal``, ``Annotated`` and scalars; a union of dataclasses picks
the one member whose field names are exactly the stored keys (configs of different algorithms have
different fields).
"""

import dataclasses
import types
import typing
from typing import Any


def to_json(value: Any) -> Any:
    """JSON-able data of a (nested) dataclass: dicts, lists, str, int, float, bool, None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON; configs hold plain values")


def from_json(cls: Any, data: Any, *, where: str = "config") -> Any:
    """The value of type ``cls`` that ``to_json`` turned into ``data``; ValueError names the bad field."""
    origin = typing.get_origin(cls)
    if origin is typing.Annotated:
        return from_json(typing.get_args(cls)[0], data, where=where)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(cls)
        if data is None and type(None) in members:
            return None
        classes = [m for m in members if dataclasses.is_dataclass(m)]
        if classes and isinstance(data, dict):
            fitting = [m for m in classes if {f.name for f in dataclasses.fields(m)} == set(data)]
            if len(fitting) != 1:
                names = ", ".join(getattr(m, "__name__", str(m)) for m in classes)
                raise ValueError(f"{where}: the stored fields {sorted(data)} match {len(fitting)} of {names}")
            return from_json(fitting[0], data, where=where)
        others = [m for m in members if m is not type(None)]
        return from_json(others[0], data, where=where)
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object for {cls.__name__}, got {data!r}")
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"{where}: {cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**{name: from_json(hints[name], value, where=f"{where}.{name}") for name, value in data.items()})
    if origin is tuple:
        args = typing.get_args(cls)
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v, where=f"{where}[{i}]") for i, v in enumerate(data))
        return tuple(from_json(a, v, where=f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    if origin is typing.Literal:
        if data not in typing.get_args(cls):
            raise ValueError(f"{where}: {data!r} is not one of {typing.get_args(cls)}")
        return data
    if cls is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if isinstance(cls, type) and not isinstance(data, cls):
        raise ValueError(f"{where}: expected {cls.__name__}, got {data!r}")
    return data

"""Tests for vibe.core.serialize: typed round trips and errors that name the field."""

import dataclasses
from typing import Annotated, Literal

import pytest

from vibe.core import serialize


@dataclasses.dataclass(frozen=True)
class Inner:
    sizes: tuple[int, ...] = (64, 64)
    kind: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class First:
    lr: float = 1e-3
    inner: Inner = dataclasses.field(default_factory=Inner)


@dataclasses.dataclass(frozen=True)
class Second:
    gamma: float = 0.99


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    algo: First | Second = dataclasses.field(default_factory=First)
    limit: int | None = None
    run: Annotated[Second, "flag"] = dataclasses.field(default_factory=Second)


def test_round_trip_gives_an_equal_dataclass() -> None:
    for value in (Outer(), Outer(algo=Second(0.5), limit=3), Outer(algo=First(2, Inner((1,), "b")))):
        data = serialize.to_json(value)
        assert data == serialize.to_json(serialize.from_json(Outer, data))
        assert serialize.from_json(Outer, data) == value
    assert serialize.to_json(Outer())["algo"] == {"lr": 1e-3, "inner": {"sizes": [64, 64], "kind": "a"}}


def test_an_int_where_a_float_is_declared_becomes_a_float() -> None:
    value = serialize.from_json(First, {"lr": 1, "inner": {"sizes": [2], "kind": "a"}})
    assert value.lr == 1.0 and isinstance(value.lr, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "algo": {"lr": 1.0, "bogus": 1}}, r"config\.algo: the stored fields"),
        ({"name": 3}, r"config\.name: expected str, got 3"),
        ({"algo": {"lr": 1.0, "inner": {"sizes": [1], "kind": "c"}}}, r"config\.algo\.inner\.kind: 'c' is not one"),
        ({"nope": 1}, r"config: Outer has no field\(s\) \['nope'\]"),
    ],
)
def test_bad_data_names_the_field(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        serialize.from_json(Outer, data)


def test_values_that_are_not_plain_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot store object"):
        serialize.to_json({"x": object()})

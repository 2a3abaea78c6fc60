"""plurcast.value.Value, the immutable record the modules make their records of (issue #16)."""

from __future__ import annotations

import ast
from pathlib import Path
from types import MappingProxyType

import pytest

from plurcast.value import MADE_BEFORE_OWN_INIT, Value

ROOT = Path(__file__).resolve().parent.parent


class Limit(Value):
    per_minute: int
    burst: int = 1
    name: str | None = None


class Other(Value):
    per_minute: int
    burst: int = 1
    name: str | None = None


class Named(Limit):
    """A subclass adds methods; its fields are its base's."""

    def doubled(self) -> int:
        return self.per_minute * 2


def test_made_by_position_by_name_and_with_defaults() -> None:
    assert Limit(5)._asdict() == {"per_minute": 5, "burst": 1, "name": None}
    assert Limit(5, 2, "a")._asdict() == {"per_minute": 5, "burst": 2, "name": "a"}
    assert Limit(5, name="a") == Limit(per_minute=5, burst=1, name="a")
    assert Limit._fields == ("per_minute", "burst", "name")
    assert Named(3).doubled() == 6
    assert Named._fields == Limit._fields


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "Limit() missing required argument 'per_minute'"),
        ((1, 2, "a", 4), {}, "Limit() takes 3 arguments but 4 were given"),
        ((1,), {"per_minute": 2}, "Limit() got multiple values for argument 'per_minute'"),
        ((1,), {"rate": 2}, "Limit() got an unexpected keyword argument 'rate'"),
    ],
)
def test_wrong_arguments_are_refused_as_a_function_refuses_them(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError) as caught:
        Limit(*args, **kwargs)  # type: ignore[arg-type, misc]
    assert str(caught.value) == message


def test_a_class_made_often_gets_an_init_of_its_own_that_does_the_same() -> None:
    class Often(Value):
        per_minute: int
        burst: int = 1

    class More(Often):
        name: str = "more"

    before = [Often(i, burst=2) for i in range(MADE_BEFORE_OWN_INIT - 1)]
    assert Often.__init__ is Value.__init__
    after = [Often(i, burst=2) for i in range(MADE_BEFORE_OWN_INIT - 1)]
    assert Often.__init__ is not Value.__init__
    assert before == after
    assert Often(5)._asdict() == {"per_minute": 5, "burst": 1}
    assert Often(burst=3, per_minute=4) == before[4]._replace(burst=3)
    for args, kwargs in (((), {}), ((1, 2, 3), {}), ((1,), {"per_minute": 2}), ((1,), {"x": 2})):
        with pytest.raises(TypeError):
            Often(*args, **kwargs)  # type: ignore[arg-type, misc]
    assert More(1)._asdict() == {"per_minute": 1, "burst": 1, "name": "more"}  # not Often's


def test_a_field_without_a_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="'b' has no default"):

        class Wrong(Value):
            a: int = 0
            b: int


def test_it_is_read_only() -> None:
    limit = Limit(5)
    with pytest.raises(AttributeError, match="cannot assign to field 'burst' of Limit"):
        limit.burst = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete field 'burst' of Limit"):
        del limit.burst  # type: ignore[misc]
    assert limit.burst == 1


def test_compares_and_hashes_by_its_fields_and_its_class() -> None:
    assert Limit(5, 2) == Limit(5, 2)
    assert Limit(5, 2) != Limit(5, 3)
    assert Limit(5, 2) != Other(5, 2)
    assert Limit(5, 2) != (5, 2, None)
    assert len({Limit(5, 2), Limit(5, 2), Limit(5, 3)}) == 2
    with pytest.raises(TypeError, match="unhashable"):
        hash(Limit(5, name=[]))  # type: ignore[arg-type]


def test_repr_replace_and_asdict() -> None:
    limit = Limit(5, name="a")
    assert repr(limit) == "Limit(per_minute=5, burst=1, name='a')"
    changed = limit._replace(burst=3)
    assert changed == Limit(5, 3, "a")
    assert limit.burst == 1
    with pytest.raises(TypeError, match="unexpected keyword argument 'rate'"):
        limit._replace(rate=1)
    assert Limit(5)._asdict() == {"per_minute": 5, "burst": 1, "name": None}


def test_a_default_is_shared_so_none_is_mutable() -> None:
    """Every record that was a NamedTuple or a frozen dataclass with a mutable default now
    defaults to an immutable one."""

    class Holder(Value):
        answers: MappingProxyType[str, str] = MappingProxyType({})

    assert Holder().answers is Holder().answers
    with pytest.raises(TypeError):
        Holder().answers["x"] = "y"  # type: ignore[index]


def test_no_module_defines_a_namedtuple_or_a_frozen_dataclass() -> None:
    """One way to make a record: a NamedTuple compiles code for each class it makes, on every
    start-up. (plurcast.transfer keeps its dataclasses: its Entry leaves `line` out of ==.)"""
    found = []
    for package in ("plurcast", "plur_post", "plur_queue", "plur_send"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("namedtuple"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: namedtuple()")
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = [ast.unparse(base) for base in node.bases]
                decorators = [ast.unparse(d) for d in node.decorator_list]
                frozen = any("frozen=True" in d for d in decorators)
                if "NamedTuple" in bases or (frozen and "transfer" not in path.parts):
                    found.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert found == []

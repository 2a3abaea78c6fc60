"""Value: the immutable record that plurcast's modules make their records of.

A subclass lists its fields as annotations, in order, with defaults after the fields that
have none, as for `typing.NamedTuple`:

    class Limit(Value):
        per_minute: int
        burst: int = 1

It is made with positional or keyword arguments, is read-only, compares and hashes by its
fields, shows them in its repr, and has `_replace(**changes)`, `_asdict()` and `_fields`.
It is not a tuple: it cannot be unpacked, indexed or ordered, which mypy tells where it is
tried. mypy checks the arguments of each class as for a frozen dataclass
(`dataclass_transform`).

Why not NamedTuple: `collections.namedtuple` compiles a `__new__` from source for every class
it makes (~0.78 M instructions for a class of six fields), and plur-post defined 29 of them
on every start, ~20 M of its 208 M instructions; a dataclass costs more still. A Value class
costs what a plain class costs, and an instance is made without compiling anything (issue #16).
"""

from typing import Any, ClassVar, Self, dataclass_transform


@dataclass_transform(eq_default=True, frozen_default=True)
class Value:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Not inspect.get_annotations: plur-post does not load inspect (plurcast.deferred).
        own = tuple(cls.__dict__.get("__annotations__", ()))  # noqa: RUF063
        fields = cls._fields + own
        given = {name: cls.__dict__[name] for name in own if name in cls.__dict__}
        defaults = {**cls._defaults, **given}
        after_default = False
        for field in fields:
            if field in defaults:
                after_default = True
            elif after_default:
                raise TypeError(
                    f"{cls.__name__}: field {field!r} has no default, one before it has"
                )
        cls._fields = fields
        cls._defaults = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if not kwargs and len(args) == len(fields):
            self.__dict__.update(zip(fields, args, strict=True))
            return
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments but {len(args)} were given")
        values = dict(zip(fields, args, strict=False))  # the rest come by name
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            values[key] = value
        missing = [field for field in fields if field not in values and field not in self._defaults]
        if missing:
            raise TypeError(f"{name}() missing required argument {missing[0]!r}")
        self.__dict__.update({**self._defaults, **values})

    def _values(self) -> tuple[Any, ...]:
        return tuple(map(self.__dict__.__getitem__, self._fields))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of {type(self).__name__}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={value!r}" for field, value in self._asdict().items())
        return f"{type(self).__name__}({shown})"

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self._values(), strict=True))

    def _replace(self, **changes: Any) -> Self:
        return type(self)(**{**self._asdict(), **changes})

"""Value: the immutable record that plurcast's modules make their records of.

A subclass lists its fields as annotations, in order, with defaults after the fields that
have none and no name starting with an underscore, as for `typing.NamedTuple`:

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
costs what a plain class costs. Its instances are made by one generic `__init__` until the
class has made MADE_BEFORE_OWN_INIT of them; then the class gets an `__init__` of its own,
compiled as namedtuple compiles its `__new__` (~50 µs, once), which makes one in a third of
the time: a command's start-up makes a few of each and compiles none, a bulk one (plur-import,
a burst of plur-send) makes thousands and pays the compile once a class (issue #16).
"""

from typing import Any, ClassVar, NoReturn, Self, dataclass_transform

MADE_BEFORE_OWN_INIT = 50
_made: dict[type, int] = {}  # by class, not in it: writing a class attribute slows its reads


@dataclass_transform(eq_default=True, frozen_default=True)
class Value:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _field_set: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Not inspect.get_annotations: plur-post does not load inspect (plurcast.deferred).
        own = tuple(cls.__dict__.get("__annotations__", ()))  # noqa: RUF063
        fields = cls._fields + own
        given = {name: cls.__dict__[name] for name in own if name in cls.__dict__}
        defaults = {**cls._defaults, **given}
        after_default = False
        for field in fields:
            if field.startswith("_"):  # as for NamedTuple; the own __init__'s names start so
                raise TypeError(f"{cls.__name__}: field {field!r} starts with an underscore")
            if field in defaults:
                after_default = True
            elif after_default:
                raise TypeError(
                    f"{cls.__name__}: field {field!r} has no default, one before it has"
                )
        cls._fields = fields
        cls._defaults = defaults
        cls._field_set = frozenset(fields)
        if "__init__" not in cls.__dict__:  # a class of its own to replace, not its base's
            type.__setattr__(cls, "__init__", Value.__init__)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        made = _made[cls] = _made.get(cls, 0) + 1
        if made == MADE_BEFORE_OWN_INIT and cls.__dict__.get("__init__") is Value.__init__:
            type.__setattr__(cls, "__init__", _own_init(cls))
        fields = self._fields
        if not kwargs and len(args) == len(fields):
            self.__dict__.update(zip(fields, args, strict=True))
            return
        values = self._defaults.copy()
        values.update(zip(fields, args, strict=False))  # the rest come by name or by default
        values.update(kwargs)
        if (
            len(args) > len(fields)
            or len(values) != len(fields)
            or not kwargs.keys() <= self._field_set
            or not kwargs.keys().isdisjoint(fields[: len(args)])
        ):
            self._refuse(args, kwargs)
        self.__dict__.update(values)

    def _refuse(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
        """Raise the TypeError a function with these parameters raises for these arguments."""
        fields, name = self._fields, type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments but {len(args)} were given")
        for key in kwargs:
            if key not in self._field_set:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in fields[: len(args)]:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
        given = {*fields[: len(args)], *kwargs, *self._defaults}
        missing = next(field for field in fields if field not in given)
        raise TypeError(f"{name}() missing required argument {missing!r}")

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
        if not changes.keys() <= self._field_set:
            unknown = min(changes.keys() - self._field_set)
            raise TypeError(f"_replace() got an unexpected keyword argument {unknown!r}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        return new


def _own_init(cls: type[Value]) -> Any:
    """An `__init__` for `cls` alone, its fields its parameters, as namedtuple writes its
    `__new__`: what a function with these parameters refuses, it refuses."""
    fields = cls._fields
    parameters = "".join(
        f", {field}=_defaults_[{field!r}]" if field in cls._defaults else f", {field}"
        for field in fields
    )
    body = "".join(f"\n    _own_[{field!r}] = {field}" for field in fields)
    namespace: dict[str, Any] = {"_defaults_": cls._defaults}
    exec(f"def __init__(_self_{parameters}):\n    _own_ = _self_.__dict__{body}\n", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init

"""Standard-library modules that click, logging, pathlib or our own modules import and a
command's usual path never uses, imported on their first use instead.

click imports `inspect` (with ast, dis and tokenize; ~16 M of plur-post --schedule's 270 M
instructions) to clean option help texts, which plurcast.cliparse.Option keeps as written.
logging imports `traceback` (with linecache, tokenize and textwrap, whose patterns compile as
they load: ~10 M of plur-send --once's 247 M) to format a logged exception, which a run that
logs none never does. pathlib imports `fnmatch` (to match and glob), `ntpath` (for Windows
paths) and, through urllib.parse, `ipaddress` (to check a URL's bracketed host): ~7 M of
every command's start-up, for functions that none of them calls. uuid (which click imports)
imports `platform` only to call platform.system() as it loads, and platform compiles a dozen
patterns as it loads (~8 M): on POSIX its stand-in answers system() itself, from os.uname(),
as platform does there. click takes `gettext` and `ngettext` from gettext as it loads, to
translate the texts of errors and help, which a command's usual path never shows; gettext
compiles its plural-forms tokenizer as it loads (~4 M): the stand-in's two functions import it
on their first call. Our own modules import `json` (~5 M, its patterns compiled as it loads),
which a plain post (its metadata "{}") and a --once run with nothing due never call. tomllib
reads four of `string`'s constants as it loads (string compiles Template's pattern: ~1.6 M),
which the stand-in holds, and compiles its patterns for numbers, dates and times (~6 M,
`tomllib._re`), which a config of strings, arrays and tables never matches: the stand-in's
patterns and functions import it on their first use.
A command's console script (plurcast.bulk.console) puts a `Deferred` module in each one's
place before click is imported: the first attribute anything reads from it imports the real module,
which then stands in sys.modules, and the stand-in answers from a copy of its namespace.
Each stands for a module, not a package: it has no `__path__` (which the import system asks
of a module at each `from … import`). (importlib.util.LazyLoader cannot do this on Python
3.11: the import statement itself reads the module's __spec__, which loads it.)
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable
from typing import Any

MODULES = (
    "inspect",
    "traceback",
    "ipaddress",
    "fnmatch",
    "ntpath",
    "platform",
    "gettext",
    "json",
    "string",
    "tomllib._re",
)


class Deferred(types.ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        if attribute == "__path__":
            raise AttributeError(attribute)
        return getattr(self.load(), attribute)

    def load(self) -> types.ModuleType:
        """The module itself, imported on the first call."""
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)
        return module


def _loaded(name: str) -> types.ModuleType:
    module = sys.modules[name]
    return module.load() if isinstance(module, Deferred) else module


def _forward(name: str, function: str) -> Callable[..., Any]:
    """Module `name`'s `function`, called through a stand-in that imports the module first."""

    def call(*args: Any) -> Any:
        return getattr(_loaded(name), function)(*args)

    call.__name__ = call.__qualname__ = function
    return call


class _Value:
    """Module `name`'s `attribute` (a compiled pattern), whose methods import the module first."""

    __slots__ = ("_attribute", "_name")

    def __init__(self, name: str, attribute: str) -> None:
        self._name, self._attribute = name, attribute

    def __getattr__(self, method: str) -> Any:
        return getattr(getattr(_loaded(self._name), self._attribute), method)


def _system() -> str:
    """platform.system() where os.uname() exists: its sysname ("Linux", "Darwin", …)."""
    return os.uname().sysname


_LOWER, _UPPER, _DIGITS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
_PUNCTUATION, _WHITESPACE = r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~""", " \t\n\r\x0b\x0c"
_TOMLLIB_RE = "tomllib._re"

# What a stand-in answers without importing its module.
ANSWERS: dict[str, dict[str, Any]] = {
    "gettext": {f: _forward("gettext", f) for f in ("gettext", "ngettext")},
    **({"platform": {"system": _system}} if hasattr(os, "uname") else {}),
    "string": {
        "whitespace": _WHITESPACE,
        "ascii_lowercase": _LOWER,
        "ascii_uppercase": _UPPER,
        "ascii_letters": _LOWER + _UPPER,
        "digits": _DIGITS,
        "hexdigits": _DIGITS + "abcdef" + "ABCDEF",
        "octdigits": "01234567",
        "punctuation": _PUNCTUATION,
        "printable": _DIGITS + _LOWER + _UPPER + _PUNCTUATION + _WHITESPACE,
    },
    _TOMLLIB_RE: {
        **{p: _Value(_TOMLLIB_RE, p) for p in ("RE_DATETIME", "RE_LOCALTIME", "RE_NUMBER")},
        **{
            f: _forward(_TOMLLIB_RE, f)
            for f in ("match_to_datetime", "match_to_localtime", "match_to_number")
        },
    },
}


def defer(names: tuple[str, ...] = MODULES) -> None:
    """Stand a `Deferred` module in for each of `names` not imported yet."""
    for name in names:
        if name not in sys.modules:
            stand_in = Deferred(name)
            stand_in.__dict__.update(ANSWERS.get(name, {}))
            sys.modules[name] = stand_in

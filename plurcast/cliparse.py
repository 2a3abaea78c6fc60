"""How our commands declare and parse their options: click's, without two start-up costs.

- click cleans every option's help text with `inspect.cleandoc` as the option is made, and
  `inspect` is the one module of click's imports that nothing else on a command's usual path
  needs (~16 M of plur-post --schedule's 270 M instructions; plurcast.bulk defers it to
  first use). Our help texts are written clean — one line, no indentation, which
  tests/test_cli_options.py checks of every option — so `Option` keeps them as written.
- click's parser tries every option as a long one first: `-s` is looked up as a long option,
  and the miss builds a "No such option" error, whose close-match suggestions load difflib
  and whose text asks gettext (which imports locale), before `-s` is matched as the short
  option it is (~7 M instructions of `plur-post x -s 30m`). `Parser` matches a short option
  straight away; what it accepts, and every error, stay click's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.parser import _normalize_opt, _OptionParser, _ParsingState

F = TypeVar("F", bound=Callable[..., Any])


class Option(click.Option):
    """A click option whose help text is kept as written (see the module's docstring)."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = help


def option(*param_decls: str, **attrs: Any) -> Callable[[F], F]:
    """`click.option`, making an `Option`."""
    return click.option(*param_decls, cls=Option, **attrs)


class Parser(_OptionParser):
    def _process_opts(self, arg: str, state: _ParsingState) -> None:
        # click's own order, less the raised and caught error: an argument with a single
        # prefix character (`-s`, `-s30m`, `-vq`) that is no long option is short ones.
        if arg[:2] not in self._opt_prefixes:
            name = _normalize_opt(arg.split("=", 1)[0], self.ctx)
            if name not in self._long_opt:
                self._match_short_opt(arg, state)
                return
        super()._process_opts(arg, state)


def make_parser(command: click.Command, ctx: click.Context) -> Parser:
    """`click.Command.make_parser`, with our `Parser`."""
    parser = Parser(ctx)
    for param in command.get_params(ctx):
        param.add_to_parser(parser, ctx)
    return parser

"""Our commands' options and parser (plurcast.cliparse) are click's, less two start-up costs.

Every command of the six console scripts is ours (clikit.Command or Group, so our parser and
help option), every option a cliparse.Option whose help text is what click's own cleaning would
have made of it, and the parser reads any command line as click's reads it — the same values,
or the same error.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

import click
import pytest
from click.parser import _OptionParser
from hypothesis import given, settings
from hypothesis import strategies as st

from plurcast import clikit, cliparse

SCRIPTS = (
    "plur_post.cli",
    "plur_queue.cli",
    "plur_queue.plur_history",
    "plur_queue.plur_import",
    "plur_queue.plur_export",
    "plur_send.cli",
)


def commands() -> Iterator[tuple[str, click.Command]]:
    """Every command and group of the console scripts, lazy ones loaded, by its path."""

    def walk(path: str, command: click.Command) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{path} {name}"
                yield from walk(f"{path} {name}", sub)

    for module in SCRIPTS:
        yield from walk(module, importlib.import_module(module).cli)


ALL = dict(commands())


def test_every_command_and_its_subcommands_are_found() -> None:
    assert len(ALL) > 30
    assert "plur_queue.cli list" in ALL
    assert "plur_queue.cli failed retry" in ALL
    assert "plur_send.cli status" in ALL


@pytest.mark.parametrize("path", ALL)
def test_a_command_is_ours_and_so_are_its_options(path: str) -> None:
    command = ALL[path]
    assert isinstance(command, clikit.Command | clikit.Group), path
    ctx = click.Context(command, **command.context_settings)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            assert isinstance(param, cliparse.Option), (path, param.name)
            assert param.help or param.hidden, (path, param.name)
            assert (param.help or "") == inspect.cleandoc(param.help or ""), (path, param.name)
        else:
            assert isinstance(param, click.Argument), (path, param.name)


def test_an_option_keeps_its_help_as_written() -> None:
    """What the check above guards: click would clean a text that needs it; ours keeps it."""
    written = "  Fly\n  a kite."
    assert cliparse.Option(["--kite"], help=written).help == written
    assert click.Option(["--kite"], help=written).help == "Fly\na kite."


# A command with every kind of option our commands have: short and long, flags, values,
# repeatable, counted, several values, a flag's secondary spelling and an argument.
KITE = click.Command(
    "kite",
    params=[
        click.Option(["-s", "--schedule"]),
        click.Option(["-p", "--platform"], multiple=True),
        click.Option(["-v", "--verbose"], is_flag=True),
        click.Option(["-q"], count=True),
        click.Option(["-f", "--format", "fmt"], type=click.Choice(["text", "json"])),
        click.Option(["--dry-run/--no-dry-run"]),
        click.Option(["-i", "--image"], nargs=2, multiple=True),
        click.Option(["-sX", "--long-with-short"], is_flag=True),
        click.Argument(["content"], nargs=-1),
    ],
)
TOKENS = (
    "-s", "-s30m", "-s=30m", "--schedule", "--schedule=1h", "-p", "-pnostr", "-vq", "-qq",
    "-qv", "-v", "-vs", "-f", "-fjson", "-fxml", "--format=json", "--dry-run",
    "--no-dry-run", "-i", "--image", "-sX", "-sX=1", "--long-with-short", "-x", "-vx", "--nope",
    "--nope=1", "--sched", "-", "--", "x", "30m", "nostr", "json", "a.jpg", "-=", "-s=",
    "--verbose=1",
)  # fmt: skip


def parse(parser: _OptionParser, args: list[str]) -> object:
    try:
        opts, rest, order = parser.parse_args(list(args))
    except click.UsageError as exc:
        return (type(exc), exc.format_message())
    return (opts, rest, [p.name for p in order])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_the_parser_reads_a_command_line_as_clicks_does(args: list[str]) -> None:
    ctx = click.Context(KITE)
    ours = parse(cliparse.make_parser(KITE, ctx), args)
    assert ours == parse(click.Command.make_parser(KITE, ctx), args)


@pytest.mark.parametrize(
    "args",
    [["-s", "30m", "x"], ["-s30m", "-vqq", "x"], ["-s=1h"], ["-sX=1"], ["-x"], ["-vx"], ["--nope"]],
)
def test_the_parser_agrees_on_the_usual_lines(args: list[str]) -> None:
    ctx = click.Context(KITE)
    assert parse(cliparse.make_parser(KITE, ctx), args) == parse(
        click.Command.make_parser(KITE, ctx), args
    )

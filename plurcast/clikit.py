"""What the three CLIs share: exit codes and `Error:` lines, --format, stdin, prompts.

Errors are mapped here and nowhere else: a domain error prints one line
`Error: <what> — <fix>` on stderr and exits with its code; click's usage errors
exit 3 (invalid input) rather than click's 2, which means "config/auth" here.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TypeVar

import click

from plurcast import cliparse, logchoices
from plurcast.errors import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUNTIME,
    Declined,
    InvalidInput,
    PlurcastError,
)
from plurcast.output import FORMATS, discard_stdout, emit_lines
from plurcast.secrets import redact

if TYPE_CHECKING:
    from plurcast.store.base import Database

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def now(db: Database | None = None) -> datetime:
    """The current time, to the second; tests replace this to step through time.

    With the queue's database, that database's clock: on PostgreSQL the server's, which is
    the one every daemon on every host judges due times, leases and heartbeats by (so a host
    whose clock is off neither misjudges a daemon's health nor queues a post early or late);
    on SQLite the host's, the only one there is.
    """
    if db is None:
        return datetime.now(UTC).replace(microsecond=0)
    return datetime.fromtimestamp(db.now_ms() // 1000, UTC)


def closed_at_end(db: Database) -> Database:
    """`db`, closed when the command ends, however it ends (click closes the context).

    Closing is what checkpoints a SQLite database's WAL into the file (and fsyncs it), as
    the last connection to it closes. Left to the garbage collector, that happens only in
    the interpreter's exit collection: a `sqlite3.Connection` is in a reference cycle (its
    statement cache), and commands run with the collector off (plurcast.bulk).
    """
    click.get_current_context().call_on_close(db.close)
    return db


def fail(message: str, code: int, details: Sequence[str] = ()) -> NoReturn:
    stderr_lines([f"Error: {message}", *(f"  {line}" for line in details)])
    sys.exit(code)


_DONE: list[str] = []


def done_already(what: str) -> None:
    """Say, should the command's output fail after this, what it has done all the same
    ("post … is queued all the same: …"): the command exits 1, and a script that takes that
    for "nothing happened" and runs it again would post twice."""
    _DONE.append(what)


def stderr_lines(lines: Iterable[str]) -> None:
    """Lines for a person on stderr (`Error: …`, `Warning: …`), as every error is written:
    secrets redacted, made printable."""
    emit_lines((redact(line) for line in lines), err=True)


def _run(command: click.Command, args: Any, kwargs: dict[str, Any]) -> NoReturn:
    kwargs["standalone_mode"] = False
    debug = os.environ.get("PLURCAST_DEBUG") == "1"
    _stand_in_for_closed_streams()
    _DONE.clear()  # what this run has done, not an earlier run's in the same process (tests)
    code: Any = 0
    try:
        try:
            code = click.Command.main(command, args, **kwargs)
        except SystemExit as exc:  # a command's own exit code: flush its output first
            code = exc.code
        sys.stdout.flush()  # here, so that a reader gone away is noticed below
    except PlurcastError as exc:
        if debug:
            raise
        fail(str(exc), exc.exit_code, exc.details)
    except click.exceptions.NoArgsIsHelpError as exc:
        sys.stderr.write(exc.format_message() + "\n")
        sys.exit(EXIT_INVALID)
    except click.UsageError as exc:
        if debug:
            raise
        path = exc.ctx.command_path if exc.ctx else command.name
        fail(f"{exc.format_message().rstrip('.')} — see '{path} --help'", EXIT_INVALID)
    except click.Abort:
        fail("interrupted", 130)
    except (BrokenPipeError, _ReaderGone):
        # The reader went away (`| head -1`): it has what it wanted, which is no error of
        # ours; a code the command gave before its output was flushed still stands.
        discard_stdout()
        sys.exit(code if isinstance(code, int) else EXIT_OK)
    except click.ClickException as exc:
        fail(exc.format_message(), EXIT_RUNTIME)
    except sqlite3.Error as exc:
        if debug:
            raise
        from plurcast.store.connection import database_error

        fail(str(database_error(exc)), EXIT_RUNTIME)
    except OSError as exc:
        if debug:
            raise
        if exc.errno not in _FULL_OR_FAILING:
            _internal_error(exc)
        # stdout (`> file` on a full disk), a file being written (`plur-export -o`): a
        # backup that did not fit must not look like one that did.
        where = exc.filename or "the output"
        hint = (
            "give it somewhere to write, e.g. > /dev/null"
            if exc.errno == errno.EBADF
            else "make room there, or write elsewhere"
        )
        fail(f"cannot write {where}: {exc.strerror} — {'; '.join([*_DONE, hint])}", EXIT_RUNTIME)
    except Exception as exc:
        if debug:
            raise
        _internal_error(exc)
    sys.exit(code if isinstance(code, int) else 0)


_FULL_OR_FAILING = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF)


class _ClosedStream(io.TextIOBase):
    """stdout or stderr for a command started with it closed: a write to stdout fails, as
    `ls >&-` does; one to stderr is lost (there is nowhere to say anything)."""

    def __init__(self, refuses: bool) -> None:
        self.refuses = refuses

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.refuses:
            raise OSError(errno.EBADF, "stdout is closed")
        return len(text)


def _stand_in_for_closed_streams() -> None:
    """Started with stdout or stderr closed (`>&-`, `2>&-`), Python has None for it and
    every print failed as an internal error. Their descriptors get /dev/null, so that no file
    opened later takes the number and receives what was meant for the terminal; a write to
    stdout is then an error (exit 1), and what is said on a closed stderr is lost, the exit
    code staying right."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            setattr(sys, name, _ClosedStream(refuses=fd == 1))


def _internal_error(exc: Exception) -> NoReturn:
    fail(
        f"internal error: {exc!r} — please report it; PLURCAST_DEBUG=1 shows the traceback",
        EXIT_RUNTIME,
    )


class _ReaderGone(Exception):
    """stdout's reader closed the pipe; raised instead of BrokenPipeError, which click would
    turn into exit 1 before _run sees it."""


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise _ReaderGone from None


# --- --log-level, --log-format, -v on every command (global, as in the original) ------------

_LOG_META = "plurcast.logging"
LOG_OPTION_NAMES = ("log_level", "log_format", "verbose")


def _remember_logging(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Collect the logging options as click reads them; set logging up once one was given.

    Given on the group or on its command (`plur-queue --log-level debug list`, `plur-queue
    list --log-level debug`), the command's own wins. Given nowhere, logging is left as it
    is: plur-post and plur-queue then print only warnings, as bare lines.
    """
    assert param.name is not None
    chosen: dict[str, Any] = ctx.find_root().meta.setdefault(_LOG_META, {})
    if ctx.get_parameter_source(param.name) in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    ):
        from plurcast import logs  # logging only for a run that asked for it

        chosen[param.name] = value.lower() if isinstance(value, str) else value
        logs.setup(
            chosen.get("log_level", "info"),
            chosen.get("log_format"),
            verbose=bool(chosen.get("verbose")),
        )


def verbose_requested() -> bool:
    """Whether -v/--verbose was given to the running command (or its group)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get(_LOG_META, {}).get("verbose"))


def logging_options() -> list[click.Option]:
    """The original's logging flags; their values never reach the command's function."""
    common: dict[str, Any] = {
        "expose_value": False,
        "callback": _remember_logging,
        "show_envvar": True,
    }
    return [
        cliparse.Option(
            ["--log-level"],
            type=click.Choice(logchoices.LEVELS, case_sensitive=False),
            envvar="PLURCAST_LOG_LEVEL",
            metavar="LEVEL",
            help="Log from this level up: error, warn, info, debug, trace (trace adds the "
            "SDKs' own lines) [default: warnings only; plur-send: info].",
            **common,
        ),
        cliparse.Option(
            ["--log-format"],
            type=click.Choice(logchoices.FORMATS, case_sensitive=False),
            envvar="PLURCAST_LOG_FORMAT",
            metavar="FORMAT",
            help="Log lines on stderr as text, json (one object a line) or pretty "
            "(coloured); or journal (systemd's journal, with fields).",
            **common,
        ),
        cliparse.Option(
            ["-v", "--verbose"], is_flag=True, help="Debug logging (--log-level debug).", **common
        ),
    ]


def with_logging_options(command: click.Command) -> click.Command:
    """Add the logging flags to a command that does not define them itself."""
    names = {p.name for p in command.params}
    if not names & set(LOG_OPTION_NAMES):
        command.params.extend(logging_options())
    return command


# click's own version and help options ask gettext for their texts, and gettext's first
# lookup imports `locale` (~4.7 M instructions of every command's start-up): ours say the
# same without asking. (No translation of click's texts is installed anyway.)
VERSION_HELP = "Show the version and exit."
HELP_HELP = "Show this message and exit."


def version_option(prog_name: str) -> Callable[[F], F]:
    """`-V/--version`: prints `PROG, version X` and exits, as click.version_option does."""
    from plurcast import __version__

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value and not ctx.resilient_parsing:
            click.echo(f"{prog_name}, version {__version__}", color=ctx.color)
            ctx.exit()

    return cliparse.option(
        "-V",
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=show,
        help=VERSION_HELP,
    )


def _show_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def help_option(command: click.Command, ctx: click.Context) -> click.Option | None:
    """`-h/--help` for `command`, made once (click's callback order compares the object)."""
    names = command.get_help_option_names(ctx)
    if not names or not command.add_help_option:
        return None
    made: click.Option | None = getattr(command, "_plurcast_help", None)
    if made is None:
        made = cliparse.Option(
            names,
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_show_help,
            help=HELP_HELP,
        )
        command._plurcast_help = made  # type: ignore[attr-defined]
    return made


class Command(click.Command):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with_logging_options(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return help_option(self, ctx)

    def make_parser(self, ctx: click.Context) -> cliparse.Parser:
        return cliparse.make_parser(self, ctx)

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> NoReturn:
        _run(self, args, kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:  # --help prints here
        with _reader_may_leave():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _reader_may_leave():
            return super().invoke(ctx)


class Group(click.Group):
    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with_logging_options(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return help_option(self, ctx)

    def make_parser(self, ctx: click.Context) -> cliparse.Parser:
        return cliparse.make_parser(self, ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else with_logging_options(command)

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> NoReturn:
        _run(self, args, kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _reader_may_leave():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _reader_may_leave():
            return super().invoke(ctx)


Group.group_class = Group


class LazyGroup(Group):
    """A group whose commands live in modules imported only when one of them is wanted.

    `lazy` maps each command name to its module, whose COMMANDS hold it: `plur-queue list`
    then does not pay for the modules of reschedule, stats or failed (~12 ms).
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            for command in importlib.import_module(self.lazy[cmd_name]).COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


def _format_option(*names: str) -> Callable[[F], F]:
    return cliparse.option(
        *names,
        "fmt",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="Output format: text (a table on a terminal, tab-separated when piped), json, jsonl.",
    )


def format_option(func: F) -> F:
    """`-f/--format` — the usual spelling."""
    return _format_option("-f", "--format")(func)


def format_long_option(func: F) -> F:
    """`--format` alone, for commands where `-f` means --force (as in the original tool)."""
    return _format_option("--format")(func)


def in_range(setting: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback: the value must lie in the config setting's range (config.RANGES),
    finite — click's FloatRange lets nan through."""
    from plurcast.config import RANGES

    allowed = RANGES[setting]

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and not allowed.holds(value):
            shown = f"{value:g}" if isinstance(value, float) else f"{value:,}"
            raise click.BadParameter(f"{shown} is not {allowed}")
        return value

    return check


def read_content(argument: str | None) -> str:
    """The post text: the argument, or stdin when it is `-` or absent and piped."""
    from plurcast import content

    if argument is not None and argument != "-":
        return argument
    stdin = _stdin_bytes()
    if stdin is None or (argument is None and sys.stdin.isatty()):
        raise InvalidInput(
            "no content given", 'pass it as an argument or on stdin: echo "Hello" | plur-post'
        )
    raw = stdin.read(content.MAX_BYTES + 1)
    if len(raw) > content.MAX_BYTES:
        raise InvalidInput(
            f"content is over the limit of {content.MAX_BYTES:,} bytes", "shorten it"
        )
    return content.decode(raw)


def warn(warning: str) -> None:
    """`Warning: …` on stderr: something allowed, but probably not what was meant."""
    emit_lines([f"Warning: {warning}"], err=True)


def confirm(question: str) -> None:
    """Ask `question (y/N)` on stderr and read the answer from stdin; anything but yes declines."""
    sys.stderr.write(f"{question} (y/N) ")
    sys.stderr.flush()
    stdin = _stdin_bytes()
    # Bytes, so that an answer in another encoding is a "no", not a decoding error.
    answer = stdin.readline().decode("utf-8", "replace") if stdin is not None else ""
    if answer.strip().lower() not in ("y", "yes"):
        if not answer:
            sys.stderr.write("\n")
        raise Declined("Cancelled by user", "nothing was changed; answer y, or pass --force")


def _stdin_bytes() -> BinaryIO | None:
    """stdin as bytes; None when it is closed (`<&-`), which reads as no input."""
    stream = sys.stdin
    if stream is None or stream.closed:
        return None
    return stream.buffer

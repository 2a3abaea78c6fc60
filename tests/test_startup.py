"""What each command imports on its way (issue #16): a heavy module only on the paths that use it.

The tools run at a prompt and in loops of hundreds, so every run pays Python's start-up and
our imports; `make bench` measures the time, and this guards the discipline that keeps it
down, so that a new feature cannot silently make every command pay for it. Each case runs
the real console script in a fresh interpreter and lists what it imported by the end.
"""

from __future__ import annotations

import gettext
import os
import string
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config, deferred
from plurcast.store import connect
from tests.images import photo
from tests.peers.nostr import InProcessRelay

BIN = Path(sys.executable).parent

# Runs the console script given as argv[1] and writes, at exit, every module it imported —
# not one that stands deferred, never used (plurcast.deferred) — and, to RECORD.gc, whether
# the cycle collector was on and how many objects it had frozen.
_RECORD = """
import atexit, gc, runpy, sys
record, sys.argv = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(record, "w").write("\\n".join(
    name for name, module in sys.modules.items() if type(module).__name__ != "Deferred"
)))
atexit.register(
    lambda: open(record + ".gc", "w").write(f"{gc.isenabled()} {gc.get_freeze_count()}")
)
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# Never needed to read the config, open the database, queue, list or find nothing due.
SDKS = ("nostr_sdk", "mastodon", "requests", "atproto", "atproto_client", "httpx")
HEAVY = (
    *SDKS,
    "rich",  # tables on a terminal only
    "dateparser",  # free-form time expressions only
    "regex",  # counting text at or above U+0300 only
    "sqlite_utils",  # migrations only
    "psycopg",  # a PostgreSQL database only
    "PIL",  # images only
    "yaml",  # import/export of Markdown front matter only
    "cronsim",  # recurring posts only
)
# Only publishing needs the engine, the store's statements that claim and record deliveries,
# and asyncio (~200 M instructions with ssl and sockets).
PUBLISHING = (
    "asyncio",
    "ssl",
    "plurcast.engine",
    "plurcast.pool",
    "plurcast.outcomes",
    "plurcast.daemon",
    "plurcast.store.claiming",
    "plurcast.store.recording",
    "plurcast.store.rates",
)
# A one-off post needs neither recurring posts nor logging.
RECURRING = ("plurcast.schedules", "plurcast.recurrence", "logging")
# A post without images needs none of the media code (checks, store and its hashlib,
# uploads, link cards); one without random:MIN-MAX no random.
MEDIA = (
    "plurcast.media",
    "plurcast.platforms.blossom",
    "plurcast.linkcards",
    "plurcast.store.media",
)
PLAIN = (*MEDIA, "random")
# A post with no metadata (no --cw, --lang, images, proof of work…) stores "{}" without json,
# and a --once run with nothing due reads none.
NO_JSON = ("json",)
# tomllib reads string's constants (held by the stand-in) and matches numbers, dates and times
# with tomllib._re's patterns, which the usual config (strings, arrays, tables) never needs;
# logging imports string's Template itself.
CONFIG_UNUSED = ("string", "tomllib._re")
# click's parser and option texts need none of these on a command's way: inspect (cleaning help
# texts: plurcast.cliparse.Option), difflib and the gettext lookup that imports locale (the
# error click built for every short option: plurcast.cliparse.Parser), and gettext itself
# (the texts of errors and help).
CLICK_UNUSED = ("inspect", "difflib", "locale", "gettext")
# What pathlib imports to match and glob, for Windows paths, and (urllib.parse) to check a
# URL's bracketed host: no command's start-up calls any of them.
PATHLIB_UNUSED = ("fnmatch", "ntpath", "ipaddress")
# uuid (click imports it) asks platform.system() as it loads, which the stand-in answers.
UUID_UNUSED = ("platform",)
UNUSED = CLICK_UNUSED + PATHLIB_UNUSED + UUID_UNUSED
# What logging imports to format an exception (traceback, and its linecache and tokenize),
# never needed by a run that logs none.
UNLOGGED = ("traceback", "linecache", "tokenize")
# Our records are NamedTuples or plain classes (models.Post/Delivery): defining a dataclass
# costs ~6 M instructions. (orjson imports dataclasses itself: plur-queue list has it.)
NO_DATACLASSES = ("dataclasses",)
# Checking a post's accounts reads their settings (plurcast.platforms.*_settings), never the
# publishers; the Blossom client only uploads, so checking blossom_servers needs it neither.
ADAPTERS = (
    "plurcast.platforms.nostr",
    "plurcast.platforms.nostr_answers",
    "plurcast.platforms.mastodon",
    "plurcast.platforms.bluesky",
    "plurcast.platforms.bluesky_tid",
    "plurcast.platforms.blossom",
)


def imported(args: list[str], tmp_path: Path) -> set[str]:
    """Every module the console script args[0] imported while running args[1:]."""
    record = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", _RECORD, str(record), str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(record.read_text().split())


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (a package counts with its submodules) are among `modules`."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.fixture
def migrated(configured: Path) -> Path:
    """The usual config (three platforms, Blossom servers for Nostr's images) and a database
    already migrated."""
    text = configured.read_text()
    relays = 'relays = ["ws://127.0.0.1:1"]\n'
    assert relays in text
    configured.write_text(
        text.replace(relays, relays + 'blossom_servers = ["http://127.0.0.1:2"]\n')
    )
    connect(config.load().db_path).close()
    return configured


CASES = {
    "plur-post --schedule": (
        ["plur-post", "x", "--schedule", "30m"],
        (
            *HEAVY,
            *PUBLISHING,
            *RECURRING,
            *PLAIN,
            *NO_JSON,
            *CONFIG_UNUSED,
            *ADAPTERS,
            *NO_DATACLASSES,
            *UNUSED,
        ),
    ),
    "plur-post --schedule, a weekday": (
        ["plur-post", "Grüße", "-s", "fri 9am", "-f", "json"],
        HEAVY + PUBLISHING + RECURRING + ADAPTERS + UNUSED,
    ),
    "plur-post --draft": (
        ["plur-post", "x", "--draft"],
        HEAVY + PUBLISHING + RECURRING + ADAPTERS + NO_DATACLASSES + UNUSED,
    ),
    "plur-queue list -f json": (
        ["plur-queue", "list", "-f", "json"],
        HEAVY + PUBLISHING + ADAPTERS + UNUSED,
    ),
    "plur-queue list, piped": (
        ["plur-queue", "list"],
        HEAVY + PUBLISHING + ADAPTERS + UNUSED,
    ),
    # A --once run that finds nothing due ends without an event loop, and the daemon never
    # needs what manages it as a service (systemctl's subprocess, the unit file's shutil),
    # what writes posts (plurcast.queue), recurring posts while none is due, sd_notify's
    # socket outside systemd, retry jitter's random, or what shows a post or a daemon's health;
    # signals held while it started (plur_send.early) need only `_signal`.
    "plur-send --once, nothing due": (
        ["plur-send", "--once"],
        (
            *HEAVY,
            *ADAPTERS,
            *NO_DATACLASSES,
            *NO_JSON,
            "tomllib._re",
            "asyncio",
            "ssl",
            "plurcast.service",
            "subprocess",
            "shutil",
            "plurcast.queue",
            "plurcast.schedules",
            "socket",
            "random",
            "plurcast.views",
            "plurcast.timefmt",
            "signal",  # its enums (~3 M instructions): the loop's asyncio brings it
            *UNUSED,
            *UNLOGGED,
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_command_imports_only_what_its_path_needs(
    case: str, migrated: Path, tmp_path: Path
) -> None:
    args, forbidden = CASES[case]
    assert loaded(imported(args, tmp_path), forbidden) == []


@pytest.mark.slow
def test_the_record_sees_what_a_path_imports(migrated: Path, tmp_path: Path) -> None:
    """The guard can fail: a free-form time brings dateparser, a recurring post its rules."""
    modules = imported(["plur-post", "x", "-s", "in 2 fortnights"], tmp_path)
    assert "dateparser" in loaded(modules, HEAVY)
    modules = imported(["plur-post", "x", "--every", "1d"], tmp_path)
    assert loaded(modules, RECURRING) == sorted(RECURRING)
    picture = tmp_path / "kite.png"
    picture.write_bytes(photo("PNG", (40, 30)))
    modules = imported(["plur-post", "x", "-p", "mastodon", "--image", str(picture), "--alt",
                        "A kite", "-s", "1h"], tmp_path)  # fmt: skip
    assert "PIL" in loaded(modules, HEAVY)
    assert loaded(modules, MEDIA) == ["plurcast.media", "plurcast.store.media"]


@pytest.mark.slow
def test_commands_run_with_the_cycle_collector_off_and_the_daemon_with_it_on(
    migrated: Path, tmp_path: Path
) -> None:
    """A command is imported and run with the collector off (plurcast.bulk.console): it
    never walks what its imports made, nor at exit — they are frozen (~20,000 objects; a
    plain import freezes none). plur-send, which may run for months, turns it back on once
    its imports are done, and no collection of its walks them either."""
    collector = tmp_path / "modules.txt.gc"

    def state(args: list[str]) -> tuple[str, int]:
        imported(args, tmp_path)
        enabled, frozen = collector.read_text().split()
        return enabled, int(frozen)

    for args in (["plur-post", "x", "--draft"], ["plur-queue", "list"], ["plur-history"]):
        enabled, frozen = state(args)
        assert enabled == "False" and frozen > 15_000, args
    enabled, frozen = state(["plur-send", "--once"])
    assert enabled == "True" and frozen > 15_000


@pytest.mark.slow
def test_plur_post_closes_its_database_though_it_exits_frozen(
    write_config: Callable[[str], Path],
    nostr_key: Path,
    db_path: Path,
    inprocess_relay: InProcessRelay,
    tmp_path: Path,
) -> None:
    """plur-post freezes what its run made when it ends (bulk.console frozen_exit), so no
    exit collection closes its SQLite connection (in a cycle with its statement cache): it
    closes the database itself, however it ends, and the last connection's close
    checkpoints the WAL into the file and removes it. A path left open keeps its -wal file."""
    write_config(f'[nostr]\nkeys_file = "{nostr_key}"\nrelays = ["{inprocess_relay.url}"]\n')
    wal = db_path.with_name(db_path.name + "-wal")
    runs = {
        "published now": (["sent now"], 0),
        "scheduled": (["later", "-s", "1h"], 0),
        "a draft": (["some day", "--draft"], 0),
        "refused after the database is open": (["late", "-s", "2020-01-01 10:00"], 3),
    }
    for name, (args, code) in runs.items():
        result = subprocess.run(
            [str(BIN / "plur-post"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == code, (name, result.stderr)
        assert db_path.exists() and not wal.exists(), name
    assert [e["content"] for e in inprocess_relay.fetch_events()] == ["sent now"]
    enabled, frozen = _exit_state(["plur-post", "once more"], tmp_path)
    draft = _exit_state(["plur-post", "x", "--draft"], tmp_path)[1]
    assert enabled == "False" and frozen > draft + 20_000  # nostr-sdk's objects among them


def _exit_state(args: list[str], tmp_path: Path) -> tuple[str, int]:
    """Whether the collector was on when args ran to its end, and how many objects were frozen."""
    imported(args, tmp_path)
    enabled, frozen = (tmp_path / "modules.txt.gc").read_text().split()
    return enabled, int(frozen)


@pytest.mark.slow
def test_a_deferred_module_is_imported_when_a_path_uses_it(migrated: Path, tmp_path: Path) -> None:
    """--help has click clean the command's text with inspect.cleandoc and translate its
    headings with gettext: the stand-ins (plurcast.deferred) import them then, and the help is
    printed."""
    assert {"inspect", "gettext"} <= imported(["plur-post", "--help"], tmp_path)
    assert {"inspect", "gettext"} <= imported(["plur-queue", "stats", "--help"], tmp_path)


def test_a_deferred_module_loads_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Named, a deferred module is not run; its first attribute runs it, once, and from then
    on the stand-in and sys.modules answer as the module itself."""
    (tmp_path / "kite_lines.py").write_text("import sys\nsys.kite_runs += 1\nLENGTH = 30\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "kite_runs", 0, raising=False)
    monkeypatch.delitem(sys.modules, "kite_lines", raising=False)
    deferred.defer(("kite_lines",))
    import kite_lines

    assert isinstance(kite_lines, deferred.Deferred)
    assert sys.kite_runs == 0  # type: ignore[attr-defined]
    assert kite_lines.LENGTH == 30
    from kite_lines import LENGTH

    assert LENGTH == 30
    assert sys.kite_runs == 1  # type: ignore[attr-defined]
    assert not isinstance(sys.modules["kite_lines"], deferred.Deferred)
    assert sys.modules["kite_lines"].LENGTH == 30
    assert kite_lines.__file__ == str(tmp_path / "kite_lines.py")
    with pytest.raises(AttributeError):
        kite_lines.WIDTH  # noqa: B018
    monkeypatch.delitem(sys.modules, "kite_lines")


def test_the_stand_in_for_gettext_translates_through_gettext() -> None:
    """What click took from gettext as it loaded imports gettext on its first call and
    answers as gettext does, with the catalogue gettext finds."""
    script = (
        "import sys; from plurcast import deferred; deferred.defer(); import gettext; "
        "from gettext import gettext as _, ngettext; print(type(sys.modules['gettext']).__name__); "
        "print(_('Usage:'), ngettext('{n} file', '{n} files', 2), _.__name__); "
        "print(type(sys.modules['gettext']).__name__, gettext.find('messages'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == [
        "Deferred",
        "Usage: {n} files gettext",
        f"module {gettext.find('messages')}",
    ]


TOML = """
text = "kite"
whole = 0x1F
real = 1.5e3
when = 1979-05-27T07:32:00+02:00
day = 1979-05-27
clock = 07:32:00.5
list = [1, "two", 3.0, inf]
[table]
"quoted key" = -7
"""


def test_tomllib_reads_every_kind_of_value_through_its_stand_ins() -> None:
    """tomllib loads beside the stand-ins for string and tomllib._re; a config of strings
    alone needs neither, and the first number, date or time imports tomllib._re."""
    script = (
        "import sys; from plurcast import deferred; deferred.defer(); import tomllib; "
        "kind = lambda: [type(sys.modules[m]).__name__ for m in ('string', 'tomllib._re')]; "
        "strings, values = sys.stdin.read().split('%%'); "
        "print(repr(tomllib.loads(strings)), *kind()); "
        "print(repr(tomllib.loads(values)), *kind())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input='text = "kite"\n[t]\nlist = ["a"]\n%%' + TOML,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    strings, values = done.stdout.splitlines()
    assert strings == "{'text': 'kite', 't': {'list': ['a']}} Deferred Deferred"
    assert values == f"{tomllib.loads(TOML)!r} Deferred module"


def test_the_stand_in_for_string_holds_its_constants() -> None:
    for name, value in deferred.ANSWERS["string"].items():
        assert getattr(string, name) == value, name


def test_the_stand_in_for_platform_answers_system_as_platform_does() -> None:
    """uuid learns from the stand-in's system() whether it is on Linux, without platform
    being run; what the stand-in answered is what platform itself answers once loaded."""
    script = (
        "import sys; from plurcast import deferred; deferred.defer(); import uuid, platform; "
        "print(type(sys.modules['platform']).__name__, uuid._LINUX, platform.system()); "
        "platform.uname(); print(type(sys.modules['platform']).__name__, platform.system())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    first, then = done.stdout.splitlines()
    assert first == f"Deferred {os.uname().sysname == 'Linux'} {os.uname().sysname}"
    assert then == f"module {os.uname().sysname}"


def test_an_exception_logged_after_start_up_has_its_traceback(tmp_path: Path) -> None:
    """traceback stands deferred through a console script's start-up; the first exception
    logged imports it, and the record shows the whole traceback, in every log format."""
    (tmp_path / "kite_main.py").write_text(
        "import logging, sys\n"
        "from plurcast import logs\n"
        "def main():\n"
        "    print(type(sys.modules['traceback']).__name__)\n"
        "    logs.setup('info', sys.argv[1])\n"
        "    try:\n"
        "        1 / 0\n"
        "    except ZeroDivisionError:\n"
        "        logging.getLogger('plurcast.kite').exception('the kite fell')\n"
        "    print(type(sys.modules['traceback']).__name__)\n"
    )
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
    script += "from plurcast.bulk import console; console('kite_main')"
    for fmt in ("text", "json"):
        done = subprocess.run(
            [sys.executable, "-c", script, fmt],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
            timeout=60,
            check=True,
        )
        assert done.stdout.split() == ["Deferred", "module"]
        assert "the kite fell" in done.stderr
        assert "Traceback (most recent call last)" in done.stderr
        assert "ZeroDivisionError: division by zero" in done.stderr
        assert "1 / 0" in done.stderr  # the source line: linecache read it

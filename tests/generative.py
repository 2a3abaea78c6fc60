"""The harness of the generated-input tests (issue 11; test_generative.py,
test_generative_planning.py): a seeded database and its copy per example, the strategies
every CLI shares (texts, time expressions, options, configs), and the checks every run must
pass —

- no internal error and no exception escaping the command,
- an exit code in {0, 1, 2, 3},
- no change to the database on a non-zero exit, except what is documented: a publish
  that failed is recorded for retry (plur-post now, plur-queue now / failed retry,
  plur-send --once) — nor to the media store beside it (`<data dir>/media`), and no
  file left by a failed plur-export -o,
- no raw control character in human-readable output (JSON, plur-history's CSV and what
  plur-export writes are exact data and not checked).

Immediate publishes go to nostr-sdk's in-process relay (fast and deterministic), or, rarely,
to an account whose relay does not listen (a failed publish, recorded for retry).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from plur_post.cli import cli as post_cli
from plurcast import clikit, output
from plurcast.media import files
from tests.helpers import NOW, PATIENCE, secret_file
from tests.peers.nostr import InProcessRelay

# What a terminal would act on; printable() must have escaped every one of them.
RAW_CONTROL = {chr(c) for c in (*range(9), *range(11, 32), *range(0x7F, 0xA0))} | set(
    "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
HOSTILE = [
    "abc\x1b[31mRED\x1b[0m\x07",
    "\u202eevil\u202c and \u2066isolated\u2069",
    "[/] hello [bold red]IMPORTANT[/bold red] :smile:",
    "👨\u200d👩\u200d👧\u200d👦 🇩🇪 e\u0301",
    "line one\nline two\r\nthree\x0bfour\x0c",
    "\x9b2J\x85next\u2028sep",
    "tab\tseparated\tvalues",
    "x" * 400,
    "---\nthread?\n---",
    "\udcff not utf-8",
]
GOOD_WHEN = [
    "30m", "2h", "1h30m", "90 minutes", "tomorrow 9am", "fri 15:30", "next monday 10:00",
    "2027-01-01 10:00", "2027-01-01T10:00:00Z", "2027-01-01 10:00 Europe/Berlin", "noon",
    "random:1h-2h", "Jan 1 10:00", "+2h", "-30m", "next", "now", "in 3 days at noon",
]  # fmt: skip
NEAR_MISS = [
    "tomorrow 25:00", "2027-02-30", "2027-13-01 10:00", "random:1h-1h", "random:10s-1m",
    "random:1h-99d", "+-2h", "--30m", "9999-12-31 23:59 UTC", "99999-01-01", "in in 2h",
    "30 m m", "0s", "-0m", "1e9h", "٣h", "1h\u200b30m", "2027-03-28 02:30 Europe/Berlin",
    "yesterday", "1 Jan 1970", "next next monday", "12:60", "13pm", "0am",
    "2027-01-01 10:00 Mars/Base", "2027-01-01 10:00 posix/Europe/Berlin", "", " ", "random:",
    "tomorrow at", "2027-01-01T10:00+25:00", "1" * 250, "36526d", "\x1b[2J",
]  # fmt: skip
ZONES = ["Europe/Berlin", "UTC", "America/New_York", "Mars/Base", "posix/Europe/Berlin",
         "right/UTC", "localtime", "Europe", "", "a" * 300, "../etc/passwd", "Etc/GMT+14",
         "\x1b[31m"]  # fmt: skip
CRONS = ["0 9 * * 1-5", "* * * * *", "* * * * * *", "61 * * * *", "0 0 31 2 *", "@hourly",
         "*/0 * * * *", "0 9 * * MON", "", "0 9 * *", "0 9 L * *"]  # fmt: skip
DURATIONS = ["1m", "6h", "0s", "30s", "1d", "100y", "36526d", "-1h", "x", "1.5h"]
NUMBERS = ["0", "1", "-1", "3", "10", "64", "65", "1000000", "9" * 25, "nan", "inf", "1e309",
           "0.5", "x", ""]  # fmt: skip
CONFIG_KEYS = [
    ("", "timezone"), ("database", "busy_timeout"), ("scheduling", "poll_interval"),
    ("scheduling", "max_retries"), ("scheduling", "retry_delay"),
    ("scheduling", "max_concurrency"), ("scheduling", "shutdown_timeout"),
    ("scheduling", "grace"), ("scheduling", "startup_delay"), ("nostr", "timeout"),
    ("nostr", "min_relays"), ("nostr", "max_bytes"), ("nostr", "relays"),
    ("defaults", "platforms"), ("slots", "nostr"), ("mastodon", "instance"),
]  # fmt: skip
CONFIG_VALUES = ["nan", "inf", "-inf", "-1", "0", "1", "60", "1e300", "9223372036854775807",
                 '"x"', "true", "[]", "{}", '["nostr"]', '["myspace"]', '"Europe/Berlin"',
                 '"posix/Europe/Berlin"', '["mon-fri 09:00"]', '["every day at noon"]',
                 '"ws://127.0.0.1:1"', "[[[[[[1]]]]]]", '"\\u001b[2J"']  # fmt: skip
LOG_LEVELS = ["error", "warn", "info", "debug", "trace", "loud"]


Snapshot = list[tuple[str, list[tuple[Any, ...]]]]


class Invocation(NamedTuple):
    args: list[str]
    stdin: bytes | None = None
    publishes: bool = False  # may record a failed publish for retry
    exact: bool = False  # stdout is data (JSON, CSV, an export), not text for a person
    files: tuple[tuple[Path, bytes], ...] = ()  # written before the run (import files)


def json_asked(args: list[str]) -> bool:
    return bool({"json", "jsonl"} & set(args))


@dataclass
class Seeded:
    """The seeded database, a template that every example gets a fresh copy of, and the ids it
    holds. A copy is made again only after an example changed it, and the config file is
    written only when an example's differs: both cost more than most commands on a busy disk."""

    template: Path
    db: Path
    config: Path
    base_config: str
    inbox: Path  # files to import
    outbox: Path  # where plur-export -o writes: empty before every example
    pictures: Path  # what --image may name: photos, and files that only look like them
    post_ids: list[str] = field(default_factory=list)
    schedule_ids: list[str] = field(default_factory=list)
    contents: Snapshot = field(default_factory=list)  # the template's rows
    _written: tuple[int, ...] | None = None  # the copy's files, as last seen unchanged
    _config_text: str = ""

    def place(self, files: tuple[tuple[Path, bytes], ...]) -> None:
        for old in [*self.inbox.iterdir(), *self.outbox.iterdir()]:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        for path, data in files:
            path.write_bytes(data)

    def ids(self) -> list[str]:
        found = self.post_ids + self.schedule_ids
        return [*found, *(i[:8] for i in found), *(i[:7] for i in found), found[0].upper()]

    def prepare(self, config_text: str) -> None:
        """The example's config, and a database equal to the template."""
        if config_text != self._config_text:
            self.config.write_text(config_text)
            self._config_text = config_text
        if self._written is None or not self.unchanged():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.template, self.db)
            shutil.rmtree(self.media, ignore_errors=True)  # the template's posts have no images
            self._written = self.files()

    @property
    def media(self) -> Path:
        return files.media_dir(self.db)

    def media_files(self) -> list[tuple[str, int]]:
        """The media store's files (name, size): what a failed run must leave as it was."""
        if not self.media.exists():
            return []
        return sorted((p.name, p.stat().st_size) for p in self.media.iterdir())

    def files(self) -> tuple[int, ...]:
        """Size and modification time of the database and its WAL: a commit changes one."""
        seen: list[int] = []
        for path in (self.db, Path(f"{self.db}-wal")):
            try:
                info = path.stat()
            except FileNotFoundError:
                seen += [-1, -1]
            else:
                seen += [info.st_size, info.st_mtime_ns]
        return tuple(seen)

    def unchanged(self) -> bool:
        """Whether the copy still holds the template's rows (the files first: cheap)."""
        if self.files() == self._written:
            return True
        same = snapshot(self.db) == self.contents
        if same:
            self._written = self.files()
        return same


class Hung(Exception):
    """A command still running after PATIENCE: a hang, whatever the machine's load."""


def _hung(signum: int, frame: Any) -> None:
    raise Hung(f"still running after {PATIENCE:g} s")


def _invoke(cli: click.Command, args: list[str], stdin: bytes | None) -> Any:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, PATIENCE)
    try:  # a command's --log-* flags set the root logger up; the next one starts afresh
        return CliRunner().invoke(cli, args, input=stdin, catch_exceptions=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def seeded(
    tmp_path: Path,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    inprocess_relay: InProcessRelay,
) -> Iterator[Seeded]:
    keys = {
        name: secret_file(isolated_home / f"{name}.keys", key)
        for name, key in (("default", "11" * 32), ("test", "22" * 32), ("down", "33" * 32))
    }
    base = (
        'timezone = "Europe/Berlin"\n'
        f'[nostr]\nkeys_file = "{keys["default"]}"\nrelays = ["{inprocess_relay.url}"]\n'
        # Images are checked and stored when a post is written; an upload (a post now)
        # finds nothing listening, and is kept for retry like a relay that is down.
        'timeout = 2\nblossom_servers = ["http://127.0.0.1:1"]\n'
        f'[accounts.nostr.test]\nkeys_file = "{keys["test"]}"\n'
        # Nothing listens on port 1: an immediate post there fails, and is kept for retry.
        f'[accounts.nostr.down]\nkeys_file = "{keys["down"]}"\nrelays = ["ws://127.0.0.1:1"]\n'
        "timeout = 0.2\n"
        '[defaults]\nplatforms = ["nostr"]\n'
        "[scheduling]\nretry_delay = 60\nmax_retries = 2\n"
        '[slots]\nnostr = ["mon-fri 09:00", "sat 10:30"]\n'
    )
    config = tmp_path / "config.toml"
    config.write_text(base)
    template = tmp_path / "template.db"
    monkeypatch.setenv("PLURCAST_CONFIG", str(config))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(template))
    monkeypatch.setattr(clikit, "now", lambda db=None: NOW)
    inbox, outbox, pictures = tmp_path / "in", tmp_path / "out", tmp_path / "pictures"
    for folder in (inbox, outbox, pictures):
        folder.mkdir()
    _pictures(pictures)
    seeded = Seeded(template, tmp_path / "posts.db", config, base, inbox, outbox, pictures)
    _seed(seeded)
    monkeypatch.setenv("PLURCAST_DB_PATH", str(seeded.db))
    yield seeded


# What --image may name in `pictures`: whole images first, then ones refused for what they are.
PICTURES = ["kite.jpg", "chart.png", "\x1b[2J\u202eevil.png", "fake.jpg", "empty.png",
            "folder", "missing.gif"]  # fmt: skip
GOOD_PICTURES = 3


def _pictures(folder: Path) -> None:
    from tests.images import photo

    (folder / "kite.jpg").write_bytes(photo("JPEG", (80, 60)))  # GPS, maker note, XMP
    (folder / "chart.png").write_bytes(photo("PNG", (50, 40), orientation=1))
    (folder / PICTURES[2]).write_bytes(photo("PNG", (8, 8)))  # its name goes into warnings
    (folder / "fake.jpg").write_bytes(b"%PDF-1.7\n" + bytes(200))
    (folder / "empty.png").write_bytes(b"")
    (folder / "folder").mkdir()


def _seed(s: Seeded) -> None:
    """Posts in every state, recurring schedules and their history, hostile texts in each."""
    import json

    def made(*args: str, stdin: str | None = None) -> str:
        result = _invoke(post_cli, [*args, "-f", "json"], None if stdin is None else stdin.encode())
        assert result.exit_code == 0, (args, result.output)
        data = json.loads(result.stdout)
        return str(data.get("post_id") or data.get("schedule_id"))

    far = "2101-01-0{} 10:00"
    for n, text in enumerate(HOSTILE[:7], start=1):
        s.post_ids.append(made(text, "-s", far.format(n)))
    s.post_ids.append(made("soon, and overdue to a daemon on the real clock", "-s", "1h"))
    s.post_ids.append(made("a draft", "--draft"))
    s.post_ids.append(made("for the test account", "-s", far.format(8), "-a", "test"))
    failed, posted, cancelled = (made(f"{what} {HOSTILE[0]}", "-s", "2h") for what in "fpc")
    s.post_ids += [failed, posted, cancelled]
    s.schedule_ids.append(made(HOSTILE[1], "--every", "1d", "--schedule", far.format(9)))
    s.schedule_ids.append(made(HOSTILE[2], "--cron", "0 9 * * 1", "--schedule", far.format(1)))
    with sqlite3.connect(s.template) as conn:
        conn.execute(
            "UPDATE deliveries SET state = 'dead', attempts = 3, error_kind = 'permanent', "
            "last_error = ? WHERE post_id = ?",
            (f"relay: blocked: {HOSTILE[0]} {HOSTILE[1]}", failed),
        )
        conn.execute(
            "UPDATE deliveries SET state = 'sent', attempts = 1, remote_id = 'note1seed', "
            "sent_at_ms = 1795428000000 WHERE post_id = ?",
            (posted,),
        )
        conn.execute("UPDATE deliveries SET state = 'cancelled' WHERE post_id = ?", (cancelled,))
        conn.execute(
            "INSERT INTO attempts (delivery_id, number, started_at_ms, finished_at_ms, outcome, "
            "error, error_kind) SELECT id, 1, 1795428000000, 1795428000100, 'dead', ?, "
            "'permanent' FROM deliveries WHERE post_id = ?",
            (f"\x1b]0;title\x07 {HOSTILE[4]}", failed),
        )
        conn.execute(
            "INSERT INTO occurrences VALUES (?, 1795428000000, 1795428000000, 'skipped', NULL, ?)",
            (s.schedule_ids[0], f"skipped {HOSTILE[0]}"),
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the template is one file to copy
    conn.close()
    s.contents = snapshot(s.template)


def snapshot(db: Path) -> Snapshot:
    with sqlite3.connect(f"file:{db}?mode=rw", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        state = [(t, sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr)) for t in tables]
    conn.close()
    return state


# --- what is generated ---------------------------------------------------------------------


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four: most runs get past parsing to the code behind it."""
    return st.integers(0, 3).flatmap(lambda n: bad if n == 0 else good)


def texts() -> st.SearchStrategy[str]:
    plausible = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1)
    return mostly(
        st.one_of(plausible.filter(str.strip), st.sampled_from(HOSTILE)),
        st.one_of(
            st.text(max_size=120),
            st.binary(max_size=80).map(lambda b: b.decode("latin-1")),  # C1 controls and more
            st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"])),
        ),
    )


def whens() -> st.SearchStrategy[str]:
    mutated = st.builds(
        lambda good, at, extra: good[:at] + extra + good[at:],
        st.sampled_from(GOOD_WHEN),
        st.integers(0, 12),
        st.text(max_size=2),
    )
    return mostly(
        st.sampled_from(GOOD_WHEN),
        st.one_of(st.sampled_from(NEAR_MISS), mutated, st.text(max_size=40)),
    )


def junk() -> st.SearchStrategy[list[str]]:
    token = st.one_of(
        st.sampled_from(["--bogus", "-x", "--", "-", "--help", "-h", "--version", "-f"]),
        st.text(max_size=12),
    )
    return st.integers(0, 9).flatmap(
        lambda n: st.lists(token, min_size=1, max_size=2) if n == 0 else st.just([])
    )


def set_key(config: str, table: str, name: str, value: str) -> str:
    """`config` with `name = value` in `[table]` (replacing what was there), or at the top."""
    line = f"{name} = {value}"
    header = f"[{table}]\n" if table else ""
    if header and header not in config:
        return f"{config}{header}{line}\n"
    before, _, rest = config.partition(header) if header else ("", "", config)
    section, more, after = rest.partition("\n[")
    kept = [old for old in section.splitlines() if not old.startswith(f"{name} =")]
    return before + header + "\n".join([line, *kept]) + "\n" + ("[" + after if more else "")


def config_texts(base: str) -> st.SearchStrategy[str]:
    def mutate(key: tuple[str, str], value: str) -> str:
        return set_key(base, *key, value)

    changed = st.builds(mutate, st.sampled_from(CONFIG_KEYS), st.sampled_from(CONFIG_VALUES))
    broken = st.sampled_from(["[nostr", "x = ", "timezone = 'a' 'b'", "\xff", "[[a]]\n[a]\n"])
    return st.one_of(*[st.just(base)] * 8, changed, broken)


def option(
    name: str, good: st.SearchStrategy[str], bad: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[list[str]]:
    """`[name, value]` one time in four (a good value mostly), else nothing."""
    value = good if bad is None else mostly(good, bad)
    return st.integers(0, 3).flatmap(
        lambda n: value.map(lambda v: [name, v]) if n == 0 else st.just([])
    )


FORMAT = option("-f", st.sampled_from(["text", "json", "jsonl"]), st.just("xml"))
LOG_LEVEL = option("--log-level", st.sampled_from(LOG_LEVELS[:5]), st.just("loud"))


# --- the checks ------------------------------------------------------------------------------


def check(
    seeded: Seeded, cli: click.Command, invocation: Invocation, config_text: str, fancy: bool
) -> None:
    args, stdin, publishes = invocation.args, invocation.stdin, invocation.publishes
    args = [arg.replace("\x00", "") for arg in args]  # a real argv cannot hold NUL
    seeded.prepare(config_text)
    seeded.place(invocation.files)
    output.fancy = lambda: fancy
    media = seeded.media_files()
    result = _invoke(cli, args, stdin)
    where = f"args={args!r} stdin={stdin!r} config={config_text[-200:]!r}"
    event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how far runs get
    if result.exit_code == 0 and seeded.media_files() != media:
        event("images stored")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"{type(result.exception).__name__} escaped: {where}"
        ) from result.exception
    assert result.exit_code in (0, 1, 2, 3), (result.exit_code, result.stderr, where)
    assert "internal error" not in result.stderr, (result.stderr, where)
    human = result.stderr + ("" if invocation.exact else result.stdout)
    leaked = sorted({repr(c) for c in human if c in RAW_CONTROL})
    assert not leaked, (leaked, human[-500:], where)
    if result.exit_code == 3 or (result.exit_code != 0 and not publishes):
        assert seeded.unchanged(), (result.exit_code, result.stderr, where)
        assert seeded.media_files() == media, (result.exit_code, result.stderr, where)
    if result.exit_code != 0:
        left = sorted(p.name for p in seeded.outbox.iterdir())
        assert not left, (left, result.exit_code, result.stderr, where)


def generated(
    examples: int, strategy: Callable[[Seeded], st.SearchStrategy[Any]], cli: click.Command
) -> Callable[..., None]:
    """A test that runs `cli` on `examples` invocations drawn from `strategy(seeded)`, each
    with a config drawn too, on a terminal or not, and checks each with `check`."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def test(seeded: Seeded, data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(output, "fancy", output.fancy)  # restored after the test
        invocation = data.draw(strategy(seeded), label="invocation")
        config_text = data.draw(config_texts(seeded.base_config), label="config")
        fancy = data.draw(st.booleans(), label="terminal")
        check(seeded, cli, invocation, config_text, fancy)

    return test

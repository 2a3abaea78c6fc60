"""plur-send under systemd: sd_notify, the watchdog, journald fields, and the unit file.

PID 1 here is not systemd, so systemd's side is played by what it really uses: a datagram
socket named in NOTIFY_SOCKET, a stderr whose dev:ino is in JOURNAL_STREAM, and
systemd-analyze for the unit files.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plur_send.cli import cli
from plurcast import config as config_module
from plurcast import logs, queue, service
from plurcast import systemd as sd
from plurcast.daemon import Daemon, Options
from plurcast.platforms.base import Outcome, OutcomeKind, Work
from plurcast.pool import Lanes, PublisherPool
from tests.helpers import (
    PATIENCE,
    Clock,
    Daemons,
    Run,
    add_post,
    assert_verified_and_hardened,
)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHIPPED_UNIT = REPO / "systemd" / "plur-send.service"


class NotifySocket:
    """The socket systemd would listen on: collects what the daemon tells it."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[str] = []

    def receive(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            message = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append(message)
        return message

    def wait_for(self, check: Callable[[list[str]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; got {self.messages}")
            self.receive(left)

    def drain(self) -> None:
        while self.receive(0.001) is not None:
            pass


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """An abstract-namespace socket: no path-length limit, nothing left on disk."""
    listener = NotifySocket(f"@plurcast-test-{uuid.uuid4().hex}")
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.sock.close()


@pytest.fixture
def without_systemd_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `systemd` extra were not installed: importing it fails."""
    for name in ("systemd", "systemd.daemon", "systemd.journal"):
        monkeypatch.setitem(sys.modules, name, None)


def count(messages: list[str], message: str) -> int:
    return sum(m == message for m in messages)


# --- the notifier ---------------------------------------------------------------------------


def test_without_notify_socket_the_notifier_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000")
    sent: list[str] = []
    notifier = sd.SystemdNotifier(sender=sent.append)
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert not notifier.active
    assert sent == []


def test_watchdog_pings_are_rate_limited_to_half_the_timeout(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    now = [100.0]
    sent: list[tuple[float, str]] = []
    notifier = sd.SystemdNotifier(sender=lambda m: sent.append((now[0], m)), clock=lambda: now[0])
    for t in (100.0, 100.5, 100.99, 101.0, 101.5, 102.1, 102.2):
        now[0] = t
        notifier.watchdog()
    assert sent == [(100.0, "WATCHDOG=1"), (101.0, "WATCHDOG=1"), (102.1, "WATCHDOG=1")]


@pytest.mark.parametrize(
    ("usec", "pid", "pings"),
    [
        (None, None, False),  # no WatchdogSec=
        ("0", None, False),
        ("500000", "1", False),  # the watchdog is another process's (we inherited its env)
        ("500000", "self", True),
        ("500000", None, True),
    ],
)
def test_watchdog_only_when_asked_of_this_process(
    notify_socket: NotifySocket,
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    pings: bool,
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    sent: list[str] = []
    sd.SystemdNotifier(sender=sent.append).watchdog()
    assert sent == (["WATCHDOG=1"] if pings else [])


def test_status_is_one_line(notify_socket: NotifySocket) -> None:
    sent: list[str] = []
    sd.SystemdNotifier(sender=sent.append).status("3 queued,\n  1 failed")
    assert sent == ["STATUS=3 queued, 1 failed"]


def test_stdlib_fallback_speaks_sd_notify_without_systemd_python(
    without_systemd_python: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sd.libsystemd_sender() is None
    for address in (f"@plurcast-fallback-{uuid.uuid4().hex}", None):
        with _short_tmpdir() as tmp:
            listener = NotifySocket(address or str(Path(tmp) / "notify"))
            monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
            monkeypatch.setenv("WATCHDOG_USEC", "30000000")
            notifier = sd.SystemdNotifier()
            notifier.ready()
            notifier.status("2 queued")
            notifier.watchdog()
            notifier.stopping()
            for _ in range(4):
                listener.receive(2)
            listener.sock.close()
        assert listener.messages == ["READY=1", "STATUS=2 queued", "WATCHDOG=1", "STOPPING=1"]


def test_notifies_through_systemd_python_when_installed(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = pytest.importorskip("systemd.daemon", reason="the systemd extra is not installed")
    calls: list[str] = []
    real = daemon.notify

    def spy(message: str) -> Any:
        calls.append(message)
        return real(message)

    monkeypatch.setattr(daemon, "notify", spy)
    sd.SystemdNotifier().ready()
    assert notify_socket.receive(2) == "READY=1"
    assert calls == ["READY=1"]


def test_a_lost_notification_does_not_stop_the_daemon(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"@plurcast-nobody-{uuid.uuid4().hex}")
    notifier = sd.SystemdNotifier(sender=sd.stdlib_sender(os.environ["NOTIFY_SOCKET"]))
    notifier.ready()
    notifier.status("1 queued")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["could not notify systemd (READY): [Errno 111] Connection refused"], (
        "warned once, not at every message"
    )


class _short_tmpdir:
    """A socket path must fit in 108 bytes, which pytest's tmp_path may not."""

    def __enter__(self) -> str:
        import tempfile

        self.tmp = tempfile.TemporaryDirectory(prefix="pc-")
        return self.tmp.name

    def __exit__(self, *exc: object) -> None:
        self.tmp.cleanup()


# --- the daemon tells systemd ----------------------------------------------------------------


def test_plur_send_reports_ready_status_watchdog_stopping_in_order(
    one_post_in_an_hour: Callable[[str], None], notify_socket: NotifySocket, daemons: Daemons
) -> None:
    one_post_in_an_hour("[scheduling]\npoll_interval = 60\n")
    proc = daemons.start(env={"WATCHDOG_USEC": "200000"})
    notify_socket.wait_for(lambda m: count(m, "WATCHDOG=1") >= 3, PATIENCE, "3 watchdog pings")
    proc.send_signal(signal.SIGTERM)
    notify_socket.wait_for(lambda m: "STOPPING=1" in m, PATIENCE, "STOPPING=1")
    assert proc.wait(PATIENCE) == 0, daemons.log(proc)
    messages = notify_socket.messages
    assert messages[0] == "READY=1", messages
    assert re.fullmatch(r"STATUS=1 queued, 0 sending, next in 35\d\d s", messages[1]), messages
    assert messages[2] == "WATCHDOG=1", messages
    assert messages[-1] == "STOPPING=1", messages
    assert set(messages[2:-1]) <= {"WATCHDOG=1"} | {m for m in messages if m.startswith("STATUS=")}


def test_once_with_nothing_due_reports_ready_and_leaves_no_heartbeat(
    one_post_in_an_hour: Callable[[str], None], notify_socket: NotifySocket
) -> None:
    """The whole run happens without an event loop (issue #16), and says so as the loop would."""
    one_post_in_an_hour("")
    done = subprocess.run(
        [str(BIN / "plur-send"), "--once"],
        check=False,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert done.returncode == 0, done.stderr
    assert "plur-send stopped: 0 sent, 0 to retry, 0 given up" in done.stderr
    notify_socket.drain()  # the process has exited: all it sent is in the socket
    messages = notify_socket.messages
    assert messages[0] == "READY=1", messages
    assert re.fullmatch(r"STATUS=1 queued, 0 sending, next in 35\d\d s", messages[1]), messages
    assert len(messages) == 2, messages
    conn = queue.open_db(config_module.load())
    assert conn.execute("SELECT count(*) FROM heartbeats").fetchone()[0] == 0
    assert conn.execute("SELECT state FROM deliveries").fetchall() == [("pending",)]


def test_a_hung_loop_stops_the_watchdog_pings(
    configured: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pings come from the loop itself: block it and they stop; unblock it and they resume.

    A watchdog fed by a timer thread would keep pinging here and fail the test.
    """
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping due every 50 ms
    loop = asyncio.new_event_loop()
    built: list[Daemon] = []
    hang, hung, release = threading.Event(), threading.Event(), threading.Event()

    def run() -> None:
        # The daemon's SQLite connection belongs to the thread that made it.
        daemon = Daemon(
            config_module.load,
            queue.open_db,
            Options(poll_interval=0.2),
            notifier=sd.SystemdNotifier(),
        )
        real_next_wake_ms = daemon.engine.next_wake_ms

        def next_wake_ms(lanes: Lanes | None = None) -> int | None:
            if hang.is_set() and not release.is_set():
                hung.set()
                release.wait(PATIENCE)  # blocks the event loop, as a stuck call would
            return real_next_wake_ms(lanes)

        monkeypatch.setattr(daemon.engine, "next_wake_ms", next_wake_ms)
        built.append(daemon)
        loop.run_until_complete(daemon.run())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        notify_socket.wait_for(
            lambda m: count(m, "WATCHDOG=1") >= 3, PATIENCE, "pings from a live loop"
        )
        assert notify_socket.messages[0] == "READY=1"
        hang.set()
        assert hung.wait(PATIENCE), "the loop never reached next_wake_ms"
        notify_socket.drain()  # a ping may have left just before the loop blocked
        before = count(notify_socket.messages, "WATCHDOG=1")
        time.sleep(0.6)  # 12 ping intervals
        notify_socket.drain()
        assert count(notify_socket.messages, "WATCHDOG=1") == before, "pinged while hung"
        release.set()
        notify_socket.wait_for(
            lambda m: count(m, "WATCHDOG=1") > before, PATIENCE, "pings once the loop runs again"
        )
    finally:
        release.set()
        if built:
            loop.call_soon_threadsafe(built[0].request_stop, signal.SIGTERM)
        thread.join(PATIENCE)
        loop.close()
    assert not thread.is_alive()
    notify_socket.wait_for(lambda m: "STOPPING=1" in m, PATIENCE, "STOPPING=1")


# --- journald -------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    """A file to be stderr; tests swap it in themselves (pytest resets sys.stderr after setup)."""
    with (tmp_path / "stderr").open("w+") as f:
        yield f


def journal_stream_of(f: io.TextIOWrapper) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


def test_journal_stream_must_be_our_stderr(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert not logs.stderr_is_journal_stream()
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    assert logs.stderr_is_journal_stream()
    dev, ino = journal_stream_of(stderr_file).split(":")
    monkeypatch.setenv("JOURNAL_STREAM", f"{dev}:{int(ino) + 1}")  # inherited, then redirected
    assert not logs.stderr_is_journal_stream()
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert not logs.stderr_is_journal_stream()


def test_under_systemd_records_go_to_the_journal_with_their_fields(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    pytest.importorskip("systemd.journal", reason="the systemd extra is not installed")
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    logs.setup(verbose=False)
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "plurcast", False)]
    sent: list[tuple[str, dict[str, Any]]] = []
    # Called as systemd.journal.send is: the text as MESSAGE, every field as a keyword.
    monkeypatch.setattr(handler, "send", lambda MESSAGE, **fields: sent.append((MESSAGE, fields)))
    extra = {"post_id": "p-1", "platform": "nostr", "account": "test", "delivery_state": "sent"}
    logging.getLogger("plurcast.engine").info("sent %s", "p-1", extra=extra)
    ((message, fields),) = sent
    assert message == "sent p-1"
    assert {k: fields[k] for k in ("POST_ID", "PLATFORM", "ACCOUNT", "DELIVERY_STATE")} == {
        "POST_ID": "p-1",
        "PLATFORM": "nostr",
        "ACCOUNT": "test",
        "DELIVERY_STATE": "sent",
    }
    assert fields["SYSLOG_IDENTIFIER"] == "plur-send"
    assert fields["PRIORITY"] == "6"
    assert stderr_file.tell() == 0, "nothing on stderr when the journal is used"


def test_under_systemd_without_systemd_python_stderr_lines_carry_priorities(
    without_systemd_python: None,
    stderr_file: io.TextIOWrapper,
    monkeypatch: pytest.MonkeyPatch,
    restore_logging: None,
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stderr_file))
    logs.setup(verbose=False)
    logging.getLogger("plurcast.engine").warning("relay slow")
    logging.getLogger("plurcast.engine").info("sent")
    stderr_file.seek(0)
    assert stderr_file.read() == "<4>relay slow\n<6>sent\n"


def test_outside_systemd_logs_are_plain_stderr_lines(
    stderr_file: io.TextIOWrapper, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setattr(sys, "stderr", stderr_file)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.setup(verbose=False)
    logging.getLogger("plurcast.engine").info("sent")
    stderr_file.seek(0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ [+-]\d{4} INFO sent\n", stderr_file.read())


def test_log_format_journal_without_systemd_python_is_a_config_error(
    without_systemd_python: None, configured: Path, run: Run, restore_logging: None
) -> None:
    result = run(cli, "--once", "--log-format", "journal")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --log-format journal needs systemd-python, which is not installed — "
        "pip install 'plurcast[systemd]' (it builds against libsystemd-dev and pkg-config)\n"
    )


# --- the unit file --------------------------------------------------------------------------


def test_shipped_unit_is_the_generated_one() -> None:
    assert SHIPPED_UNIT.read_text() == service.render_unit(), (
        "systemd/plur-send.service is out of date: python -m plurcast.service > "
        "systemd/plur-send.service"
    )


def test_shipped_unit_verifies_and_is_hardened(tmp_path: Path, isolated_home: Path) -> None:
    # Its ExecStart is %h/.local/bin/plur-send (pip --user, pipx), which verify wants to exist.
    script = isolated_home / ".local" / "bin" / "plur-send"
    script.parent.mkdir(parents=True)
    script.symlink_to(BIN / "plur-send")
    assert_verified_and_hardened(SHIPPED_UNIT, tmp_path)


def test_stop_timeout_leaves_room_for_shutdown_timeout(
    write_config: Callable[[str], Path],
) -> None:
    write_config("[scheduling]\nshutdown_timeout = 45\nstartup_delay = 30\n")
    settings = service.settings_for(config_module.load())
    assert settings.stop_timeout == 55
    assert settings.start_timeout == 120
    write_config("")
    settings = service.settings_for(config_module.load())
    assert (settings.stop_timeout, settings.start_timeout) == (30, None)
    assert "TimeoutStopSec=30\n" in service.render_unit(settings)


class QuickPublisher:
    """A platform that accepts every post after `step` seconds of `clock`: keeps the daemon
    busy, each publish moving the watchdog's stepped clock on (and yielding once)."""

    platform = "nostr"
    timeout = 5.0

    def __init__(self, account: str, clock: Clock, step: float) -> None:
        self.account = account
        self.clock = clock
        self.step = step

    async def prepare(self, work: Work) -> str:
        return work.content

    async def publish(self, payload: str, media: object = None) -> Outcome:
        self.clock.advance(self.step)
        await asyncio.sleep(0)
        return Outcome(OutcomeKind.SENT, remote_id=payload)

    def display(self, outcome: Outcome) -> str:
        return f"nostr:{outcome.remote_id}"

    async def close(self) -> None:
        pass


def test_a_busy_loop_keeps_pinging_the_watchdog(
    configured: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long burst is a live loop too: systemd must not kill the daemon in the middle of it.

    The watchdog's clock is stepped by the burst itself (each publish takes 20 ms of it), so
    the gaps between pings are the loop's own, not those of a busy machine.
    """
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping due every 50 ms
    write = configured.read_text() + "\n[scheduling.rate_limits.nostr]\nposts_per_hour = 100000\n"
    configured.write_text(
        write.replace("[defaults]", "[scheduling]\nmax_concurrency = 2\n[defaults]")
    )
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    for i in range(120):  # 2.4 s of sending on the stepped clock, two deliveries at a time
        add_post(conn, cfg, f"post {i}")
    conn.close()
    clock = Clock(0.0)
    pings: list[float] = []
    notifier = sd.SystemdNotifier(
        sender=lambda m: pings.append(clock()) if m == "WATCHDOG=1" else None, clock=clock
    )

    def pool(cfg: config_module.Config) -> PublisherPool:
        return PublisherPool(
            cfg, {"nostr": lambda _cfg, account: QuickPublisher(account, clock, 0.02)}
        )

    daemon = Daemon(
        config_module.load, queue.open_db, Options(once=True), pool_factory=pool, notifier=notifier
    )
    assert asyncio.run(daemon.run()) == 0
    took = clock()
    assert daemon.stats.sent == 120
    assert took == pytest.approx(2.4), "every publish moved the clock on"
    marks = [0.0, *pings, took]
    gap = max(b - a for a, b in itertools.pairwise(marks))
    assert gap < 0.5, f"no watchdog ping for {gap:.2f} s of a {took:.2f} s burst"

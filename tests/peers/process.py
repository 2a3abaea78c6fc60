"""What every test peer shares: a free port, dying with its starter, a log tail, `with` support,
and a gate in front of a server (down, then back at once)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import socketserver
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

# A tiny launcher: ask Linux to signal the command when the thread that started it dies, then
# exec the command (same pid). So a pytest run killed with SIGTERM or SIGKILL (a CI timeout)
# leaves no server, daemon or pip behind. (The signal is tied to the starting *thread*: start
# children from the main thread or a long-lived one.)
_LAUNCHER = """\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[2]))  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)  # the parent died before prctl took effect
os.execv(sys.argv[3], sys.argv[3:])
"""


def free_port() -> int:
    """A port that was free a moment ago (the usual bind-to-0 trick; racy but fine on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# How often a server run by `serve_in_thread` looks whether it is to stop: its `shutdown()`
# waits up to this long (socketserver's own 0.5 s, paid at the end of every test using one).
SHUTDOWN_POLL = 0.02


def serve_in_thread(server: socketserver.BaseServer) -> None:
    """Serve `server` from a daemon thread; its `shutdown()` returns within SHUTDOWN_POLL."""
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL}, daemon=True
    ).start()


def dies_with_parent(
    cmd: list[str], *, python: str = sys.executable, signal: int = signal.SIGTERM
) -> list[str]:
    """`cmd` (whose first item is an absolute path), wrapped so it ends when we do (Linux only):
    it gets `signal` then — the one that ends that program at once, without waiting for
    anyone (PostgreSQL: SIGINT, its fast shutdown; a plur-send: SIGKILL).

    This is how every long-lived child of the tests is started. `python` runs the launcher:
    a command started as another user needs one that user can run.
    """
    if sys.platform != "linux":
        return cmd
    return [python, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), str(int(signal)), *cmd]


class Peer:
    """A server a test starts and stops: `with Peer(...) as p:` starts it and closes it."""

    log_path: Path

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for error messages when it will not start."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Gate:
    """A port in front of the server on port `target`. Shut (as it starts), it refuses
    connections as a server that is down does; `open()` passes each new one on to the server,
    at once — a server restarted is back only after its start-up (nostr-relay: ~1 s, seconds on
    a busy machine); `shut()` refuses them again and cuts those it passed on."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: _Forwarder | None = None

    def open(self) -> None:
        if self._server is None:
            self._server = _Forwarder(self.port, self.target)
            serve_in_thread(self._server)

    def shut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shut()


class _Forwarder(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # the gate opens again on its port
    daemon_threads = True

    def __init__(self, port: int, target: int) -> None:
        super().__init__(("127.0.0.1", port), _Pipe)
        self.target = target
        self.live: set[socket.socket] = set()

    def cut(self) -> None:
        for sock in list(self.live):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Pipe(socketserver.BaseRequestHandler):
    """One connection through the gate: bytes both ways until either end closes."""

    server: _Forwarder

    def handle(self) -> None:
        client: socket.socket = self.request
        with socket.create_connection(("127.0.0.1", self.server.target)) as upstream:
            ends = {client: upstream, upstream: client}
            self.server.live.update(ends)
            try:
                while True:
                    ready, _, _ = select.select(list(ends), [], [])
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        ends[sock].sendall(data)
            except OSError:
                return
            finally:
                self.server.live.difference_update(ends)

"""Real Nostr relays on 127.0.0.1 for the tests, the demo and the benchmark.

Two kinds, because they answer differently and the adapter must cope with the strict one:

* `NostrRelay` runs the real relay `nostr-relay` (PyPI, written by others) as a subprocess. It
  refuses re-sent events (`duplicate: exists`) and bad ones (`invalid: ...`) like relays in the
  wild do, and keeps what it accepted in SQLite where the tests can read it back. Its pins clash
  with ours, so it lives in its own virtualenv, built once per machine in a cache outside the
  working tree (`ensure_nostr_relay`, ~15 s and ~155 MB the first time).
* `InProcessRelay` is nostr-sdk's own relay running inside this process: no subprocess, ready in
  milliseconds, memory only, and lenient (a re-sent event is answered with OK true).

Command line, for scripts/demo.sh and bench/ (the relay venv is built on first use):

    python -m tests.peers.nostr serve --dir DIR [--port P]  # prints ws://127.0.0.1:PORT when ready
    python -m tests.peers.nostr events --dir DIR            # stored events as JSON lines

The cache directory is computed from the environment *at import time*: tests/conftest.py points
HOME at a temp dir for every test, and the cache must not follow it there. Subprocesses started
from a test therefore need `PLURCAST_PEERS_DIR=str(PEERS_DIR)` in their environment.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, Self, TypeVar

from tests.peers.process import Peer, dies_with_parent, free_port

if TYPE_CHECKING:  # nostr_sdk loads a 20 MB native library: only InProcessRelay needs it.
    from nostr_sdk import LocalRelay

RELAY_PACKAGE = "nostr-relay"
RELAY_VERSION = "1.14"
# What `pip install nostr-relay==1.14` resolved to when this was written and tested (Nov 2026).
# Used as constraints so a later release of a dependency cannot silently change the relay.
_TESTED_DEPENDENCIES = """\
aiodns==4.0.4
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aionostr==0.20.0
aiosignal==1.4.0
aiosqlite==0.22.1
alembic==1.20.1
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
backports.zstd==1.8.0
brotli==1.2.1
cffi==2.1.1
click==8.5.1
coincurve==21.0.0
cryptography==50.0.2
falcon==4.4.0
frozenlist==1.8.0
greenlet==3.5.6
gunicorn==27.0.1
h11==0.16.0
httptools==0.9.0
idna==3.20
Mako==1.4.3
MarkupSafe==3.0.4
multidict==7.2.1
propcache==0.5.4
pycares==5.2.1
pycparser==3.12
pydantic==2.14.3
pydantic_core==2.50.4
python-dotenv==1.2.4
python-rapidjson==1.25
PyYAML==6.0.3
setproctitle==1.3.8
SQLAlchemy==2.1.9
typing_extensions==4.16.0
typing-inspection==0.4.5
uvicorn==0.54.0
uvloop==0.23.0
watchfiles==1.3.0
websockets==17.4
yarl==1.25.1
"""
_MARKER = ".plurcast-complete"

CONFIG_NAME = "config.yaml"
DB_NAME = "nostr.sqlite3"
LOG_NAME = "relay.log"
PID_NAME = "relay.pid"

START_TIMEOUT = 60.0  # a hang guard: a busy machine starts it in seconds
STOP_TIMEOUT = 5.0

_T = TypeVar("_T")


# --------------------------------------------------------------------------- the relay's venv


def _peers_dir_from_env(environ: Mapping[str, str] = os.environ) -> Path:
    """`$PLURCAST_PEERS_DIR`, else `$XDG_CACHE_HOME/plurcast-peers`, else under `~/.cache`."""
    if explicit := environ.get("PLURCAST_PEERS_DIR"):
        return Path(explicit).expanduser().absolute()
    cache = environ.get("XDG_CACHE_HOME", "")
    if Path(cache).is_absolute():  # the XDG spec says to ignore a relative XDG_CACHE_HOME
        return Path(cache) / "plurcast-peers"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "plurcast-peers"


#: Where the relay's venv is cached; fixed at import, before any test fixture changes HOME.
PEERS_DIR: Path = _peers_dir_from_env()


@dataclass(frozen=True)
class VenvTool:
    """A command-line tool from PyPI that lives in its own cached virtualenv (its pins, or its
    bundled binary, are not ours): `package==version`, pinned further by `constraints`."""

    package: str
    version: str
    executable: str
    constraints: str = ""
    minutes: str = "~15 s"  # how long the first build takes, for the message


RELAY = VenvTool(RELAY_PACKAGE, RELAY_VERSION, "nostr-relay", _TESTED_DEPENDENCIES)


def tool_venv_dir(tool: VenvTool, peers_dir: Path | None = None) -> Path:
    return (peers_dir or PEERS_DIR) / f"{tool.package}-{tool.version}"


def relay_venv_dir(peers_dir: Path | None = None) -> Path:
    return tool_venv_dir(RELAY, peers_dir)


def _is_complete(venv: Path, executable: str = RELAY.executable) -> bool:
    """The marker is written last, before the rename, so a venv with it was fully installed.

    `bin/python` is a symlink to the interpreter that built the venv: if that interpreter was
    removed since (say, a pyenv upgrade), the link dangles and the venv must be rebuilt.
    """
    return (
        (venv / _MARKER).is_file()
        and (venv / "bin" / "python").exists()
        and (venv / "bin" / executable).is_file()
    )


def ensure_nostr_relay(peers_dir: Path | None = None) -> Path:
    """Return the `nostr-relay` executable, building its venv first if this machine has none."""
    return ensure_tool(RELAY, peers_dir)


def ensure_tool(tool: VenvTool, peers_dir: Path | None = None) -> Path:
    """Return `tool`'s executable, building its venv first if this machine has none.

    Safe to call from parallel pytest processes: builders take an exclusive flock, the build
    happens in a temp dir next to the target and is renamed into place only when complete, so
    nobody ever sees a half-installed tool.
    """
    root = peers_dir or PEERS_DIR
    venv = tool_venv_dir(tool, root)
    exe = venv / "bin" / tool.executable
    if _is_complete(venv, tool.executable):
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not _is_complete(venv, tool.executable):  # unless another process built it meanwhile
            _build(root, venv, lock_fd=lock.fileno(), tool=tool)
    return exe


def _run_quietly(cmd: list[str], *, lock_fd: int) -> None:
    """Run a build step, raising with its output if it fails.

    The child inherits the lock's file descriptor, so even if we are killed the lock stays held
    until the child is gone too: a second builder never races an orphaned pip.
    """
    # pip compiles the tool's bytecode into its venv, which the rename then moves with it; under
    # a pycache prefix (make test's) it would go there, filed under the temp dir's name: lost.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPYCACHEPREFIX"}
    proc = subprocess.run(
        dies_with_parent(cmd),
        capture_output=True,
        text=True,
        check=False,
        pass_fds=(lock_fd,),
        env=env,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")


def _build(root: Path, venv: Path, *, lock_fd: int, tool: VenvTool = RELAY) -> None:
    """Create the venv in a temp dir, install the tool, then rename it into place (under lock)."""
    for stale in root.glob(f".{venv.name}.build-*"):  # left behind by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    if venv.exists():  # incomplete, or its interpreter is gone
        shutil.rmtree(venv)
    tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.build-", dir=root))
    started = time.monotonic()
    requirement = f"{tool.package}=={tool.version}"
    print(
        f"tests.peers: installing {requirement} into {venv} (once per machine, {tool.minutes})",
        file=sys.stderr,
        flush=True,
    )
    try:
        tmp.chmod(0o755)
        # Our interpreter is a python3 that certainly exists; `-m venv` from inside a venv bases
        # the new one on the underlying installation, not on our venv.
        _run_quietly([sys.executable, "-m", "venv", str(tmp)], lock_fd=lock_fd)
        constraints = tmp / "constraints.txt"
        constraints.write_text(tool.constraints)
        pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
        _run_quietly(
            [*pip, "--disable-pip-version-check", "--constraint", str(constraints), requirement],
            lock_fd=lock_fd,
        )
        # A venv is not relocatable: console scripts name their interpreter by absolute path.
        # The final path is known and shorter than the temp one, so patch them before the rename.
        old, new = str(tmp).encode(), str(venv).encode()
        for path in [*(tmp / "bin").iterdir(), tmp / "pyvenv.cfg"]:
            if path.is_file() and not path.is_symlink() and old in (data := path.read_bytes()):
                path.write_bytes(data.replace(old, new))
        marker = {
            "package": requirement,
            "python": sys.executable,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / _MARKER).write_text(json.dumps(marker) + "\n")
        tmp.rename(venv)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(
        f"tests.peers: {tool.package} ready after {time.monotonic() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- small helpers


def _port_is_free(port: int) -> bool:
    """Whether we could listen on the port (SO_REUSEADDR like uvicorn, so TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)


def read_stored_events(db_path: Path) -> list[dict[str, Any]]:
    """Events in nostr-relay's SQLite store, in the order it accepted them.

    nostr-relay 1.14's table is `events(id BLOB, created_at INTEGER, kind INTEGER, pubkey BLOB,
    tags JSON, sig BLOB, content TEXT)`: ids, keys and signatures are raw bytes, so they are
    hex-encoded here to give the usual NIP-01 JSON shape. Opened read-only so that reading can
    neither create an empty database nor disturb the relay (which runs SQLite in WAL mode).
    """
    if not db_path.exists():
        return []
    conn = sqlite3.connect(f"{db_path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT id, pubkey, created_at, kind, tags, content, sig FROM events ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()
    return [
        {
            "id": bytes(id_).hex(),
            "pubkey": bytes(pubkey).hex(),
            "created_at": created_at,
            "kind": kind,
            "tags": json.loads(tags) if tags else [],
            "content": content,
            "sig": bytes(sig).hex(),
        }
        for id_, pubkey, created_at, kind, tags, content, sig in rows
    ]


# --------------------------------------------------------------------------- the real relay


class NostrRelay(Peer):
    """nostr-relay 1.14 as a subprocess on 127.0.0.1; its config, database and log in `directory`.

    `restart()` keeps the port and the database, which is what "relay down, then back" needs.
    Without `directory` a temp dir is used and removed again by `close()` / the `with` block.
    Start it from a thread that outlives it (on Linux the relay is stopped when that thread ends).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        port: int | None = None,
        executable: Path | None = None,
    ) -> None:
        self._owns_dir = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix="plurcast-nostr-relay-") if directory is None else directory
        )
        self.port = port or free_port()
        self._executable = executable
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def db_path(self) -> Path:
        return self.directory / DB_NAME

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _write_config(self) -> None:
        # JSON strings are valid YAML scalars: this quotes paths with spaces or colons safely.
        db_url = json.dumps(f"sqlite+aiosqlite:///{self.db_path.absolute()}")
        bind = json.dumps(f"127.0.0.1:{self.port}")
        self.config_path.write_text(
            "# Written by tests/peers/nostr.py\n"
            "storage:\n"
            f"  sqlalchemy.url: {db_url}\n"
            "  validators:\n"
            "    - nostr_relay.validators.is_not_too_large\n"
            "    - nostr_relay.validators.is_signed\n"
            "    - nostr_relay.validators.is_recent\n"
            f"gunicorn: {{bind: {bind}, workers: 1, loglevel: warning, reload: false}}\n"
            "authentication: {enabled: false}\n"
            "verification: {nip05_verification: disabled}\n"
        )

    def start(self) -> Self:
        """Start the relay and wait until it answers its NIP-11 document over HTTP."""
        if self.running:
            return self
        exe = self._executable or ensure_nostr_relay()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not _port_is_free(self.port):
            # Otherwise the readiness probe could be answered by whoever holds the port.
            raise RuntimeError(f"port {self.port} is already in use; cannot start nostr-relay")
        self._write_config()
        log = self.log_path.open("ab")
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting on {self.url}\n".encode())
        log.flush()
        self._log = log
        self.process = subprocess.Popen(
            dies_with_parent(
                [str(exe.absolute()), "-c", str(self.config_path), "serve", "--use-uvicorn"]
            ),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        (self.directory / PID_NAME).write_text(f"{self.process.pid}\n")
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _answers_nip11(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/", headers={"Accept": "application/nostr+json"})
            info = json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()
        return isinstance(info, dict) and info.get("version") == RELAY_VERSION

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nostr-relay exited with code {self.process.returncode} while starting "
                    f"on port {self.port}; end of {self.log_path}:\n{self.log_tail()}"
                )
            if _accepts_connections(self.port) and self._answers_nip11():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nostr-relay did not answer on port {self.port} within {START_TIMEOUT} s; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def wait(self) -> int:
        """Block until the relay process exits on its own; its exit code."""
        assert self.process is not None, "not started"
        return self.process.wait()

    def stop(self) -> None:
        """SIGTERM our own process (uvicorn shuts down in ~0.2 s), SIGKILL if it hangs."""
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            (self.directory / PID_NAME).unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> Self:
        """Stop and start again on the same port with the same database."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def stored_events(self) -> list[dict[str, Any]]:
        """What the relay has accepted, read straight from its database (works while running)."""
        return read_stored_events(self.db_path)

    def count_by_content(self, text: str) -> int:
        return sum(1 for event in self.stored_events() if event["content"] == text)

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.process else "stopped"
        return f"<NostrRelay {self.url} {state} in {self.directory}>"


# --------------------------------------------------------------------------- raw websocket


class RawWebSocket:
    """A minimal RFC 6455 client (text frames only) for sending what nostr-sdk refuses to send.

    nostr-sdk checks id and signature before sending, so a tampered event never reaches a relay
    through it; this lets a test see the relay's own answer. Not for production use.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        hostport = url.removeprefix("ws://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self._sock = socket.create_connection((host, int(port)), timeout=timeout)
        self._buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        self._buf = bytearray(rest)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the relay")
        self._buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(bytes(header) + mask + masked)

    def send(self, message: Any) -> None:
        self._send_frame(0x1, json.dumps(message).encode())

    def recv(self) -> Any:
        """The next text message, parsed as JSON (answers pings, joins fragments)."""
        parts: list[bytes] = []
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._take(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._take(8))
            mask = self._take(4) if b1 & 0x80 else b""
            payload = self._take(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("relay closed the websocket")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1):
                parts.append(payload)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, b"")
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def publish_raw(url: str, event: Mapping[str, Any], timeout: float = 5.0) -> list[Any]:
    """Send `["EVENT", event]` on a fresh connection and return the relay's first `OK` message.

    nostr-relay 1.14 answers a refused event with an *empty* event id, `["OK", "", false,
    "invalid: ..."]`, and only after a 2 s penalty pause: allow for it in `timeout`.
    """
    with RawWebSocket(url, timeout=timeout) as ws:
        ws.send(["EVENT", dict(event)])
        while True:
            message = ws.recv()
            if isinstance(message, list) and message and message[0] == "OK":
                return message


# --------------------------------------------------------------------------- in-process relay


class InProcessRelay(Peer):
    """nostr-sdk's `LocalRelay` on 127.0.0.1, driven from a private event-loop thread.

    `LocalRelay.run()` only spawns the server on nostr-sdk's own (Rust) runtime and returns, but
    it and the client calls must be awaited somewhere: a dedicated loop lets synchronous tests,
    and tests that already run their own asyncio loop, use it alike. Events live in memory only.
    """

    def __init__(self, port: int | None = None, *, min_pow: int = 0) -> None:
        self.port = port or free_port()
        self.min_pow = min_pow  # NIP-13: refuse events with fewer leading zero bits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._relay: LocalRelay | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        assert self._loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> Self:
        if self._relay is not None:
            return self
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"nostr-inprocess-relay-{self.port}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._relay = self._call(self._run_relay())
            _wait_until(lambda: _accepts_connections(self.port), 5.0, f"relay on {self.url}")
        except BaseException:
            self.stop()
            raise
        return self

    async def _run_relay(self) -> LocalRelay:
        from nostr_sdk import LocalRelayBuilder

        builder = LocalRelayBuilder().addr("127.0.0.1").port(self.port)
        if self.min_pow:
            builder = builder.min_pow(self.min_pow)
        relay = builder.build()
        await relay.run()  # returns at once; the relay keeps serving until shutdown()
        return relay

    def stop(self) -> None:
        """Shut the relay down (its port is free again at once) and end the loop thread."""
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.shutdown()
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    def fetch_events(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """All kind-1 events the relay holds, as NIP-01 dicts ordered by (created_at, id).

        The relay ends the answer when it has sent all (EOSE): `timeout` only bounds a relay
        that does not, and is long so that a busy machine never cuts the answer short."""
        events = self._call(self._fetch(timeout), timeout + 10)
        return sorted(events, key=lambda e: (e["created_at"], e["id"]))

    async def _fetch(self, timeout: float) -> list[dict[str, Any]]:
        from nostr_sdk import ClientBuilder, Filter, Kind, RelayUrl, ReqTarget

        wait = timedelta(seconds=timeout)
        client = ClientBuilder().connect_timeout(wait).build()
        try:
            await client.add_relay(RelayUrl.parse(self.url))
            await client.connect(and_wait=wait)
            target = ReqTarget.auto([Filter().kind(Kind(1))])
            events = await client.fetch_events(target, timeout=wait)
        finally:
            await client.shutdown()
        return [json.loads(event.as_json()) for event in events]

    def count_by_content(self, text: str) -> int:
        return sum(1 for event in self.fetch_events() if event["content"] == text)

    def close(self) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<InProcessRelay {self.url} {'running' if self._relay else 'stopped'}>"


@contextlib.asynccontextmanager
async def local_relay(**options: Any) -> AsyncIterator[str]:
    """nostr-sdk's in-process relay on a free port, in the caller's event loop; yields its
    ws:// URL. Options: `min_pow`, `notes_per_minute` (then `rate-limited:` answers),
    `write_policy` (a `nostr_sdk.WritePolicy`; call `uniffi_set_event_loop` first)."""
    import nostr_sdk as n

    port = free_port()
    builder = n.LocalRelayBuilder().addr("127.0.0.1").port(port)
    if "min_pow" in options:
        builder = builder.min_pow(options["min_pow"])
    if "notes_per_minute" in options:
        limit = n.RateLimit(max_reqs=100, notes_per_minute=options["notes_per_minute"])
        builder = builder.rate_limit(limit)
    if "write_policy" in options:
        builder = builder.write_policy(options["write_policy"])
    relay = builder.build()
    await relay.run()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        relay.shutdown()


# --------------------------------------------------------------------------- command line


class _Terminated(BaseException):
    """Raised from the SIGTERM/SIGINT handler so that `finally` blocks stop the relay."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


def _serve(directory: Path, port: int | None) -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    relay = NostrRelay(directory.absolute(), port=port)
    try:
        relay.start()
        print(relay.url, flush=True)  # the one line on stdout: callers wait for it
        code = relay.wait()
        print(
            f"nostr-relay exited on its own with code {code}; end of {relay.log_path}:\n"
            f"{relay.log_tail()}",
            file=sys.stderr,
        )
        return 1
    except _Terminated:
        return 0
    finally:
        # A second Ctrl-C must not interrupt the cleanup; stop() is bounded by STOP_TIMEOUT.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        relay.stop()


def _print_events(directory: Path) -> int:
    db_path = directory / DB_NAME
    if not db_path.exists():
        print(f"no relay database at {db_path}", file=sys.stderr)
        return 2
    for event in read_stored_events(db_path):
        line = {k: event[k] for k in ("id", "created_at", "content")}
        print(json.dumps(line, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.peers.nostr",
        description="Run the real Nostr relay used by plurcast's tests, demo and benchmark.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="start the relay; print its ws:// URL when ready; run until SIGTERM/SIGINT"
    )
    serve.add_argument("--dir", type=Path, required=True, help="config, database and log go here")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    events = commands.add_parser("events", help="print stored events as JSON lines")
    events.add_argument("--dir", type=Path, required=True, help="the directory given to serve")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.dir, args.port)
    return _print_events(args.dir)


if __name__ == "__main__":
    sys.exit(main())

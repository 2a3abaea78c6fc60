"""A real Bluesky PDS on 127.0.0.1 for the tests: `@atproto/pds` with an in-memory PLC directory.

The PDS is the one Bluesky runs (npm `@atproto/pds`, written by others); it needs Node >= 22,
which a machine with Node 20 does not have. `ensure_pds` therefore installs, once per machine,
into a cache outside the work tree (`PEERS_DIR/bluesky-pds-<version>/`; ~85 s with an empty npm
cache, 558 MB, plus ~175 MB in npm's own cache):

    node/   the Node 22 binary from the npm registry (package node-linux-<arch>@22.23.3), so
            npm and the npm registry are all it needs, not nodejs.org
    pds/    @atproto/pds and @did-plc/server, resolved as of RESOLVED_BEFORE. better-sqlite3
            downloads its binary from GitHub if it can, else compiles (~50 s; needs python3,
            make and g++) against Node 22's headers (npm_config_nodedir, which overrides a
            nodedir in ~/.npmrc that points at the system Node)

`Pds` runs `pds_server.mjs` (next to this file): the PLC directory (memory only) and the PDS in
one Node process, ready in ~2 s. Rate limits are on, as on bsky.social (createSession: 30 per
5 min per handle), and every request is logged to a file so tests can count logins.

The cache directory is `tests.peers.nostr.PEERS_DIR`, fixed at import time before tests/conftest.py
points HOME at a temp dir; npm likewise runs with the HOME of import time (its cache, ~/.npmrc).
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import pytest

# The same cache, ports and die-with-the-test-run launcher as the Nostr relay.
from tests.peers.nostr import PEERS_DIR
from tests.peers.process import Peer, dies_with_parent, free_port

PDS_VERSION = "0.5.35"
PLC_VERSION = "0.0.1"
NODE_VERSION = "22.23.3"
# npm resolves the PDS's caret ranges as they stood on this day (when this was tested), so a
# later release of one of its ~600 dependencies cannot change the server under the tests.
RESOLVED_BEFORE = "2026-11-21T00:00:00Z"
_MARKER = ".plurcast-complete"
_HOME_AT_IMPORT = os.environ.get("HOME", str(Path.home()))

SCRIPT = Path(__file__).with_name("pds_server.mjs")
POST_COLLECTION = "app.bsky.feed.post"
START_TIMEOUT = 60.0  # a hang guard: a busy machine starts it in seconds
STOP_TIMEOUT = 5.0
BUILD_TIMEOUT = 900.0


def pds_install_dir(peers_dir: Path | None = None) -> Path:
    return (peers_dir or PEERS_DIR) / f"bluesky-pds-{PDS_VERSION}"


def _node_package() -> str:
    """The npm package with a Node binary for this machine (the registry has one per platform)."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if arch is None or platform.system() != "Linux":
        raise RuntimeError(f"no Node binary package for {platform.system()} {platform.machine()}")
    return f"node-linux-{arch}"


@dataclass(frozen=True)
class Installation:
    root: Path

    @property
    def node_home(self) -> Path:
        """Holds bin/node and include/node (the headers native modules compile against)."""
        return self.root / "node" / "node_modules" / _node_package()

    @property
    def node(self) -> Path:
        return self.node_home / "bin" / "node"

    @property
    def modules(self) -> Path:
        return self.root / "pds" / "node_modules"

    def is_complete(self) -> bool:
        """The marker is written last, before the rename: with it, everything is in place."""
        return (
            (self.root / _MARKER).is_file()
            and self.node.is_file()
            and (self.modules / "@atproto" / "pds" / "package.json").is_file()
        )


def ensure_pds(peers_dir: Path | None = None) -> Installation:
    """The installed PDS, installing it first if this machine has none (under a lock).

    Parallel pytest processes are safe: builders take an exclusive flock, build in a temp dir
    next to the target and rename it into place only when complete.
    """
    root = peers_dir or PEERS_DIR
    install = Installation(pds_install_dir(root))
    if install.is_complete():
        return install
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{install.root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not install.is_complete():  # unless another process built it while we waited
            _build(root, install, lock_fd=lock.fileno())
    return install


def _npm_env(node_home: Path | None) -> dict[str, str]:
    env = {**os.environ, "HOME": _HOME_AT_IMPORT}
    if node_home is not None:
        # npm's scripts (node-gyp) must run under Node 22 and build against its headers; the
        # environment beats ~/.npmrc.
        env["PATH"] = f"{node_home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["npm_config_nodedir"] = str(node_home)
    return env


def _run_step(cmd: list[str], *, cwd: Path, env: dict[str, str], lock_fd: int) -> None:
    """Run one build step, raising with the end of its output if it fails.

    The child inherits the lock's descriptor: if we are killed, the lock stays held until the
    child is gone too, so a second builder never races an orphaned npm.
    """
    exe = shutil.which(cmd[0], path=env.get("PATH"))
    if exe is None:
        raise RuntimeError(f"{cmd[0]} not found on PATH: the Bluesky PDS needs npm to install")
    proc = subprocess.run(
        dies_with_parent([exe, *cmd[1:]]),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        pass_fds=(lock_fd,),
        timeout=BUILD_TIMEOUT,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")


def _build(root: Path, install: Installation, *, lock_fd: int) -> None:
    for stale in root.glob(f".{install.root.name}.build-*"):  # left behind by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    if install.root.exists():
        shutil.rmtree(install.root)
    tmp = Installation(Path(tempfile.mkdtemp(prefix=f".{install.root.name}.build-", dir=root)))
    started = time.monotonic()
    print(
        f"tests.peers: installing Node {NODE_VERSION} and @atproto/pds@{PDS_VERSION} into "
        f"{install.root} (once per machine, ~1-2 min)",
        file=sys.stderr,
        flush=True,
    )
    npm = ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"]
    try:
        tmp.root.chmod(0o755)
        (tmp.root / "node").mkdir()
        _run_step(
            [*npm, f"{_node_package()}@{NODE_VERSION}"],
            cwd=tmp.root / "node",
            env=_npm_env(None),
            lock_fd=lock_fd,
        )
        (tmp.root / "pds").mkdir()
        (tmp.root / "pds" / "package.json").write_text(
            json.dumps(
                {
                    "name": "plurcast-test-pds",
                    "private": True,
                    "dependencies": {
                        "@atproto/pds": PDS_VERSION,
                        "@did-plc/server": PLC_VERSION,
                    },
                },
                indent=2,
            )
        )
        _run_step(
            [*npm, f"--before={RESOLVED_BEFORE}"],
            cwd=tmp.root / "pds",
            env=_npm_env(tmp.node_home),
            lock_fd=lock_fd,
        )
        # Fails here, not in the first test, if better-sqlite3 was built for another Node.
        _run_step(
            [str(tmp.node), "-e", "new (require('better-sqlite3'))(':memory:').close()"],
            cwd=tmp.root / "pds",
            env=_npm_env(tmp.node_home),
            lock_fd=lock_fd,
        )
        marker = {
            "pds": PDS_VERSION,
            "plc": PLC_VERSION,
            "node": NODE_VERSION,
            "resolved_before": RESOLVED_BEFORE,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp.root / _MARKER).write_text(json.dumps(marker) + "\n")
        tmp.root.rename(install.root)
    except BaseException:
        shutil.rmtree(tmp.root, ignore_errors=True)
        raise
    print(
        f"tests.peers: Bluesky PDS ready after {time.monotonic() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Account:
    """A fresh account on the test PDS, with an app password as a user would make one."""

    handle: str
    did: str
    password: str  # the account's own password
    app_password: str


class Pds(Peer):
    """PLC + PDS as one Node subprocess on 127.0.0.1; data, log and request log in `directory`.

    Without `directory` a temp dir is used and removed again by `close()` / the `with` block.
    Start it from a thread that outlives it (on Linux it is stopped when that thread ends).
    """

    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self._owns_dir = directory is None
        self.directory = Path(
            tempfile.mkdtemp(prefix="plurcast-pds-") if directory is None else directory
        )
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # Lets the fixture's own calls (accounts, listings) skip the rate limits the code under
        # test is subject to.
        self._bypass_key = secrets.token_hex(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "pds.log"

    @property
    def request_log(self) -> Path:
        return self.directory / "requests.log"

    def _env(self, install: Installation) -> dict[str, str]:
        data = self.directory / "data"
        return {
            **_npm_env(install.node_home),
            "PLURCAST_PDS_MODULES": str(install.modules),
            "PLURCAST_PDS_REQUEST_LOG": str(self.request_log),
            "PDS_PORT": str(self.port),
            "PDS_HOSTNAME": "localhost",
            "PDS_DEV_MODE": "true",
            "PDS_DATA_DIRECTORY": str(data),
            "PDS_BLOBSTORE_DISK_LOCATION": str(data / "blobs"),
            "PDS_JWT_SECRET": secrets.token_hex(16),
            "PDS_ADMIN_PASSWORD": secrets.token_hex(16),
            "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX": secrets.token_hex(32),
            "PDS_INVITE_REQUIRED": "false",
            "PDS_SERVICE_HANDLE_DOMAINS": ".test",
            "PDS_CRAWLERS": "",
            "PDS_RATE_LIMITS_ENABLED": "true",
            "PDS_RATE_LIMIT_BYPASS_KEY": self._bypass_key,
            "LOG_ENABLED": "false",
        }

    def start(self) -> Self:
        """Start PLC and PDS and wait until the PDS answers GET /xrpc/_health."""
        if self.process is not None and self.process.poll() is None:
            return self
        install = ensure_pds()
        (self.directory / "data" / "blobs").mkdir(parents=True, exist_ok=True)
        self.request_log.touch()
        log = self.log_path.open("ab")
        self._log = log
        self.process = subprocess.Popen(
            dies_with_parent([str(install.node), str(SCRIPT)]),
            cwd=self.directory,
            env=self._env(install),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _health(self) -> dict[str, Any] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/xrpc/_health")
            answer = json.loads(conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()
        return answer if isinstance(answer, dict) else None

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the PDS exited with code {self.process.returncode} while starting on port "
                    f"{self.port}; end of {self.log_path}:\n{self.log_tail()}"
                )
            health = self._health()
            if health is not None and health.get("version") == PDS_VERSION:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the PDS did not answer on port {self.port} within {START_TIMEOUT} s; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM our own process (it closes PDS and PLC), SIGKILL if it hangs."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- what tests do with it --

    def _client(self) -> Any:
        from atproto import Client
        from atproto_client.request import Request

        client = Client(self.url, request=Request(timeout=10))
        client.request.add_additional_header("x-ratelimit-bypass", self._bypass_key)
        return client

    def create_account(self, name: str | None = None) -> Account:
        """A new account `<name>.test` (default: a random name) and an app password for it.

        The app password is made with the session createAccount returns, so no createSession
        is spent here: tests can count the ones the code under test makes.
        """
        from atproto import models

        handle = f"{name or 'u' + secrets.token_hex(5)}.test"
        password = secrets.token_urlsafe(12)
        client = self._client()
        created = client.com.atproto.server.create_account(
            models.ComAtprotoServerCreateAccount.Data(
                handle=handle, email=f"{handle}@example.com", password=password
            )
        )
        app = client.com.atproto.server.create_app_password(
            models.ComAtprotoServerCreateAppPassword.Data(name="plurcast"),
            headers={"Authorization": f"Bearer {created.access_jwt}"},
        )
        return Account(created.handle, created.did, password, app.password)

    def revoke_app_password(self, account: Account) -> None:
        """Revoke the account's app password: sessions made with it can no longer be refreshed."""
        from atproto import models

        client = self._client()
        session = client.com.atproto.server.create_session(
            models.ComAtprotoServerCreateSession.Data(
                identifier=account.handle, password=account.password
            )
        )
        client.com.atproto.server.revoke_app_password(
            models.ComAtprotoServerRevokeAppPassword.Data(name="plurcast"),
            headers={"Authorization": f"Bearer {session.access_jwt}"},
        )

    def list_records(self, repo: str, collection: str = POST_COLLECTION) -> list[dict[str, Any]]:
        """Every record of a collection in a repo: {uri, cid, value}, as the JSON the PDS sends."""
        from atproto import models

        client = self._client()
        records: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = client.invoke_query(
                "com.atproto.repo.listRecords",
                params=models.ComAtprotoRepoListRecords.Params(
                    repo=repo, collection=collection, limit=100, cursor=cursor
                ),
            ).content
            records += page["records"]
            cursor = page.get("cursor")
            if not cursor or not page["records"]:
                return records

    def requests(self, path_suffix: str) -> int:
        """How many requests the PDS has had whose path ends with this, e.g. a method's NSID."""
        lines = self.request_log.read_text().splitlines()
        return sum(1 for line in lines if line.endswith(path_suffix))

    def __repr__(self) -> str:
        state = f"pid {self.process.pid}" if self.process else "stopped"
        return f"<Pds {self.url} {state} in {self.directory}>"


@pytest.fixture(scope="session")
def bluesky_pds() -> Iterator[Pds]:
    """One PDS for the whole session (~2 s to start); tests stay independent by each making
    fresh accounts with `bluesky_pds.create_account()`."""
    with Pds() as pds:
        yield pds

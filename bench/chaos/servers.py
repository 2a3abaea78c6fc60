"""The real local servers of a run, its config, and counting what the servers hold.

nostr-relay (strict: refuses re-sent events) with the strict Blossom test server for the
posts' images, mastodon_mock (with its fault API, its data in a file so that a restart keeps it)
and a real Bluesky PDS when tests/peers/bluesky.py exists and the engine has a Bluesky adapter
(checked at run time; the report says when Bluesky was left out, and why). Two accounts on each.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.chaos.checker import Published, short
from bench.chaos.context import ACCOUNTS, MASTODON_USERS, Context, HarnessError, environ
from tests.peers.blossom import BlossomServer
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import NostrRelay

ROOT = Path(__file__).resolve().parents[2]
# mastodon_mock is restarted when it has not answered a probe for this long (see watch).
MASTODON_SILENCE = 15.0


class _MastodonServer(MastodonMock):
    """mastodon_mock with its data in a file instead of memory, so that a restart (see
    `Servers.watch_mastodon`) keeps the statuses to count and the Idempotency-Keys."""

    def _config(self) -> str:
        return (
            super()
            ._config()
            .replace(
                'path = ":memory:"', f"path = {json.dumps(str(self.directory / 'mastodon.sqlite'))}"
            )
        )


def bluesky_available() -> tuple[bool, str]:
    """Bluesky takes part only when its test peer and the engine's adapter both exist."""
    if not (ROOT / "tests" / "peers" / "bluesky.py").is_file():
        return False, "not run: tests/peers/bluesky.py is missing"
    from plurcast.pool import default_factories

    if "bluesky" not in default_factories():
        return False, "not run: no Bluesky adapter in plurcast.pool.default_factories()"
    try:
        import plurcast.platforms.bluesky  # noqa: F401
    except ImportError as exc:
        return False, f"not run: the adapter does not import ({exc})"
    return True, ""


class Servers:
    """The peers, started by `start` and always stopped by `stop`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.relay: NostrRelay | None = None
        self.blossom: BlossomServer | None = None
        self.mastodon: MastodonMock | None = None
        self.pds: Any = None
        self.bsky_accounts: dict[str, Any] = {}
        self.bluesky_note = "not run: disabled (--no-bluesky)"
        self.nostr_pubkeys: dict[str, str] = {}
        self.mastodon_restarts = 0
        # Called before a hung mastodon_mock is restarted: its fault rules live in memory.
        self.before_mastodon_restart: Callable[[], None] = lambda: None
        self._probe_at = 0.0
        self._silent_since = 0.0
        self.postgres: Any = None  # the cluster, with --database postgresql
        self._database: Any = None
        self.database_url: str | None = None

    # ----------------------------------------------------------------- set-up

    def start(self) -> None:
        work = self.ctx.work
        if self.ctx.p.database == "postgresql":
            from tests.peers.postgres import PostgresCluster

            self.postgres = PostgresCluster().start()
            self._database = self.postgres.database()
            self.database_url = self._database.__enter__()
            self.ctx.say(f"database: PostgreSQL on 127.0.0.1:{self.postgres.port}")
        self.relay = NostrRelay(work / "nostr-relay")
        self.relay.start()
        self.blossom = BlossomServer().start()
        self.mastodon = _MastodonServer(work / "mastodon-mock")
        self.mastodon.start()
        use_bluesky, why = bluesky_available() if self.ctx.p.bluesky else (False, self.bluesky_note)
        self.bluesky_note = why
        if use_bluesky:
            from tests.peers.bluesky import PDS_VERSION, Pds

            self.pds = Pds(work / "pds")
            try:
                self.pds.start()  # installs it first on a machine that has none (~90 s)
                for account in ACCOUNTS:
                    self.bsky_accounts[account] = self.pds.create_account()
                self.bluesky_note = f"PDS {PDS_VERSION}, 2 accounts"
            except Exception as exc:  # no npm, no network for the install ...: run without
                self.pds.stop()
                self.pds, self.bsky_accounts = None, {}
                self.bluesky_note = f"not run: the PDS did not start ({short(str(exc), 80)})"
        self.ctx.say(
            f"peers: relay {self.relay.url}, mastodon_mock {self.mastodon.url}"
            + (f", PDS {self.pds.url}" if self.pds else f"; Bluesky {self.bluesky_note}")
        )

    def _secret(self, name: str, value: str) -> Path:
        path = self.ctx.work / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return path

    def write_config(self) -> None:
        """The config every process of the run reads; opens the run's database on `ctx`."""
        import nostr_sdk

        assert self.relay is not None and self.mastodon is not None and self.blossom is not None
        ctx = self.ctx
        keys = {a: nostr_sdk.Keys.generate() for a in ACCOUNTS}
        self.nostr_pubkeys = {keys[a].public_key().to_hex(): a for a in ACCOUNTS}
        nostr_files = {
            a: self._secret(f"nostr-{a}.keys", keys[a].secret_key().to_hex()) for a in ACCOUNTS
        }
        tokens = {
            a: self._secret(f"mastodon-{a}.token", TOKENS[MASTODON_USERS[a]]) for a in ACCOUNTS
        }
        text = [
            'timezone = "UTC"',
            "[database]\nbusy_timeout = 15",
            f'[nostr]\nkeys_file = "{nostr_files["default"]}"\nrelays = ["{self.relay.url}"]'
            f'\ntimeout = 2\nblossom_servers = ["{self.blossom.url}"]',
            f'[accounts.nostr.alt]\nkeys_file = "{nostr_files["alt"]}"',
            f'[mastodon]\ninstance = "{self.mastodon.url}"\ntoken_file = "{tokens["default"]}"'
            "\ntimeout = 3",
            f'[accounts.mastodon.alt]\ntoken_file = "{tokens["alt"]}"',
        ]
        platforms = ["nostr", "mastodon"]
        if self.pds is not None:
            platforms.append("bluesky")
            for account, acc in self.bsky_accounts.items():
                table = "[bluesky]" if account == "default" else f"[accounts.bluesky.{account}]"
                password = self._secret(f"bluesky-{account}.password", acc.app_password)
                text.append(
                    f'{table}\nhandle = "{acc.handle}"\napp_password_file = "{password}"'
                    + (f'\npds = "{self.pds.url}"\ntimeout = 5' if account == "default" else "")
                )
        # Nothing may give up on the injected faults, and nothing may wait on a rate window:
        # retries come fast (1 s, 2 s, 4 s …) and often; the limits are far above the load.
        text.append(
            "[scheduling]\npoll_interval = 60\nretry_delay = 1\nmax_retries = 40\n"
            "shutdown_timeout = 3"
        )
        for platform in platforms:
            text.append(f"[scheduling.rate_limits.{platform}]\nposts_per_hour = 10000000")
        path = ctx.work / "config.toml"
        path.write_text("\n\n".join(text) + "\n")
        ctx.env = {
            **os.environ,
            "PLURCAST_CONFIG": str(path),
            "PLURCAST_DB_PATH": str(ctx.work / "posts.db"),
            "TZ": "UTC",
            "NO_COLOR": "1",
            # Cached bytecode, as an installed package has (bench_cli.py does the same): a
            # daemon restarted every second or two must not compile the project each time.
            "PYTHONPYCACHEPREFIX": str(ctx.work / "pycache"),
        }
        if self.database_url is not None:
            ctx.env["PLURCAST_DATABASE_URL"] = self.database_url
        else:
            ctx.env.pop("PLURCAST_DATABASE_URL", None)
        ctx.env.pop("PLURCAST_DEBUG", None)
        ctx.env.pop("PYTHONDONTWRITEBYTECODE", None)
        from plurcast import config, queue

        with environ(
            PLURCAST_CONFIG=ctx.env["PLURCAST_CONFIG"],
            PLURCAST_DB_PATH=ctx.env["PLURCAST_DB_PATH"],
            PLURCAST_DATABASE_URL=ctx.env.get("PLURCAST_DATABASE_URL"),
        ):
            ctx.cfg = config.load()
        ctx.conn = queue.open_db(ctx.cfg)

    # ----------------------------------------------------------------- mastodon_mock's health

    def watch_mastodon(self) -> None:
        """Restart mastodon_mock when it stops answering altogether (15 s without an answer).

        With clients killed mid-request it has been seen to hang for good — its event loop
        stuck after `ClientDisconnect` errors — and then no Mastodon post could go out and the
        run would end "stuck" for a reason that is not plurcast's. Its data is in a file, so the
        restart keeps every status and Idempotency-Key; rules not yet used up are lost.
        """
        now = time.monotonic()
        if self.mastodon is None or now < self._probe_at:
            return
        self._probe_at = now + 1.0
        try:
            self.mastodon.request("GET", "/api/v1/instance", timeout=1.0)
        except (OSError, urllib.error.URLError):
            self._silent_since = self._silent_since or now
            if now - self._silent_since < MASTODON_SILENCE:
                return
            self.ctx.say(
                f"mastodon_mock has not answered for {MASTODON_SILENCE:g} s: restarting it"
                " (same data)"
            )
            self.before_mastodon_restart()
            if self.mastodon.process is not None:
                self.ctx.procs.peer("mastodon_mock", self.mastodon.process.pid)
            self.mastodon.stop()
            self.mastodon_restarts += 1
            log = self.mastodon.log_path  # start() truncates it: keep the hung one's
            log.rename(log.with_suffix(f".hung-{self.mastodon_restarts}.log"))
            self.mastodon.start()
        self._silent_since = 0.0

    def mock(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        patient: bool = True,
    ) -> Any:
        """One call to mastodon_mock. Patient (counting at the end): up to 3 tries of 20 s,
        restarting a mock that hangs in between. Impatient (during the chaos, where the loop
        must not stall): one try of 2 s; the caller decides what a failure means."""
        assert self.mastodon is not None
        for attempt in range(3 if patient else 1):
            started = time.monotonic()
            try:
                answer = self.mastodon.request(
                    method, path, token=token, body=body, timeout=20 if patient else 2
                )
            except (OSError, urllib.error.URLError) as exc:
                self.ctx.say(
                    f"mastodon_mock: {method} {path} failed ({exc}), attempt {attempt + 1}"
                )
                if patient:
                    self._probe_at = 0.0
                    self._silent_since = time.monotonic() - MASTODON_SILENCE  # restart if hung
                    self.watch_mastodon()
                continue
            if time.monotonic() - started > 2:
                self.ctx.say(f"mastodon_mock took {time.monotonic() - started:.1f} s for {path}")
            return answer
        raise HarnessError(f"mastodon_mock does not answer {method} {path}")

    # ----------------------------------------------------------------- counting on the servers

    def observe(self) -> list[Published]:
        """Every post each server holds, in the form the database records its id."""
        import nostr_sdk

        assert self.relay is not None and self.mastodon is not None
        found: list[Published] = []

        def note(hex_id: str | None) -> str | None:
            return None if hex_id is None else str(nostr_sdk.EventId.parse(hex_id).to_bech32())

        for event in self.relay.stored_events():
            account = self.nostr_pubkeys.get(event["pubkey"], f"unknown key {event['pubkey']}")
            marked = {t[3]: t[1] for t in event["tags"] if len(t) >= 4 and t[0] == "e"}
            parent = marked.get("reply", marked.get("root"))
            text, alts = self._nostr_images(event)
            found.append(
                Published(
                    "nostr",
                    account,
                    text,
                    str(note(event["id"])),
                    parent=note(parent),
                    root=note(marked.get("root")),
                    order=int(event["created_at"]),
                    alts=alts,
                )
            )
        for account in ACCOUNTS:
            token = TOKENS[MASTODON_USERS[account]]
            for status_id, text, parent, alts in self.mastodon_statuses(token):
                found.append(
                    Published(
                        "mastodon",
                        account,
                        text,
                        status_id,
                        parent,
                        order=int(status_id),
                        alts=alts,
                    )
                )
        if self.pds is not None:
            for account, acc in self.bsky_accounts.items():
                for record in self.pds.list_records(acc.did):
                    value = record["value"]
                    reply = value.get("reply") or {}
                    images = value.get("embed", {}).get("images", [])
                    found.append(
                        Published(
                            "bluesky",
                            account,
                            value["text"],
                            record["uri"],
                            parent=reply.get("parent", {}).get("uri"),
                            root=reply.get("root", {}).get("uri"),
                            cid=record["cid"],
                            parent_cid=reply.get("parent", {}).get("cid"),
                            order=record["uri"].rsplit("/", 1)[1],
                            alts=tuple(self._bluesky_alt(acc.did, image) for image in images),
                        )
                    )
        return found

    def _nostr_images(self, event: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        """A note's text without its image URLs, and each image's alt text: an image counts
        when its URL is in the content, its imeta names it, and the Blossom server has the
        blob, without the photo's GPS position."""
        from tests.images import has_location

        assert self.blossom is not None
        lines = event["content"].split("\n")
        alts: list[str] = []
        for tag in event["tags"]:
            if tag[0] != "imeta":
                continue
            fields = dict(item.split(" ", 1) for item in tag[1:] if " " in item)
            url, digest = fields.get("url", ""), fields.get("x", "")
            blob = self.blossom.blobs.get(digest)
            if url not in lines or blob is None or has_location(blob):
                alts.append(f"(broken: {url or 'no url'})")
                continue
            lines.remove(url)
            alts.append(fields.get("alt", ""))
        return "\n".join(lines), tuple(alts)

    def _bluesky_alt(self, did: str, image: dict[str, Any]) -> str:
        """An image's alt text, when the PDS has its blob (without the GPS position)."""
        from tests.images import has_location

        assert self.pds is not None
        cid = image["image"]["ref"]["$link"]
        url = f"{self.pds.url}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                blob = answer.read()
        except (OSError, urllib.error.URLError):
            return f"(broken: blob {cid} not on the PDS)"
        return "(broken: GPS on the PDS)" if has_location(blob) else str(image["alt"])

    def mastodon_statuses(
        self, token: str
    ) -> Iterator[tuple[str, str, str | None, tuple[str, ...]]]:
        """Every status of the account, 40 a page: its id, its text (from the HTML, else from
        /source), the status it replies to, and the description (alt text) of each attachment."""
        me = self.mock("GET", "/api/v1/accounts/verify_credentials", token=token)
        max_id = ""
        for _ in range(100_000 // 40):  # bounded: far more than any run posts
            page = self.mock(
                "GET", f"/api/v1/accounts/{me['id']}/statuses?limit=40{max_id}", token=token
            )
            if not page:
                return
            for status in page:
                alts = tuple(str(m.get("description") or "") for m in status["media_attachments"])
                inner = re.fullmatch(r"<p>(.*)</p>", status["content"], re.DOTALL)
                parent = status.get("in_reply_to_id")
                parent = None if parent is None else str(parent)
                if inner and "<" not in inner.group(1):
                    yield str(status["id"]), html.unescape(inner.group(1)), parent, alts
                else:
                    source = self.mock(
                        "GET", f"/api/v1/statuses/{status['id']}/source", token=token
                    )
                    yield str(status["id"]), str(source["text"]), parent, alts
            max_id = f"&max_id={page[-1]['id']}"

    def book_cpu(self) -> None:
        """The peers still running: their CPU so far, for the report (with --database
        postgresql the server's too: the queue's side of every claim and record)."""
        for who, peer in (
            ("nostr-relay", self.relay),
            ("mastodon_mock", self.mastodon),
            ("PDS", self.pds),
            ("PostgreSQL", self.postgres),
        ):
            if peer is not None and peer.process is not None:
                self.ctx.procs.peer(who, peer.process.pid)

    def stop(self) -> None:
        for peer in (self.pds, self.mastodon, self.blossom, self.relay):
            if peer is not None:
                try:
                    peer.stop()
                except Exception as exc:  # stopping the rest matters more
                    self.ctx.say(f"stopping {type(peer).__name__} failed: {exc}")

    def stop_database(self) -> None:
        """After the count: drop the run's database and stop the cluster (PostgreSQL)."""
        if self.postgres is not None:
            try:
                self._database.__exit__(None, None, None)
            finally:
                self.postgres.close()
                self.postgres = None

"""The platforms' faults: Mastodon 429 / 503 / held requests, and the relay taken down."""

from __future__ import annotations

import time
import urllib.error
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench.chaos.context import Context, HarnessError, now_ms
from bench.chaos.servers import Servers

# mastodon_mock holds a `timeout` request this long, then serves it. (Once the client has given
# up the mock drops it — a real server may not: the harness waits the hold out before counting.)
HELD_REQUEST_SECONDS = 30.0

_EFFECTS: dict[str, dict[str, Any]] = {
    "ratelimit": {"type": "ratelimit", "headers": {"Retry-After": "1"}},
    "503": {"type": "status", "status": 503},
    "timeout": {"type": "timeout"},
}
_NAMES = {"ratelimit": "429 Retry-After: 1", "503": "503", "timeout": "held 30 s"}


@dataclass
class Fault:
    """A rule given to mastodon_mock's fault API, and how many requests it hit (polled)."""

    kind: str  # ratelimit | 503 | timeout
    count: int
    injected_ms: int
    rule_id: str
    fired: int = 0
    last_fired_ms: int = 0


class MastodonFaults:
    """Rules for mastodon_mock's fault API, injected on a plan and counted as they fire."""

    def __init__(self, ctx: Context, servers: Servers) -> None:
        self.ctx = ctx
        self.servers = servers
        self.faults: list[Fault] = []
        self.hold_id: str | None = None  # the rule of `hold()` while it is in
        self.hold_ended_ms = 0  # when the last hold was taken out
        servers.before_mastodon_restart = self.lose_unfired

    def plan(self) -> list[tuple[float, str, int]]:
        """(fraction of the run, kind, requests hit): the first held request comes early, so
        that its 30-s hold is over soon after the drain."""
        plan = [(0.04, "timeout", 1), (0.3, "ratelimit", 3), (0.55, "503", 4)]
        if self.ctx.p.seconds >= 40:
            plan += [(0.15, "503", 3), (0.45, "ratelimit", 2), (0.7, "timeout", 1)]
        return sorted(plan)

    def inject(self, kind: str, count: int) -> bool:
        """Whether the rule went in; the harness tries again a moment later when not (a busy
        mock must not make a run without faults)."""
        rule = {
            "match": {"methods": ["POST"], "path": "/api/v1/statuses"},
            "effect": _EFFECTS[kind],
            "count": count,
        }
        try:
            made = self.servers.mock("POST", "/api/v1/_mock/faults", body=rule, patient=False)
        except HarnessError as exc:
            self.ctx.say(f"mastodon fault {kind} not injected yet: {exc}")
            return False
        self.faults.append(Fault(kind, count, now_ms(), str(made["id"])))
        self.ctx.say(f"mastodon fault: {kind} ×{count}")
        return True

    def hold(self) -> bool:
        """Hold every status posted from now on, until `unhold()`: a send that starts now
        cannot end (but by the client's own timeout) — what a kill aimed at a delivery in
        flight needs. Whether the rule is in (after a restart of the mock it must go in again)."""
        if self.hold_id is not None:
            return True
        rule = {
            "match": {"methods": ["POST"], "path": "/api/v1/statuses"},
            "effect": _EFFECTS["timeout"],
        }
        try:
            made = self.servers.mock("POST", "/api/v1/_mock/faults", body=rule, patient=False)
        except HarnessError as exc:
            self.ctx.say(f"mastodon hold not in yet: {exc}")
            return False
        self.hold_id = str(made["id"])
        return True

    @property
    def holding(self) -> bool:
        return self.hold_id is not None

    def unhold(self) -> None:
        """Take the hold out (what it holds is served when its 30 s are over)."""
        if self.hold_id is not None:
            try:
                self.servers.mock("DELETE", f"/api/v1/_mock/faults/{self.hold_id}")
            except HarnessError as exc:  # gone with a restarted mock, or `clear()` takes it
                self.ctx.say(f"mastodon hold not taken out: {exc}")
            self.hold_id = None
        self.hold_ended_ms = now_ms()

    def poll(self) -> None:
        """How many requests each rule has hit so far (a used-up rule disappears)."""
        mastodon = self.servers.mastodon
        if mastodon is None or not any(f.fired < f.count for f in self.faults):
            return
        try:
            rules = mastodon.request("GET", "/api/v1/_mock/faults", timeout=2)
        except (OSError, urllib.error.URLError):
            return
        remaining = {str(r["id"]): r.get("remaining") for r in rules or []}
        now = now_ms()
        for fault in self.faults:
            left = remaining.get(fault.rule_id, 0)
            fired = fault.count - int(left if left is not None else fault.count)
            if fired > fault.fired:
                fault.fired, fault.last_fired_ms = fired, now

    def lose_unfired(self) -> None:
        """mastodon_mock is about to be restarted: rules live in its memory, the rest are gone."""
        self.poll()
        for fault in self.faults:
            fault.count = fault.fired
        self.hold_id = None

    def clear(self) -> None:
        self.poll()
        if self.servers.mastodon is not None:
            self.servers.mock("DELETE", "/api/v1/_mock/faults")
        if self.hold_id is not None:
            self.hold_id, self.hold_ended_ms = None, now_ms()

    def held_until(self) -> float | None:
        """When the last held request that reached the server is served (epoch seconds)."""
        held = [f.last_fired_ms for f in self.faults if f.kind == "timeout" and f.fired]
        held += [self.hold_ended_ms] if self.hold_ended_ms else []
        return max(held) / 1000 + HELD_REQUEST_SECONDS + 1.5 if held else None

    def hits(self) -> Counter[str]:
        hits: Counter[str] = Counter()
        for fault in self.faults:
            hits[_NAMES[fault.kind]] += fault.fired
        return hits


class RelayOutage:
    """The relay stopped and started again on its port, with its database."""

    def __init__(self, ctx: Context, servers: Servers) -> None:
        self.ctx = ctx
        self.servers = servers
        self.span: tuple[float, float] | None = None  # epoch seconds, down and up again

    def down(self) -> None:
        relay = self.servers.relay
        assert relay is not None
        if relay.process is not None:
            self.ctx.procs.peer("nostr-relay", relay.process.pid)
        relay.stop()
        self.span = (time.time(), 0.0)
        self.ctx.say(f"relay stopped for {self.ctx.p.relay_outage:g} s")

    def up(self) -> None:
        relay = self.servers.relay
        assert relay is not None and self.span is not None
        relay.start()  # the same port and database
        self.span = (self.span[0], time.time())
        self.ctx.say(f"relay back after {self.seconds:.1f} s")

    @property
    def seconds(self) -> float:
        return self.span[1] - self.span[0] if self.span and self.span[1] else 0.0

    def ms(self) -> tuple[int, int]:
        """The outage in epoch ms; far in the future when there was none."""
        if self.span is None:
            return (2**62, 2**62)
        return (int(self.span[0] * 1000), int(self.span[1] * 1000))

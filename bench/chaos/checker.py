"""The invariant checker: what was asked for, what the servers hold, what the database says.

Pure: it reads nothing and starts nothing, so tests/test_chaos.py tests it on fabricated rows
(a checker that sees nothing must not let a chaos run pass) and the harness hands it what it
counted on the servers after a run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expected:
    """One delivery the harness asked for: (post, platform, account) and the text it carries.

    A recurring schedule's occurrences share one text, so the checker counts copies per
    (platform, account, text) against how many entries ask for that text.
    """

    post_id: str
    platform: str
    account: str
    text: str


@dataclass(frozen=True)
class Cancel:
    """A `plur-queue cancel` that exited 0: from then on the post's unsent deliveries are off."""

    post_id: str
    started_ms: int
    ended_ms: int


@dataclass(frozen=True)
class Published:
    """One post as a server holds it (remote_id in the form the database records)."""

    platform: str
    account: str
    text: str
    remote_id: str


@dataclass(frozen=True)
class Row:
    """One row of the deliveries table, read after every process stopped."""

    post_id: str
    platform: str
    account: str
    text: str
    state: str
    remote_id: str | None
    sent_at_ms: int | None


@dataclass(frozen=True)
class Occurrences:
    """One recurring schedule: the occurrence times it must have had, and those in the database."""

    schedule_id: str
    expected_ms: tuple[int, ...]
    posted_ms: tuple[int, ...]
    skipped_ms: tuple[int, ...] = ()


@dataclass
class Verdict:
    """What broke, each item a line naming the delivery; empty lists mean the invariant held."""

    expected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    cancelled_published: list[str] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    occurrences: list[str] = field(default_factory=list)

    PROBLEMS = (
        "lost",
        "duplicated",
        "stuck",
        "cancelled_published",
        "disagree",
        "unexpected",
        "gave_up",
        "occurrences",
    )

    @property
    def ok(self) -> bool:
        return not any(getattr(self, name) for name in self.PROBLEMS)

    def problems(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in self.PROBLEMS if getattr(self, name)}


def short(text: str, width: int = 60) -> str:
    """`text` cut to `width` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def check(
    expected: Sequence[Expected],
    cancels: Mapping[str, Cancel],
    published: Sequence[Published],
    rows: Sequence[Row],
    occurrences: Sequence[Occurrences] = (),
) -> Verdict:
    """Compare what was asked for with what the servers hold and what the database says.

    - A delivery of a post cancelled with exit 0 must not be on its server — unless the
      database shows it sent *before* that cancel started (cancel leaves sent ones alone).
    - Every other expected delivery is on its server exactly once: fewer is `lost`, more is
      `duplicated` (extra copies of a cancelled post's text count as `cancelled_published`).
    - After everything stopped, no row may be `sending` (`stuck`) or still waiting, none `dead`
      (the faults are transient and retries plenty: giving up is a loss too).
    - Each `sent` row's remote id is on its server with its text, and anything a server holds
      has a `sent` row (`disagree`); a server post nobody asked for is `unexpected`.
    - Each recurring schedule has exactly its expected occurrences posted (`occurrences`).
    """
    verdict = Verdict(expected=len(expected))
    row_of = {(r.post_id, r.platform, r.account): r for r in rows}
    on_server = Counter((p.platform, p.account, p.text) for p in published)
    ids_on_server = {(p.platform, p.account, p.remote_id): p.text for p in published}
    wanted: Counter[tuple[str, str, str]] = Counter()
    forbidden: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for e in expected:
        key = (e.platform, e.account, e.text)
        cancel = cancels.get(e.post_id)
        row = row_of.get((e.post_id, e.platform, e.account))
        if cancel is not None and not (
            row is not None
            and row.state == "sent"
            and row.sent_at_ms is not None
            and row.sent_at_ms < cancel.started_ms
        ):
            if row is None or row.state != "sent":
                why = f"database says {row.state if row else 'nothing'}"
            elif row.sent_at_ms is not None and row.sent_at_ms <= cancel.ended_ms:
                why = f"recorded sent {row.sent_at_ms - cancel.started_ms} ms into the cancel"
            else:
                late = (row.sent_at_ms or 0) - cancel.ended_ms
                why = f"recorded sent {late} ms after the cancel exited 0"
            forbidden[key].append(f"post {e.post_id} to {e.platform}/{e.account} ({why})")
            continue
        wanted[key] += 1
    for key in sorted(set(wanted) | set(forbidden)):
        platform, account, text = key
        have, want = on_server[key], wanted[key]
        if have < want:
            verdict.lost.append(
                f"{platform}/{account} {short(text)!r}: {have} on the server, {want} expected"
            )
        elif have > want:
            extra = have - want
            cancelled = forbidden.get(key, [])
            for line in cancelled[:extra]:
                verdict.cancelled_published.append(line)
            if extra > len(cancelled):
                verdict.duplicated.append(
                    f"{platform}/{account} {short(text)!r}: {have} on the server, {want} expected"
                )
    for key in sorted(set(on_server) - set(wanted) - set(forbidden)):
        verdict.unexpected.append(f"{key[0]}/{key[1]} {short(key[2])!r} ×{on_server[key]}")
    sent_keys: Counter[tuple[str, str, str]] = Counter()
    for r in rows:
        where = f"post {r.post_id} to {r.platform}/{r.account}"
        if r.state == "sending":
            verdict.stuck.append(f"{where}: still sending")
        elif r.state in ("pending", "retry"):
            verdict.stuck.append(f"{where}: still {r.state} after the drain")
        elif r.state == "dead":
            verdict.gave_up.append(f"{where}: gave up")
        elif r.state == "sent":
            sent_keys[(r.platform, r.account, r.text)] += 1
            found = ids_on_server.get((r.platform, r.account, r.remote_id or ""))
            if found is None:
                verdict.disagree.append(f"{where}: sent as {r.remote_id}, not on the server")
            elif found != r.text:
                verdict.disagree.append(f"{where}: {r.remote_id} on the server has other text")
    for key in sorted(on_server):
        if sent_keys[key] == 0 and (key in wanted or key in forbidden):
            verdict.disagree.append(
                f"{key[0]}/{key[1]} {short(key[2])!r}: on the server, no sent row in the database"
            )
    for occ in occurrences:
        posted = Counter(occ.posted_ms)
        for at in sorted(set(occ.expected_ms) - set(posted)):
            fate = "skipped" if at in occ.skipped_ms else "never materialised"
            verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: {fate}")
        for at, n in sorted(posted.items()):
            if at not in occ.expected_ms:
                verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: extra")
            elif n > 1:
                verdict.occurrences.append(f"schedule {occ.schedule_id} occurrence {at}: ×{n}")
    return verdict


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (as bench_engine.py): no interpolation between samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

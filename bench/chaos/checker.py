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
    """One delivery the harness asked for: (post, platform, account) and the text it carries,
    with the alt texts of its images, in order.

    A recurring schedule's occurrences share one text, so the checker counts copies per
    (platform, account, text) against how many entries ask for that text.
    """

    post_id: str
    platform: str
    account: str
    text: str
    alts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cancel:
    """A `plur-queue cancel` that exited 0: from then on the post's unsent deliveries are off."""

    post_id: str
    started_ms: int
    ended_ms: int


@dataclass(frozen=True)
class Published:
    """One post as a server holds it (remote_id in the form the database records), and what
    it replies to as the server has it: its parent and its thread's root (in the same form),
    the parent's CID where the platform names one (Bluesky), where it stands in the
    server's own order (a Mastodon id, a Nostr created_at, a Bluesky record key), and the
    alt text of each image attached to it, in order."""

    platform: str
    account: str
    text: str
    remote_id: str
    parent: str | None = None
    root: str | None = None
    cid: str | None = None
    parent_cid: str | None = None
    order: int | str | None = None
    alts: tuple[str, ...] = ()


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
class Thread:
    """A thread the harness wrote: its parts' post ids in order, and where it goes."""

    post_ids: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]


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
    threads: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    media_left: list[str] = field(default_factory=list)

    PROBLEMS = (
        "lost",
        "duplicated",
        "stuck",
        "cancelled_published",
        "disagree",
        "unexpected",
        "gave_up",
        "occurrences",
        "threads",
        "attachments",
        "media_left",
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
    threads: Sequence[Thread] = (),
    media_left: Sequence[str] = (),
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
    - Each thread, on each of its targets (`threads`, G6): no part sent unless the part
      before it is; on the server part 1 starts the thread, and every later part replies to
      the part before it as stored (Bluesky: its CID too), names part 1 as its root, and
      comes after its parent in the server's own order — no part standalone.
    - Every copy on a server carries exactly the images its post asked for, each once and with
      its alt text, in order (`attachments`); and once every post is sent, no copy of an image
      is left in the media store (`media_left`: its files, or its `media` rows on PostgreSQL).
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
    alts_of = {(e.platform, e.account, e.text): e.alts for e in expected}
    for p in published:
        want = alts_of.get((p.platform, p.account, p.text), ())
        if p.alts != want:
            verdict.attachments.append(
                f"{p.platform}/{p.account} {short(p.text)!r} ({p.remote_id}): images with alt "
                f"texts {list(p.alts)}, expected {list(want)}"
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
    verdict.threads = check_threads(threads, published, rows)
    verdict.media_left += [f"{name}: still in the media store" for name in media_left]
    return verdict


def check_threads(
    threads: Sequence[Thread], published: Sequence[Published], rows: Sequence[Row]
) -> list[str]:
    """G6 on the servers: see `check`."""
    row_of = {(r.post_id, r.platform, r.account): r for r in rows}
    on_server = {(p.platform, p.account, p.remote_id): p for p in published}
    problems: list[str] = []
    for thread in threads:
        for platform, account in thread.targets:
            previous: tuple[Row, Published | None] | None = None
            root: Row | None = None
            for part, post_id in enumerate(thread.post_ids, 1):
                where = f"thread {thread.post_ids[0]} part {part} on {platform}/{account}"
                row = row_of.get((post_id, platform, account))
                if row is None or row.state != "sent":
                    previous = None  # lost or cancelled: other checks say so
                    continue
                if part > 1 and previous is None:
                    problems.append(f"{where}: sent, but part {part - 1} was not")
                elif part > 1 and previous is not None:
                    before, now = previous[0].sent_at_ms, row.sent_at_ms
                    if before is not None and now is not None and now < before:
                        problems.append(f"{where}: recorded sent before part {part - 1}")
                pub = on_server.get((platform, account, row.remote_id or ""))
                if part == 1:
                    root = row
                    if pub is not None and pub.parent is not None:
                        problems.append(f"{where}: replies to {pub.parent}, not starting it")
                elif pub is not None and previous is not None:
                    problems += _link_problems(where, part, pub, previous, root)
                previous = (row, pub)
    return problems


def _link_problems(
    where: str, part: int, pub: Published, previous: tuple[Row, Published | None], root: Row | None
) -> list[str]:
    parent_row, parent_pub = previous
    if pub.parent is None:
        return [f"{where}: posted standalone, not as a reply to part {part - 1}"]
    found = []
    if pub.parent != parent_row.remote_id:
        found.append(
            f"{where}: replies to {pub.parent}, not to part {part - 1} ({parent_row.remote_id})"
        )
    if root is not None and pub.root is not None and pub.root != root.remote_id:
        found.append(f"{where}: names {pub.root} as its root, not part 1 ({root.remote_id})")
    if parent_pub is not None and pub.parent_cid is not None and pub.parent_cid != parent_pub.cid:
        found.append(f"{where}: its parent's CID {pub.parent_cid} is not the stored record's")
    if (
        parent_pub is not None
        and pub.order is not None
        and parent_pub.order is not None
        and type(pub.order) is type(parent_pub.order)
        and pub.order < parent_pub.order  # type: ignore[operator]
    ):
        found.append(f"{where}: on the server before part {part - 1}")
    return found


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (as bench_engine.py): no interpolation between samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

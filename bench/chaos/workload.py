"""What the run asks for: posts (each text unique) and recurring schedules, written through the
real queue code, and what must therefore be on the servers — kept apart from the database."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.context import Context, iso
from bench.chaos.servers import Servers


@dataclass
class PostInfo:
    """A post the harness wrote: what must be on the servers, kept apart from the database."""

    text: str
    targets: tuple[tuple[str, str], ...]
    # queue | queue-now | queue-late | warm-up | kept (for a planned user command)
    # | plur-post | plur-post-now | thread (a part of one)
    via: str
    post_id: str = ""  # plur-post's: found by its (unique) text afterwards
    alts: tuple[str, ...] = ()  # the alt text of each of its images, in order


@dataclass
class ThreadInfo:
    """A thread the harness wrote: its parts in order (one post each), where they go."""

    post_ids: list[str]
    texts: list[str]
    targets: tuple[tuple[str, str], ...]
    label: str = ""  # "outage": later parts due while the relay is down; "kill": held, killed


@dataclass
class Schedule:
    """A recurring schedule and the occurrences it must have had (computed, not read back)."""

    schedule_id: str
    text: str
    targets: tuple[tuple[str, str], ...]
    expected_ms: tuple[int, ...]
    rule: str


class Workload:
    """The posts and schedules of a run, and where each must end up."""

    def __init__(self, ctx: Context, servers: Servers) -> None:
        self.ctx = ctx
        self.posts: list[PostInfo] = []
        self.schedules: list[Schedule] = []
        self.threads: list[ThreadInfo] = []
        mixes: list[tuple[float, tuple[str, ...], str]] = [
            (2, ("nostr",), "default"),
            (1, ("nostr",), "alt"),
            (2, ("mastodon",), "default"),
            (1, ("mastodon",), "alt"),
            (2, ("nostr", "mastodon"), "default"),
            (1, ("nostr", "mastodon"), "alt"),
        ]
        if servers.pds is not None:
            mixes += [
                (1, ("bluesky",), "default"),
                (0.5, ("bluesky",), "alt"),
                (1.5, ("nostr", "mastodon", "bluesky"), "default"),
                (0.5, ("nostr", "mastodon", "bluesky"), "alt"),
            ]
        self.targets = mixes
        self.platforms: tuple[str, ...] = ("nostr", "mastodon") + (
            ("bluesky",) if servers.pds is not None else ()
        )
        self._pictures: list[Path] = []

    def images(self, index: int) -> list[tuple[Path, str]]:
        """Every 5th post has an image, every 15th two: (file, alt text unique to the post).

        The pictures are phone photos with a GPS position and a maker note (tests/images.py),
        made once per run; plur-post copies each into the media store when the post is written.
        """
        if index < 0 or index % 5:
            return []
        if not self._pictures:
            from tests.images import photo

            folder = self.ctx.work / "pictures"
            folder.mkdir(exist_ok=True)
            for n, (fmt, size) in enumerate((("JPEG", (96, 64)), ("PNG", (48, 40)))):
                path = folder / f"picture{n}.{fmt.lower()}"
                path.write_bytes(photo(fmt, size))
                self._pictures.append(path)
        count = 2 if index % 15 == 0 else 1
        return [
            (
                self._pictures[(index + k) % len(self._pictures)],
                f"{self.ctx.run_id} alt {index}.{k}",
            )
            for k in range(count)
        ]

    def pick_targets(self) -> tuple[tuple[str, ...], str]:
        weights = [w for w, _, _ in self.targets]
        _, platforms, account = self.ctx.rng.choices(self.targets, weights)[0]
        return platforms, account

    def text(self, index: int, platforms: Sequence[str], account: str) -> str:
        """Unique per post, and plain: no '#', '@' or link that a server would rewrite."""
        what = f"warm-up {-index:03d}" if index < 0 else f"post {index:05d}"
        return f"chaos {self.ctx.run_id} {what} to {'+'.join(platforms)}/{account} ✨"

    def write(
        self,
        index: int,
        due: float,
        now_mode: bool,
        targets: tuple[tuple[str, ...], str] | None = None,
        via: str = "",
    ) -> PostInfo:
        """Post number `index`, due at `due` (epoch s) or now; one written less than a second
        before its time is written due now ("late")."""
        from plurcast import writing
        from plurcast.media.attach import ImageSpec
        from plurcast.validation import Extras

        ctx = self.ctx
        platforms, account = targets or self.pick_targets()
        text = self.text(index, platforms, account)
        late = not now_mode and due - time.time() < 1.0
        images = self.images(index)
        created = writing.create_post(
            ctx.db,
            ctx.cfg,
            text,
            schedule="now" if now_mode or late else iso(due),
            draft=False,
            platforms=list(platforms),
            account=None if account == "default" else account,
            tz=ctx.cfg.timezone,
            now=datetime.now(UTC),
            extras=Extras(images=[ImageSpec(str(path), alt) for path, alt in images]),
        )
        assert created.scheduled_at is not None
        via = via or ("queue-now" if now_mode else "queue-late" if late else "queue")
        alts = tuple(alt for _, alt in images)
        info = PostInfo(text, tuple((p, account) for p in platforms), via, created.post_id, alts)
        self.posts.append(info)
        return info

    def write_thread(
        self,
        index: int,
        parts: int,
        due: float,
        targets: tuple[tuple[str, ...], str] | None = None,
        label: str = "",
    ) -> ThreadInfo:
        """Thread number `index` of `parts` parts (`--thread`), every part due at `due`
        (epoch s, or now when that is less than a second away); each part's text unique."""
        from plurcast import writing
        from plurcast.thread.plan import Compose

        ctx = self.ctx
        platforms, account = targets or self.pick_targets()
        texts = [
            f"chaos {ctx.run_id} thread {index:03d} part {i}/{parts} to "
            f"{'+'.join(platforms)}/{account} 🧵"
            for i in range(1, parts + 1)
        ]
        late = due - time.time() < 1.0
        created = writing.create_post(
            ctx.db,
            ctx.cfg,
            "\n---\n".join(texts),
            schedule="now" if late else iso(due),
            draft=False,
            platforms=list(platforms),
            account=None if account == "default" else account,
            tz=ctx.cfg.timezone,
            now=datetime.now(UTC),
            compose=Compose(thread=True),
        )
        where = tuple((p, account) for p in platforms)
        for post_id, text in zip(created.post_ids, texts, strict=True):
            self.posts.append(PostInfo(text, where, "thread", post_id))
        thread = ThreadInfo(created.post_ids, texts, where, label)
        self.threads.append(thread)
        return thread

    def plur_post_args(self, index: int) -> tuple[list[str], str, bool]:
        """plur-post's arguments for post `index`, its text, and whether it is sent at once
        (every other one) or scheduled 3–6 s ahead; the post is expected from then on."""
        platforms, account = self.pick_targets()
        text = self.text(index, platforms, account)
        args = [text, "-p", ",".join(platforms), "-f", "json"]
        if account != "default":
            args += ["-a", account]
        images = self.images(index)
        for path, alt in images:
            args += ["--image", str(path), "--alt", alt]
        immediate = index % 2 == 1
        if not immediate:
            args += ["-s", f"{self.ctx.rng.randint(3, 6)}s"]
        via = "plur-post-now" if immediate else "plur-post"
        alts = tuple(alt for _, alt in images)
        self.posts.append(PostInfo(text, tuple((p, account) for p in platforms), via, "", alts))
        return args, text, immediate

    def warm_up(self) -> int:
        """A post per daemon to every (platform, account), due now; the deliveries to await.

        A daemon makes its clients on first use (imports, connections, a Bluesky session): the
        first seconds after a cold start are slow. Measured from a cold start, lateness would
        show that once; warmed up, it shows the steady state the chaos then disturbs. (Daemons
        restarted after a kill start cold, as they would in life.) The posts count like any
        other: each must be on its server once.
        """
        before = len(self.posts)
        for round_ in range(self.ctx.p.daemons):
            for k, (_, platforms, account) in enumerate(self.targets):
                self.write(-1 - round_ * 100 - k, 0, True, (platforms, account), "warm-up")
        return sum(len(info.targets) for info in self.posts[before:])

    def create_schedules(self, t0: int) -> None:
        """`--every 1m` from soon, another from mid-run, and a cron every minute, all ending at
        the end of the chaos (`--until`), so which occurrences must exist is plain arithmetic."""
        from zoneinfo import ZoneInfo

        from plurcast import schedules

        ctx = self.ctx
        end = t0 + int(ctx.p.seconds)
        plans: list[tuple[str, schedules.Recurring, tuple[str, ...], str, tuple[int, ...]]] = []
        for name, first, platforms, account in (
            ("A", t0 + 4, self.platforms, "default"),
            ("B", t0 + int(ctx.p.seconds) // 2, ("nostr", "mastodon"), "alt"),
        ):
            times = tuple(range(first, end + 1, 60))
            spec = schedules.Recurring(every="1m", first=iso(first), until=iso(end))
            plans.append((f"{name}: --every 1m", spec, platforms, account, times))
        start = t0 + 3
        minutes = tuple(m for m in range(math.ceil(start / 60) * 60, end + 1, 60))
        if minutes:  # a short run may hold no minute boundary at all
            spec = schedules.Recurring(cron="* * * * *", first=iso(start), until=iso(end))
            plans.append(("C: --cron '* * * * *'", spec, ("nostr", "mastodon"), "default", minutes))
        for rule, spec, platforms, account, times in plans:
            text = f"chaos {ctx.run_id} recurring {rule[0]} ⏰"
            made = schedules.create(
                ctx.db,
                ctx.cfg,
                text,
                spec,
                platforms=list(platforms),
                account=None if account == "default" else account,
                tz=ZoneInfo("UTC"),
                now=datetime.now(UTC),
            )
            targets = tuple((p, account) for p in platforms)
            self.schedules.append(
                Schedule(made.id, text, targets, tuple(t * 1000 for t in times), rule)
            )
        ctx.say(
            "schedules: " + "; ".join(f"{s.rule} ×{len(s.expected_ms)}" for s in self.schedules)
        )

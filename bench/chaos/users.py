"""The users: `plur-queue cancel|reschedule|now` and `plur-post` runs alongside the daemons.

Two kinds. *Planned* commands go, at fixed moments of the run, to posts kept for them (due
only after the chaos): each is certain to find its post waiting, whatever the load, so a run
always holds a cancel, a reschedule and a `now` that must bind. *Random* ones go to whatever
is queued: "safe" cancels (nothing prepared, not due for 3 s) and, in the full run, "hostile"
ones too — posts on the wire, held by a daemon just killed, or retrying (what a user does
when a post looks stuck). Only a command's exit code decides whether a cancel binds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from bench.chaos.context import BIN, CLI_TIMEOUT, Context, now_ms
from bench.chaos.workload import Workload

# (fraction of the run, command): the planned commands, each on a post of its own.
PLANNED = (
    (0.1, "cancel"),
    (0.2, "reschedule"),
    (0.3, "now"),
    (0.45, "cancel"),
    (0.6, "reschedule"),
)
KEPT_PAST_THE_END = 5.0  # the kept posts are due this long after the chaos


@dataclass
class CliOp:
    """One plur-queue / plur-post run; only its exit code decides whether a cancel binds."""

    kind: str  # cancel | reschedule | now | plur-post | plur-post-now
    post_id: str
    argv: list[str]
    started_ms: int
    proc: subprocess.Popen[str] | None = None
    ended_ms: int = 0
    code: int | None = None
    out: str = ""
    hostile: bool = False
    planned: bool = False
    text: str = ""


class Users:
    """Every command a user ran, and those still running."""

    def __init__(self, ctx: Context, workload: Workload) -> None:
        self.ctx = ctx
        self.workload = workload
        self.ops: list[CliOp] = []
        self.running: list[CliOp] = []
        self.busy_posts: set[str] = set()
        self.kept: list[str] = []  # post ids waiting for their planned command

    def keep_posts(self, first_index: int, due: float) -> None:
        """Write the posts the planned commands will go to, due at `due`."""
        for k in range(len(PLANNED)):
            info = self.workload.write(first_index + k, due, False, via="kept")
            self.kept.append(info.post_id)

    def planned(self) -> list[tuple[float, str, str]]:
        """(fraction of the run, command, post id) for each planned command."""
        return [(at, kind, post) for (at, kind), post in zip(PLANNED, self.kept, strict=True)]

    def run_planned(self, kind: str, post_id: str) -> None:
        args = {
            "cancel": ["cancel", post_id, "--force"],
            "reschedule": ["reschedule", post_id, "+3s"],
            "now": ["now", post_id],
        }[kind]
        self.launch(kind, post_id, args, planned=True)

    def launch(
        self,
        kind: str,
        post_id: str,
        args: list[str],
        *,
        hostile: bool = False,
        planned: bool = False,
        text: str = "",
    ) -> None:
        exe = "plur-post" if kind.startswith("plur-post") else "plur-queue"
        argv = [str(BIN / exe), *args]
        op = CliOp(kind, post_id, argv, now_ms(), hostile=hostile, planned=planned, text=text)
        op.proc = self.ctx.procs.start(
            "plur-queue, plur-post",
            argv,
            env=self.ctx.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if post_id:
            self.busy_posts.add(post_id)
        self.running.append(op)
        self.ops.append(op)

    def poll(self) -> None:
        procs = self.ctx.procs
        for op in list(self.running):
            assert op.proc is not None
            if procs.poll(op.proc) is None:
                if now_ms() - op.started_ms < CLI_TIMEOUT * 1000:
                    continue
                procs.kill(op.proc)  # hung: recorded as killed (code -9), never as binding
            out, err = op.proc.communicate()
            op.ended_ms, op.code, op.out = now_ms(), op.proc.returncode, out + err
            op.proc = None
            self.running.remove(op)
            self.busy_posts.discard(op.post_id)

    def stop(self) -> None:
        for op in self.running:
            if op.proc is not None:
                self.ctx.procs.kill(op.proc)

    def waiting_posts(self) -> list[tuple[str, bool, bool]]:
        """(post id, safe to cancel, on the wire or retrying) for posts with work left.

        "Safe" means nothing of it is prepared or on the wire and it is not due for 3 s: a
        cancel then cannot race a send. The others are what --hostile cancels go for. Posts
        kept for a planned command are left to it.
        """
        soon = now_ms() + 3000
        rows = self.ctx.db.execute(
            "SELECT post_id, "
            "  min(CASE WHEN state = 'pending' AND payload IS NULL AND due_at_ms > ? "
            "      THEN 1 ELSE 0 END), "
            "  max(CASE WHEN state = 'sending' OR (state = 'retry' AND payload IS NOT NULL) "
            "      THEN 1 ELSE 0 END) "
            "FROM deliveries WHERE post_id IN "
            "  (SELECT post_id FROM deliveries WHERE state IN ('pending', 'retry', 'sending')) "
            "GROUP BY post_id",
            (soon,),
        ).fetchall()
        # Threads are left to the daemons: a part's cancel or move takes the later parts with
        # it, which the checker's per-post expectations do not model.
        threads = {post_id for t in self.workload.threads for post_id in t.post_ids}
        left_alone = self.busy_posts | set(self.kept) | threads
        return [(r[0], bool(r[1]), bool(r[2])) for r in rows if r[0] not in left_alone]

    def random_op(self) -> None:
        if len(self.running) >= 2:  # two cores: more would only measure the scheduler
            return
        posts = self.waiting_posts()
        if not posts:
            return
        rng = self.ctx.rng
        kind = rng.choices(("cancel", "reschedule", "now"), (0.35, 0.35, 0.3))[0]
        if kind == "cancel":
            hot = [p for p, _, wire in posts if wire]
            if self.ctx.p.hostile_cancels and hot and rng.random() < 0.5:
                self.cancel_hostile(rng.choice(hot))
                return
            safe = [p for p, ok, _ in posts if ok]
            if not safe:
                return
            post_id = rng.choice(safe)
            self.launch("cancel", post_id, ["cancel", post_id, "--force"])
        elif kind == "reschedule":
            post_id = rng.choice(posts)[0]
            shift = f"+{rng.randint(2, 8)}s"
            self.launch("reschedule", post_id, ["reschedule", post_id, shift])
        else:
            post_id = rng.choice(posts)[0]
            self.launch("now", post_id, ["now", post_id])

    def cancel_hostile(self, post_id: str) -> None:
        """A cancel of a post that may be on its way out (the full run's hostile cancels)."""
        threads = {p for t in self.workload.threads for p in t.post_ids}
        if post_id not in self.busy_posts and post_id not in self.kept and post_id not in threads:
            self.launch("cancel", post_id, ["cancel", post_id, "--force"], hostile=True)

    def plur_post(self, index: int) -> None:
        args, text, immediate = self.workload.plur_post_args(index)
        self.launch("plur-post-now" if immediate else "plur-post", "", args, text=text)

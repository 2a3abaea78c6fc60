"""`python -m bench.chaos [--small] [...]` (also `python bench/chaos`): one run, its table."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as `python bench/chaos`: import it as the package it is
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from bench.chaos.context import HarnessError, Params
from bench.chaos.harness import run_chaos
from bench.chaos.report import print_report
from bench.chaos.users import PLANNED


class _Stop(BaseException):
    """SIGTERM/SIGINT: unwind through every `finally`, so the peers and daemons are stopped."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Kills, outages, faults and user edits at once; then count on the servers. "
        "Without options: the full run (2,000 posts, 60 s, 3 daemons, 10-s relay outage).",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help="the run inside make test: 200 posts, 20 s, 2 daemons, 4-s outage, no hostile "
        "cancels (other options still apply on top)",
    )
    parser.add_argument("--posts", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--daemons", type=int)
    parser.add_argument("--relay-outage", type=float, metavar="SECONDS")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--plur-posts", type=int, help="posts written through plur-post")
    parser.add_argument("--threads", type=int, help="threads of 3–6 parts, besides the posts")
    parser.add_argument("--drain-timeout", type=float, metavar="SECONDS")
    parser.add_argument("--no-kills", action="store_true", help="no kill -9")
    parser.add_argument(
        "--no-hostile-cancels",
        action="store_true",
        help="cancel only posts nothing of which is prepared or due within 3 s",
    )
    parser.add_argument("--no-cli", action="store_true", help="no concurrent plur-queue runs")
    parser.add_argument("--no-faults", action="store_true", help="no Mastodon faults")
    parser.add_argument("--no-bluesky", action="store_true")
    parser.add_argument("--workdir", type=Path, help="default: a temp dir, removed after a pass")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql"),
        help="where the queue lives (postgresql: a throwaway local cluster); default sqlite",
    )
    args = parser.parse_args(argv)
    base = Params.small() if args.small else Params()
    numbers = (
        "posts",
        "seconds",
        "daemons",
        "relay_outage",
        "seed",
        "plur_posts",
        "threads",
        "drain_timeout",
    )
    changes: dict[str, Any] = {
        name: value for name in numbers if (value := getattr(args, name)) is not None
    }
    if args.no_kills:
        changes["kill_every"] = (0.0, 0.0)
    if args.no_cli:
        changes["cli_every"] = (0.0, 0.0)
    if args.no_faults:
        changes["faults"] = False
    if args.no_hostile_cancels:
        changes["hostile_cancels"] = False
    if args.no_bluesky:
        changes["bluesky"] = False
    if args.database:
        changes["database"] = args.database
    params = replace(base, **changes)
    kept = len(PLANNED) if params.cli_every[1] else 0  # posts kept for planned commands
    if params.posts < params.plur_posts + kept + 1 or params.seconds < 5 or params.daemons < 1:
        parser.error(f"need --posts > --plur-posts + {kept}, --seconds >= 5 and --daemons >= 1")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        report = run_chaos(params, args.workdir, keep=args.keep)
    except _Stop:
        print("stopped", file=sys.stderr)
        return 2
    except (HarnessError, RuntimeError, OSError) as exc:
        import traceback

        traceback.print_exc()
        print(f"chaos: the harness could not run: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    return 0 if report.verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

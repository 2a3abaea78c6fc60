"""Generated hostile input (issue 11) for plur-post, plur-queue and plur-send, in-process, on
a copy of a seeded database: random text and bytes, near-miss time expressions, ids and
prefixes, random flag combinations and config values — checked as tests/generative.py says.
The tests here and in test_generative_planning.py run EXAMPLES in all per `make test`,
weighted by what a run costs and how much code stands behind the command: ~30 s when the
machine is idle.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from plur_post.cli import cli as post_cli
from plur_queue.cli import cli as queue_cli
from plur_send.cli import cli as send_cli
from plurcast.platforms.registry import LABELS
from tests.generative import (
    CRONS,
    DURATIONS,
    FORMAT,
    GOOD_PICTURES,
    LOG_LEVEL,
    NUMBERS,
    PICTURES,
    ZONES,
    Invocation,
    generated,
    json_asked,
    junk,
    mostly,
    option,
    seeded,
    texts,
    whens,
)

__all__ = ["seeded"]  # the fixture every test here takes
EXAMPLES = {"plur-post": 650, "plur-queue": 850, "plur-send": 300}


@st.composite
def media_args(draw: st.DrawFn, pictures: Path) -> list[str]:
    """--image (a fifth of runs; up to 5, each maybe with its --alt), --fit/--no-fit,
    --keep-metadata, --cw, --label, --lang, --no-card: good values mostly — bad ones rarer
    than elsewhere, so that as many runs as before get past the flags to the queue."""
    args: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 4, 5]))):
            pick = PICTURES[:GOOD_PICTURES] * 4 + PICTURES[GOOD_PICTURES:]
            name = draw(st.sampled_from(pick))
            alt = option("--alt", st.sampled_from(["A red kite", "Bars, rising"]), texts())
            args += ["--image", str(pictures / name), *draw(alt)]
        args += draw(st.sampled_from([[], [], ["--fit"], ["--no-fit"], ["--keep-metadata"]]))
    elif draw(st.integers(0, 19)) == 0:
        args += ["--alt", "an alt text without its image"]
    for opt in (
        option("--cw", st.sampled_from(["spoilers", "food, eye contact", "🕷️"]), texts()),
        option("--label", st.sampled_from([*LABELS, *LABELS, *LABELS, "spicy", "", "NUDITY"])),
        option(
            "--lang",
            st.sampled_from(["en", "de,fr", "pt-BR"] * 3 + ["xx-notreal", "en,de,fr,es", ","]),
        ),
        st.sampled_from([[], [], [], ["--no-card"]]),
    ):
        args += draw(opt)
    return args


@st.composite
def post_invocations(draw: st.DrawFn, pictures: Path) -> Invocation:
    """plur-post arguments, stdin, and whether it publishes now (may record a failure)."""
    args: list[str] = []
    stdin = None
    source = draw(st.sampled_from(["argument", "argument", "dash", "pipe"]))
    if source == "argument":
        args.append(draw(texts()))
    else:
        if source == "dash":
            args.append("-")
        encoded = texts().map(lambda t: t.encode("utf-8", "surrogatepass"))
        stdin = draw(mostly(encoded, st.binary(max_size=300)))
    mode = draw(st.sampled_from(["schedule"] * 6 + ["draft", "cron", "every", "now", "now-down"]))
    if mode == "schedule":
        args += ["-s", draw(whens())]
    elif mode == "draft":
        args += ["--draft"]
    elif mode == "cron":
        args += ["--cron", draw(mostly(st.sampled_from(CRONS[:2]), st.sampled_from(CRONS)))]
    elif mode == "every":
        args += [
            "--every",
            draw(mostly(st.sampled_from(DURATIONS[:2]), st.sampled_from(DURATIONS))),
        ]
    elif mode == "now-down":
        args += ["-a", "down"]
    recurring = mode in ("cron", "every")
    options = [
        option(
            "-p", st.just("nostr"), st.sampled_from(["mastodon", "bluesky", ",", "nostr,myspace"])
        ),
        option("--tz", st.sampled_from(ZONES[:3]), st.sampled_from(ZONES)),
        option("--visibility", st.sampled_from(["public", "direct"]), st.just("secret")),
        # Mined when sent: only difficulties that take no time, or refused ones.
        option("--nostr-pow", st.sampled_from(["0", "2"]), st.sampled_from(["65", "-1", "x"])),
        FORMAT,
        LOG_LEVEL,
        media_args(pictures),
    ]
    if mode != "now-down":
        options.append(option("-a", st.just("test"), st.sampled_from(["nope", "bad name!", ""])))
    if recurring or draw(st.integers(0, 9)) == 0:
        options += [
            option("--until", whens()),
            option("--count", st.sampled_from(["1", "3", "100"]), st.sampled_from(NUMBERS)),
            option("--misfire", st.sampled_from(["latest", "skip", "all"]), st.just("never")),
            option("--grace", st.sampled_from(DURATIONS[:2]), st.sampled_from(DURATIONS)),
        ]
    for opt in options:
        args += draw(opt)
    args += draw(junk())
    return Invocation(args, stdin, mode.startswith("now"), json_asked(args))


@st.composite
def queue_invocations(draw: st.DrawFn, seeded_ids: list[str]) -> Invocation:
    garbage = st.one_of(st.text(max_size=14), st.from_regex(r"\A[0-9a-f-]{8,12}\Z"))
    ident = mostly(st.sampled_from(seeded_ids), garbage)
    command = draw(st.sampled_from([
        "list", "list", "show", "show", "cancel", "reschedule", "reschedule", "edit", "now",
        "stats", "schedules", "pause", "resume", "history", "failed list", "failed retry",
        "failed delete", "failed clear", "slots", "update", "bogus",
    ]))  # fmt: skip
    args = command.split()
    stdin = None
    if command == "list":
        args += draw(option("-p", st.just("nostr"), st.sampled_from([",", "myspace", "a,b"])))
        args += draw(st.sampled_from([[], ["--all"]])) + draw(FORMAT)
    elif command in ("show", "now", "pause", "resume", "history", "failed delete"):
        args += [draw(ident), *draw(FORMAT)]
    elif command == "cancel":
        args += draw(st.lists(ident, max_size=3)) + draw(st.sampled_from([[], [], ["--all"]]))
        args += draw(st.sampled_from([["--force"], []]))
        answers = st.sampled_from([b"y\n", b"n\n", b"yes\n", b""])
        stdin = draw(mostly(answers, st.binary(max_size=20)))
    elif command == "reschedule":
        args += [draw(ident), draw(whens())]
        args += draw(option("--tz", st.sampled_from(ZONES[:3]), st.sampled_from(ZONES)))
        args += draw(FORMAT)
    elif command == "edit":
        args += [draw(ident), *draw(st.one_of(st.just(["-"]), texts().map(lambda t: [t])))]
        args += draw(option("-p", st.just("nostr"), st.sampled_from([",", "myspace"])))
        stdin = draw(
            mostly(
                texts().map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200)
            )
        )
    elif command == "failed retry":
        args += draw(st.one_of(st.just(["--all"]), st.lists(ident, min_size=1, max_size=2)))
        args += draw(FORMAT)
    elif command == "failed clear":
        args += draw(st.sampled_from([["--force"], []]))
        stdin = draw(st.sampled_from([b"y\n", b"\xff\n", b""]))
    elif command == "slots":
        args += draw(option("-p", st.just("nostr"), st.sampled_from(["mastodon", ","])))
        args += draw(option("-n", st.sampled_from(["1", "20"]), st.sampled_from(NUMBERS)))
        args += draw(FORMAT)
    elif command == "update":
        args += [draw(ident)]
        args += draw(option("--nostr-pow", st.sampled_from(["0", "2"]), st.sampled_from(NUMBERS)))
    else:
        args += draw(FORMAT)
    args += draw(LOG_LEVEL) + draw(junk())
    return Invocation(args, stdin, command in ("now", "failed retry"), json_asked(args))


@st.composite
def send_invocations(draw: st.DrawFn) -> Invocation:
    command = draw(st.sampled_from(["health", "status", "health", "status", "daemon", "once"]))
    args: list[str] = []
    if command in ("health", "status"):
        args += [command, *draw(FORMAT)]
    else:
        if command == "once":
            args.append("--once")
        for opt in (
            option("--poll-interval", st.sampled_from(["1", "60"]), st.sampled_from(NUMBERS)),
            option("--max-concurrency", st.sampled_from(["1", "8"]), st.sampled_from(NUMBERS)),
            # Never a valid wait: --once would sleep it.
            option("--startup-delay", st.sampled_from(["nan", "inf", "-1", "3601", "x"])),
            option("--log-format", st.sampled_from(["text", "json"]), st.just("xml")),
            st.sampled_from([[], ["--no-retry"]]),
        ):
            args += draw(opt)
    args += draw(junk())
    if command == "daemon":  # the daemon without --once must never start here: a bad last flag
        args += ["--poll-interval", "nan"]
    return Invocation(args, None, "--once" in args, json_asked(args))


test_generated_plur_post = generated(
    EXAMPLES["plur-post"], lambda s: post_invocations(s.pictures), post_cli
)
test_generated_plur_queue = generated(
    EXAMPLES["plur-queue"], lambda s: queue_invocations(s.ids()), queue_cli
)
test_generated_plur_send = generated(EXAMPLES["plur-send"], lambda s: send_invocations(), send_cli)

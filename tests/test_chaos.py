"""Nothing lost, nothing doubled, with everything going wrong at once (the small chaos run).

`bench/chaos/` is the harness (`make chaos` runs the full one: 2,000 posts, 60 s, three
daemons). Here it runs small enough for `make test` — 200 posts over 20 s, two daemons, the
relay down for 4 s, kill -9 every 0.5–3 s, Mastodon faults, concurrent plur-queue commands —
and the test asserts the checker's verdict, and that the chaos happened: the harness makes
sure of it (planned cancels and reschedules, kills aimed at deliveries in flight, faults
injected until they go in), so that a pass never rests on luck. The checker itself is tested
first, on fabricated rows, so that a checker which sees nothing cannot make the chaos run
pass. Last, tests reproduce, one by one and deterministically, what the full run found broken.
"""

from __future__ import annotations

import asyncio
import io
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos.checker import (
    Cancel,
    Expected,
    Occurrences,
    Published,
    Row,
    Thread,
    check,
    check_threads,
    percentile,
)
from bench.chaos.context import Params
from bench.chaos.harness import media_left, run_chaos
from bench.chaos.report import print_report
from plur_queue.cli import cli as queue_cli
from plurcast import config as config_module
from plurcast import queue
from plurcast.engine import LEASE_SECONDS, Engine
from plurcast.media import store as media_store
from plurcast.platforms.base import Outcome, OutcomeKind, Work
from plurcast.store import recording
from plurcast.store.connection import transaction
from tests.helpers import (
    ANSWER_TIMEOUT,
    PATIENCE,
    Clock,
    Daemons,
    Run,
    add_post,
    secret_file,
    silent_port,
    wait_until,
)
from tests.images import photo
from tests.peers.mastodon import TOKENS, MastodonMock
from tests.peers.nostr import NostrRelay
from tests.peers.postgres import open_test_db

TEXT = {n: f"post {n} ✨" for n in range(1, 5)}


def sent(post: str, platform: str, remote: str, at: int = 1_000, account: str = "default") -> Row:
    return Row(post, platform, account, TEXT[int(post[-1])], "sent", remote, at)


def clean() -> tuple[list[Expected], list[Published], list[Row]]:
    """p1 to nostr and mastodon, p2 to nostr/alt: each on its server once, rows agree."""
    expected = [
        Expected("p1", "nostr", "default", TEXT[1]),
        Expected("p1", "mastodon", "default", TEXT[1]),
        Expected("p2", "nostr", "alt", TEXT[2]),
    ]
    published = [
        Published("nostr", "default", TEXT[1], "note1a"),
        Published("mastodon", "default", TEXT[1], "101"),
        Published("nostr", "alt", TEXT[2], "note1b"),
    ]
    rows = [
        sent("p1", "nostr", "note1a"),
        sent("p1", "mastodon", "101"),
        sent("p2", "nostr", "note1b", account="alt"),
    ]
    return expected, published, rows


def test_the_checker_passes_a_clean_run() -> None:
    expected, published, rows = clean()
    verdict = check(expected, {}, published, rows)
    assert verdict.ok, verdict.problems()
    assert verdict.expected == 3


def test_the_checker_reports_a_duplicate() -> None:
    expected, published, rows = clean()
    published.append(Published("mastodon", "default", TEXT[1], "102"))
    verdict = check(expected, {}, published, rows)
    assert not verdict.ok
    assert verdict.duplicated == [f"mastodon/default {TEXT[1]!r}: 2 on the server, 1 expected"]
    assert not verdict.lost


def test_the_checker_reports_a_loss_and_the_row_that_lies_about_it() -> None:
    expected, published, rows = clean()
    del published[2]  # the database says sent, the relay never got it
    verdict = check(expected, {}, published, rows)
    assert verdict.lost == [f"nostr/alt {TEXT[2]!r}: 0 on the server, 1 expected"]
    assert verdict.disagree == ["post p2 to nostr/alt: sent as note1b, not on the server"]


def test_the_checker_reports_stuck_waiting_and_dead_rows() -> None:
    expected, published, rows = clean()
    expected += [
        Expected("p3", "nostr", "default", TEXT[3]),
        Expected("p4", "mastodon", "default", TEXT[4]),
    ]
    rows += [
        Row("p3", "nostr", "default", TEXT[3], "sending", None, None),
        Row("p4", "mastodon", "default", TEXT[4], "dead", None, None),
    ]
    verdict = check(expected, {}, published, rows)
    assert verdict.stuck == ["post p3 to nostr/default: still sending"]
    assert verdict.gave_up == ["post p4 to mastodon/default: gave up"]
    assert len(verdict.lost) == 2


def test_a_cancelled_post_must_not_be_published_unless_it_went_out_before() -> None:
    expected, published, rows = clean()
    # p1's nostr delivery was sent at 1,000 ms, before the cancel began at 2,000 ms: fine.
    # Its mastodon delivery was recorded sent after the cancel exited 0: a broken promise.
    rows[1] = sent("p1", "mastodon", "101", at=3_500)
    # p3 was cancelled, the database says so, and yet the relay has it.
    expected.append(Expected("p3", "nostr", "default", TEXT[3]))
    rows.append(Row("p3", "nostr", "default", TEXT[3], "cancelled", None, None))
    published.append(Published("nostr", "default", TEXT[3], "note1c"))
    cancels = {"p1": Cancel("p1", 2_000, 3_000), "p3": Cancel("p3", 2_000, 3_000)}
    verdict = check(expected, cancels, published, rows)
    assert verdict.cancelled_published == [
        "post p1 to mastodon/default (recorded sent 500 ms after the cancel exited 0)",
        "post p3 to nostr/default (database says cancelled)",
    ]
    assert verdict.disagree == [
        f"nostr/default {TEXT[3]!r}: on the server, no sent row in the database"
    ]
    assert not verdict.duplicated and not verdict.lost


def test_a_cancel_that_kept_the_post_off_the_servers_passes() -> None:
    expected, published, rows = clean()
    expected.append(Expected("p3", "nostr", "default", TEXT[3]))
    rows.append(Row("p3", "nostr", "default", TEXT[3], "cancelled", None, None))
    verdict = check(expected, {"p3": Cancel("p3", 2_000, 3_000)}, published, rows)
    assert verdict.ok, verdict.problems()


def test_the_checker_reports_unexpected_posts_and_occurrences_not_exactly_once() -> None:
    expected, published, rows = clean()
    published.append(Published("nostr", "default", "nobody wrote this", "note1x"))
    occurrences = [
        Occurrences(
            "s1", expected_ms=(60_000, 120_000), posted_ms=(60_000,), skipped_ms=(120_000,)
        ),
        Occurrences("s2", expected_ms=(60_000,), posted_ms=(60_000, 180_000)),
    ]
    verdict = check(expected, {}, published, rows, occurrences)
    assert verdict.unexpected == ["nostr/default 'nobody wrote this' ×1"]
    assert verdict.occurrences == [
        "schedule s1 occurrence 120000: skipped",
        "schedule s2 occurrence 180000: extra",
    ]


def test_a_recurring_text_is_counted_once_per_occurrence() -> None:
    """Occurrences share their schedule's text: two expected, three on the server → one extra."""
    expected = [Expected(f"o{i}", "nostr", "default", "every minute") for i in (1, 2)]
    published = [Published("nostr", "default", "every minute", f"note1{i}") for i in "abc"]
    rows = [
        Row(f"o{i}", "nostr", "default", "every minute", "sent", f"note1{c}", 1)
        for i, c in ((1, "a"), (2, "b"))
    ]
    verdict = check(expected, {}, published, rows)
    assert verdict.duplicated == ["nostr/default 'every minute': 3 on the server, 2 expected"]


def thread_run(
    links: list[str | None], sent: list[int | None] | None = None
) -> tuple[list[Thread], list[Published], list[Row]]:
    """A 3-part Mastodon thread whose part i replies, on the server, to links[i]."""
    ids = ["t1", "t2", "t3"]
    sent = sent or [10, 20, 30]
    rows = [
        Row(i, "mastodon", "default", f"part {n}", "sent", str(100 + n), at)
        for n, (i, at) in enumerate(zip(ids, sent, strict=True), 1)
    ]
    published = [
        Published("mastodon", "default", f"part {n}", str(100 + n), parent, order=100 + n)
        for n, parent in enumerate(links, 1)
    ]
    return [Thread(tuple(ids), (("mastodon", "default"),))], published, rows


def test_the_thread_check_passes_a_well_linked_thread() -> None:
    assert check_threads(*thread_run([None, "101", "102"])) == []


@pytest.mark.parametrize(
    ("links", "sent", "says"),
    [
        ([None, None, "102"], None, "part 2 on mastodon/default: posted standalone"),
        ([None, "101", "101"], None, "part 3 on mastodon/default: replies to 101, not to part 2"),
        (["999", "101", "102"], None, "part 1 on mastodon/default: replies to 999"),
        ([None, "101", "102"], [10, 30, 20], "part 3 on mastodon/default: recorded sent before"),
    ],
)
def test_the_thread_check_reports_a_broken_link(
    links: list[str | None], sent: list[int | None] | None, says: str
) -> None:
    problems = check_threads(*thread_run(links, sent))
    assert any(says in line for line in problems), problems


def test_a_part_sent_while_the_part_before_is_not_is_reported() -> None:
    threads, published, rows = thread_run([None, "101", "102"])
    rows[1] = Row("t2", "mastodon", "default", "part 2", "dead", None, None)
    problems = check_threads(threads, published, rows)
    assert problems == ["thread t1 part 3 on mastodon/default: sent, but part 2 was not"]
    verdict = check([], {}, published, rows, threads=threads)
    assert not verdict.ok and verdict.threads == problems


def test_a_bluesky_reply_must_name_the_stored_records_cid_and_root() -> None:
    ids = ("b1", "b2", "b3")
    uris = [f"at://did:plc:me/app.bsky.feed.post/3k{n}" for n in "abc"]
    rows = [
        Row(i, "bluesky", "default", f"part {n}", "sent", uri, n * 10)
        for n, (i, uri) in enumerate(zip(ids, uris, strict=True), 1)
    ]
    published = [
        Published("bluesky", "default", "part 1", uris[0], cid="c1", order="3ka"),
        Published("bluesky", "default", "part 2", uris[1], uris[0], uris[0], "c2", "c1", "3kb"),
        Published("bluesky", "default", "part 3", uris[2], uris[1], uris[1], "c3", "old", "3kc"),
    ]
    problems = check_threads([Thread(ids, (("bluesky", "default"),))], published, rows)
    assert len(problems) == 2, problems
    assert "names " + uris[1] + " as its root, not part 1" in problems[0]
    assert "its parent's CID old is not the stored record's" in problems[1]


def test_the_checker_reports_an_image_missing_doubled_or_without_its_alt_text() -> None:
    expected, published, rows = clean()
    expected[0] = Expected("p1", "nostr", "default", TEXT[1], ("a kite", "a field"))
    expected[1] = Expected("p1", "mastodon", "default", TEXT[1], ("a kite", "a field"))
    expected[2] = Expected("p2", "nostr", "alt", TEXT[2], ("a dog",))
    published[0] = Published("nostr", "default", TEXT[1], "note1a", alts=("a kite", "a field"))
    published[1] = Published("mastodon", "default", TEXT[1], "101", alts=("a kite",))
    published[2] = Published("nostr", "alt", TEXT[2], "note1b", alts=("a dog", "a dog"))
    published.append(Published("nostr", "default", "nobody wrote this", "note1x", alts=("?",)))
    verdict = check(expected, {}, published, rows)
    assert verdict.attachments == [
        f"mastodon/default {TEXT[1]!r} (101): images with alt texts ['a kite'], expected "
        "['a kite', 'a field']",
        f"nostr/alt {TEXT[2]!r} (note1b): images with alt texts ['a dog', 'a dog'], expected "
        "['a dog']",
        "nostr/default 'nobody wrote this' (note1x): images with alt texts ['?'], expected []",
    ]
    assert not verdict.lost and not verdict.duplicated
    fine, on_servers, in_database = clean()
    left = check(fine, {}, on_servers, in_database, media_left=["ab12"])
    assert left.media_left == ["ab12: still in the media store"] and not left.ok


@pytest.mark.usefixtures("backend")
def test_what_is_left_in_the_media_store_is_seen_on_either_backend(db_path: Path) -> None:
    """The run's last check reads the store the queue really uses: on PostgreSQL the images
    are rows of `media` and no file is ever written, so a look at files would see nothing."""
    conn = open_test_db(db_path)
    try:
        store = media_store.for_database(conn)
        with conn.transaction():
            digest = store.put(photo("PNG", (20, 10), orientation=1))
        assert media_left(conn) == [digest]
        assert store.collect() == [digest]  # no post needs it
        assert media_left(conn) == []
    finally:
        conn.close()


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(101)], 99) == 99.0


@pytest.mark.slow
def test_small_chaos_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """200 posts over 20 s to every platform and account, two daemons killed -9 again and
    again, the relay down for 4 s, Mastodon 429/503/held requests, plur-queue cancel /
    reschedule / now alongside — then counted on the servers (~45 s)."""
    out = io.StringIO()
    report = run_chaos(Params.small(), tmp_path / "chaos", out=out)
    print_report(report, out)
    log = out.getvalue()
    assert report.verdict.ok, log
    # The chaos must have happened, or a pass means nothing.
    assert report.kills >= 3, log
    assert report.kills_in_flight >= 1, log
    assert report.relay_outage_s >= 4, log
    assert sum(report.faults.values()) >= 3, log
    assert report.ops[("cancel", True)] >= 1, log
    assert report.ops[("reschedule", True)] + report.ops[("now", True)] >= 2, log
    assert report.daemon_stops and all(code == 0 for code in report.daemon_stops), log
    assert sum(report.deliveries.values()) >= 250, log
    # Threads (G6): several, one of them with its middle parts sent into the relay outage,
    # and a daemon killed while it held a part after the first.
    assert report.threads >= 2, log
    assert report.later_parts_failed >= 1, log
    assert report.thread_kills >= 1, log
    assert report.image_posts >= 20 and report.images >= 40, log  # and each one checked


# --- what the full chaos run found -----------------------------------------------------------
#
# `make chaos` (hostile cancels on) reported "cancelled (exit 0), yet published", and Mastodon and
# Bluesky posts seconds late while the relay was down. The tests below reproduce each way it
# happened, deterministically, against real servers, so that it cannot come back.


@pytest.fixture
def one_post(
    write_config: Callable[[str], Path], nostr_key: Path, nostr_relay: NostrRelay
) -> tuple[config_module.Config, str]:
    """A post to the real relay, due now; the config and its id."""
    write_config(
        f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
        f'relays = ["{nostr_relay.url}"]\ntimeout = {ANSWER_TIMEOUT:g}\n'
    )
    cfg = config_module.load()
    return cfg, add_post(queue.open_db(cfg), cfg, "cancel me 🛑")


def state_of(cfg: config_module.Config, post_id: str) -> str:
    conn = queue.open_db(cfg)
    try:
        return str(
            conn.execute("SELECT state FROM deliveries WHERE post_id = ?", (post_id,)).fetchone()[0]
        )
    finally:
        conn.close()


def test_cancel_while_the_post_is_on_the_wire_is_refused(
    one_post: tuple[config_module.Config, str], nostr_relay: NostrRelay, run: Run
) -> None:
    """The user cancels while plur-send publishes (payload committed, bytes going out).

    Found by the chaos run: cancel used to answer `cancelled:<id>` (exit 0), then the send
    landed and was recorded `sent`. A stored payload may be out: cancel now refuses (exit 3).
    """
    cfg, post_id = one_post
    engine = Engine(cfg, queue.open_db(cfg))
    [claim] = engine.claim_due(1)
    publisher = engine.pool.get("nostr", "default")
    publish = publisher.publish
    answers = []

    async def cancel_then_publish(payload: str, media: object = None) -> Outcome:
        answers.append(run(queue_cli, "cancel", post_id, "--force"))
        return await publish(payload)

    publisher.publish = cancel_then_publish  # type: ignore[method-assign]

    async def deliver() -> str:
        try:
            return (await engine.deliver(claim)).state
        finally:
            await engine.pool.close()

    assert asyncio.run(deliver()) == "sent"
    [cancel] = answers
    assert cancel.exit_code == 3
    assert cancel.stdout == ""
    assert "may already be out on nostr" in cancel.stderr
    assert state_of(cfg, post_id) == "sent"
    assert nostr_relay.count_by_content("cancel me 🛑") == 1


def test_cancel_after_a_crash_mid_publish_is_refused_and_the_database_catches_up(
    one_post: tuple[config_module.Config, str], nostr_relay: NostrRelay, run: Run
) -> None:
    """plur-send published, then died (kill -9) before recording; the user cancels the post.

    Found by the chaos run: the cancel used to mark it cancelled for good while the relay had
    it. Now the cancel is refused, and the next daemon re-sends the stored event, which the
    relay answers `duplicate:` — recorded as sent, once.
    """
    cfg, post_id = one_post
    conn = queue.open_db(cfg)
    clock = Clock(time.time())
    first = Engine(cfg, conn, owner="host:1:1", clock=clock)
    [claim] = first.claim_due(1)

    async def publish_then_crash() -> None:
        publisher = first.pool.get("nostr", "default")
        payload = await publisher.prepare(
            Work(claim.delivery_id, claim.post_id, "nostr", "default", claim.content)
        )
        with transaction(conn):
            assert recording.store_payload(conn, claim.delivery_id, first.owner, payload, 0)
        assert (await publisher.publish(payload)).remote_id
        await first.pool.close()  # ... and the process dies before recording anything

    asyncio.run(publish_then_crash())
    cancel = run(queue_cli, "cancel", post_id, "--force")
    assert cancel.exit_code == 3
    assert "may already be out on nostr" in cancel.stderr
    clock.advance(LEASE_SECONDS + 1)  # the dead holder's lease runs out
    second = Engine(cfg, queue.open_db(cfg), owner="host:2:2", clock=clock)

    async def resend() -> list[str]:
        try:
            return [(await second.deliver(c)).state for c in second.claim_due(5)]
        finally:
            await second.pool.close()

    assert asyncio.run(resend()) == ["sent"]
    assert state_of(cfg, post_id) == "sent"
    assert nostr_relay.count_by_content("cancel me 🛑") == 1


def test_cancel_of_a_retry_whose_first_send_may_have_landed_is_refused(
    one_post: tuple[config_module.Config, str], nostr_relay: NostrRelay, run: Run
) -> None:
    """The relay stored the event but its OK came too late: the attempt counts as a timeout
    and the delivery waits in `retry`, its payload stored. The user cancels it.

    Found by the chaos run: cancel used to say cancelled while the relay had the post.
    """
    cfg, post_id = one_post
    engine = Engine(cfg, queue.open_db(cfg))
    [claim] = engine.claim_due(1)
    publisher = engine.pool.get("nostr", "default")
    publish = publisher.publish

    async def stored_but_answered_too_late(payload: str, media: object = None) -> Outcome:
        assert (await publish(payload)).remote_id
        return Outcome(OutcomeKind.TRANSIENT, error="timeout: no answer within 3 s")

    publisher.publish = stored_but_answered_too_late  # type: ignore[method-assign]

    async def deliver() -> str:
        try:
            return (await engine.deliver(claim)).state
        finally:
            await engine.pool.close()

    assert asyncio.run(deliver()) == "retry"
    cancel = run(queue_cli, "cancel", post_id, "--force")
    assert cancel.exit_code == 3
    assert "may already be out on nostr" in cancel.stderr
    assert state_of(cfg, post_id) == "retry"  # the retry will record the truth
    assert nostr_relay.count_by_content("cancel me 🛑") == 1


@pytest.mark.slow
def test_a_relay_outage_does_not_make_mastodon_posts_late(
    write_config: Callable[[str], Path],
    isolated_home: Path,
    nostr_key: Path,
    mastodon_server: MastodonMock,
    daemons: Daemons,
) -> None:
    """16 Nostr posts and then 4 Mastodon posts due at once; the relay hangs (it takes the
    connection and never answers), Mastodon answers at once. When the 8 slots were shared by
    all platforms, the Mastodon posts waited for two rounds of Nostr timeouts (in the full chaos
    run, posts due during the 10-s outage were up to ~12 s late).

    Measured by what happened first, not by a clock: every Mastodon post is out while all
    Nostr attempts are still waiting for the relay (its timeout, 30 s, is far off).
    """
    token = secret_file(isolated_home / "mastodon.token", TOKENS["alice"])
    with silent_port() as relay_port:
        write_config(
            f'timezone = "UTC"\n[nostr]\nkeys_file = "{nostr_key}"\n'
            f'relays = ["ws://127.0.0.1:{relay_port}"]\ntimeout = 30\n'
            f'[mastodon]\ninstance = "{mastodon_server.url}"\ntoken_file = "{token}"\n'
            "[scheduling]\nretry_delay = 600\nmax_concurrency = 8\nshutdown_timeout = 1\n"
        )
        cfg = config_module.load()
        conn = queue.open_db(cfg)
        for i, platform in enumerate(["nostr"] * 16 + ["mastodon"] * 4):
            add_post(conn, cfg, f"{platform} {i}", platforms=[platform])

        def states(platform: str) -> Counter[str]:
            return Counter(
                r[0]
                for r in conn.execute(
                    "SELECT state FROM deliveries WHERE platform = ?", (platform,)
                )
            )

        daemon = daemons.start()
        wait_until(lambda: states("mastodon")["sent"] == 4, "the Mastodon posts sent")
        nostr_now = states("nostr")
        nostr_attempts = conn.execute(
            "SELECT count(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
            "WHERE d.platform = 'nostr'"
        ).fetchone()[0]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(PATIENCE) == 0, daemons.log(daemon)
    assert sorted(mastodon_server.texts()) == sorted(f"mastodon {i}" for i in range(16, 20))
    assert nostr_attempts == 0, "a Nostr attempt ended before the Mastodon posts went out"
    assert nostr_now == {"sending": 8, "pending": 8}, nostr_now  # Nostr's own 8 slots, full
    assert states("nostr") == {"pending": 16}  # given back by the stop, payloads kept

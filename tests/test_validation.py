"""plurcast.validation: one check of a post's text and targets, on every path that writes one.

Each platform's limit is checked with its own way of counting, and each path that writes
a post (plur-post now, --schedule, --draft, --every/--cron, plur-queue edit) refuses a
text over it the same way, writing nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from plur_post.cli import cli as plur_post
from plur_queue.cli import cli as plur_queue
from plurcast import changes, queue, schedules, validation, writing
from plurcast import config as config_module
from plurcast.config import Config
from plurcast.errors import EXIT_INVALID, InvalidInput
from plurcast.schedules import Recurring
from tests.helpers import BASE_CONFIG, NOW, Clock, Run

WriteConfig = Callable[[str], Path]

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 25 bytes
GRINNING = "\U0001f600"  # 😀, 4 bytes
E_ACUTE = "e\u0301"  # e + combining acute accent


def settings_in(text: str, settings: dict[str, str]) -> str:
    """`text` (a config) with each setting line added to the table it names."""
    for table, line in settings.items():
        head = f"[{table}]\n"
        text = text.replace(head, f"{head}{line}\n") if head in text else f"{text}{head}{line}\n"
    return text


def limits_config(write_config: WriteConfig, **settings: str) -> Config:
    """Every platform with its default limits, except where `settings` say otherwise."""
    tables = {k.replace("__", "."): v for k, v in settings.items()}
    write_config(settings_in("[nostr]\n[mastodon]\n[bluesky]\n", tables))
    return config_module.load()


@pytest.fixture
def cfg(write_config: WriteConfig) -> Config:
    return limits_config(write_config)


def invalid(cfg: Config, text: str, *platforms: str, account: str = "default") -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        check(cfg, text, *platforms, account=account)
    assert caught.value.exit_code == EXIT_INVALID == 3
    return caught.value


def check(cfg: Config, text: str, *platforms: str, account: str = "default") -> str:
    return validation.check_text(cfg, text, [(p, account) for p in platforms])


# --- each platform's limit, counted its own way ----------------------------------------------


def test_mastodon_at_limit_is_fine(cfg: Config) -> None:
    check(cfg, "a" * 500, "mastodon")


def test_mastodon_over_limit_names_platform_limit_and_length(cfg: Config) -> None:
    err = invalid(cfg, "a" * 501, "nostr", "mastodon")
    assert "mastodon" in err.message
    assert "500" in err.message
    assert "501" in err.message
    assert "bluesky" not in err.message
    assert err.hint == "shorten it, or leave mastodon out with -p"


def test_mastodon_url_counts_23_at_the_limit(cfg: Config) -> None:
    text = "a" * 476 + " https://example.com/" + "x" * 200  # 476 + 1 + 23 = 500
    check(cfg, text, "mastodon")
    assert "501" in invalid(cfg, "a" + text, "mastodon").message


def test_mastodon_mention_counts_its_local_part(cfg: Config) -> None:
    text = "a" * 494 + "@alice@example.social"  # 494 + 6 = 500
    check(cfg, text, "mastodon")
    assert "501" in invalid(cfg, "a" + text, "mastodon").message


def test_mastodon_configured_max_chars(write_config: WriteConfig) -> None:
    cfg = limits_config(
        write_config, mastodon="max_chars = 5000", accounts__mastodon__small="max_chars = 280"
    )
    check(cfg, "a" * 5000, "mastodon")
    err = invalid(cfg, "a" * 5001, "mastodon")
    assert "5,000" in err.message
    assert "5,001" in err.message
    err = invalid(cfg, "a" * 281, "mastodon", account="small")
    assert "280" in err.message
    assert "281" in err.message


def test_mastodon_limit_ignored_when_mastodon_not_targeted(cfg: Config) -> None:
    check(cfg, "a" * 501, "nostr")


def test_bluesky_300_graphemes_of_multibyte_emoji_is_fine(cfg: Config) -> None:
    text = GRINNING * 300
    assert len(text.encode()) == 1200
    check(cfg, text, "bluesky")
    check(cfg, E_ACUTE * 300, "bluesky")
    check(cfg, "a" * 300, "bluesky")


@pytest.mark.parametrize("text", ["a" * 301, GRINNING * 301, E_ACUTE * 301])
def test_bluesky_301_graphemes_is_refused(cfg: Config, text: str) -> None:
    err = invalid(cfg, text, "bluesky")
    assert err.message == "content is 301 characters, over bluesky's limit of 300"


def test_bluesky_byte_limit_is_checked(cfg: Config) -> None:
    text = FAMILY * 120  # 120 characters, 3,000 bytes
    check(cfg, text, "bluesky")
    err = invalid(cfg, text + "a", "bluesky")
    assert err.message == "content is 3,001 bytes, over bluesky's limit of 3,000"


def test_nostr_limit_is_in_bytes_and_configurable(write_config: WriteConfig) -> None:
    cfg = limits_config(write_config)
    check(cfg, "a" * 65_536, "nostr")
    check(cfg, FAMILY * 2600, "nostr")  # 65,000 bytes, 2,600 characters
    err = invalid(cfg, "a" * 65_537, "nostr")
    assert err.message == "content is 65,537 bytes, over nostr's limit of 65,536"
    assert err.hint == "shorten it, or raise [nostr] max_bytes if your relays take more"
    check(limits_config(write_config, nostr="max_bytes = 100000"), "a" * 100_000, "nostr")
    small = limits_config(write_config, nostr="max_bytes = 4096")
    assert invalid(small, "é" * 2049, "nostr").message.startswith("content is 4,098 bytes")


def test_first_platform_over_limit_in_registry_order_is_named(cfg: Config) -> None:
    assert "mastodon" in invalid(cfg, "a" * 600, "bluesky", "mastodon").message
    err = invalid(cfg, "a" * 400, "bluesky", "mastodon")
    assert "bluesky" in err.message
    assert "400" in err.message


def test_a_named_account_takes_the_default_accounts_limit_unless_it_sets_its_own(
    write_config: WriteConfig,
) -> None:
    cfg = limits_config(
        write_config,
        nostr="max_bytes = 10",
        accounts__nostr__big="max_bytes = 20",
        accounts__nostr__same='keys_file = "same.keys"',
        mastodon="max_chars = 20",
        accounts__mastodon__small="max_chars = 10",
        accounts__mastodon__same='token_file = "same.token"',
    )
    assert "limit of 10" in invalid(cfg, "a" * 11, "nostr", account="same").message
    check(cfg, "a" * 20, "nostr", account="big")
    check(cfg, "a" * 20, "mastodon", account="same")
    assert "limit of 10" in invalid(cfg, "a" * 11, "mastodon", account="small").message


def test_the_text_is_normalised_before_it_is_measured(cfg: Config) -> None:
    assert check(cfg, "  " + "a" * 500 + "\n\n", "mastodon") == "a" * 500
    with pytest.raises(InvalidInput, match="content is empty"):
        check(cfg, " \n", "mastodon")


# --- every path that writes a post ---------------------------------------------------------

# One over-long text per platform, each over that platform's limit only.
OVER = [
    pytest.param({"nostr": "max_bytes = 10"}, "nostr", "é" * 6, "12 bytes", id="nostr"),
    pytest.param(
        {"mastodon": "max_chars = 10"}, "mastodon", "a" * 11, "11 characters", id="mastodon"
    ),
    pytest.param({}, "bluesky", "a" * 301, "301 characters", id="bluesky"),
]


def configured_with(write_config: WriteConfig, settings: dict[str, str]) -> Config:
    """The usual config and keys (with the `configured` fixture), plus `settings`."""
    write_config(settings_in(BASE_CONFIG, settings))
    return config_module.load()


def count_posts(db_path: Path) -> tuple[int, int]:
    if not db_path.exists():
        return 0, 0
    with sqlite3.connect(db_path) as conn:
        posts = conn.execute("SELECT count(*) FROM posts").fetchone()[0]
        schedules_made = conn.execute("SELECT count(*) FROM schedules").fetchone()[0]
    return int(posts), int(schedules_made)


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(("limits", "platform", "text", "length"), OVER)
@pytest.mark.parametrize(
    "how",
    [
        pytest.param(("-s", "30m"), id="schedule"),
        pytest.param(("--draft",), id="draft"),
        pytest.param((), id="now"),
        pytest.param(("--every", "1h"), id="every"),
        pytest.param(("--cron", "0 9 * * *"), id="cron"),
    ],
)
def test_plur_post_refuses_a_text_over_the_limit_on_every_path(
    run: Run,
    clock: Clock,
    write_config: WriteConfig,
    db_path: Path,
    limits: str,
    platform: str,
    text: str,
    length: str,
    how: tuple[str, ...],
) -> None:
    configured_with(write_config, limits)
    result = run(plur_post, text, "-p", platform, *how)
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith(f"Error: content is {length}, over {platform}'s limit of ")
    assert result.stdout == ""
    assert count_posts(db_path) == (0, 0)


@pytest.mark.usefixtures("configured")
@pytest.mark.parametrize(("limits", "platform", "text", "length"), OVER)
def test_plur_queue_edit_refuses_a_text_over_the_limit(
    run: Run,
    clock: Clock,
    write_config: WriteConfig,
    db_path: Path,
    limits: str,
    platform: str,
    text: str,
    length: str,
) -> None:
    configured_with(write_config, limits)
    made = run(plur_post, "short", "-p", platform, "-s", "1h")
    assert made.exit_code == 0, made.output
    post_id = made.stdout.split(":")[1]
    result = run(plur_queue, "edit", post_id, text)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: content is {length}, over {platform}'s limit of ")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT content FROM posts").fetchall() == [("short",)]


@pytest.mark.usefixtures("configured")
def test_an_edit_is_checked_against_the_account_of_each_delivery(
    write_config: WriteConfig,
) -> None:
    """The named account's own limit counts, not the default account's."""
    cfg = configured_with(
        write_config, {"nostr": "max_bytes = 100", "accounts.nostr.test": "max_bytes = 5"}
    )
    conn = queue.open_db(cfg)
    made = writing.create_post(
        conn, cfg, "tiny", schedule="1h", draft=False, platforms=["nostr"], account="test",
        tz=cfg.timezone, now=NOW,
    )  # fmt: skip
    post = queue.get(conn, made.post_id)
    with pytest.raises(InvalidInput, match="over nostr's limit of 5"):
        changes.edit(conn, cfg, post, "a" * 6, NOW)
    assert changes.edit(conn, cfg, post, "a" * 5, NOW).text == "a" * 5


@pytest.mark.usefixtures("configured")
def test_core_paths_share_the_check(write_config: WriteConfig, db_path: Path) -> None:
    """create_post and schedules.create, called as the coming import will call them."""
    cfg = configured_with(write_config, {"nostr": "max_bytes = 10"})
    conn = queue.open_db(cfg)
    tz = cfg.timezone
    with pytest.raises(InvalidInput, match="over nostr's limit of 10"):
        writing.create_post(
            conn, cfg, "a" * 11, schedule="30m", draft=False, platforms=["nostr"], account=None,
            tz=tz, now=NOW,
        )  # fmt: skip
    with pytest.raises(InvalidInput, match="over nostr's limit of 10"):
        schedules.create(
            conn, cfg, "a" * 11, Recurring(every="1h"), platforms=["nostr"], account=None,
            tz=tz, now=NOW,
        )  # fmt: skip
    assert count_posts(db_path) == (0, 0)


def test_check_post_resolves_targets_and_strips_the_text(configured: Path) -> None:
    checked = validation.check_post(
        config_module.load(), " hello \n", platforms=["bluesky,nostr"], account=None
    )
    targets = [("bluesky", "default"), ("nostr", "default")]
    assert checked == validation.CheckedPost("hello", targets, [dict.fromkeys(targets, "hello")])

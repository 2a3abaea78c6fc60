"""A key of the config file that no setting reads is named, with the nearest known one, and
the file is used all the same (plurcast.config_keys): a typo no longer leaves a default in
force without a word, and a file written for the original tool still works quietly."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config, config_keys
from plurcast.platforms import registry
from tests.helpers import BASE_CONFIG, BIN, PATIENCE

WriteConfig = Callable[[str], Path]
ROOT = Path(__file__).resolve().parent.parent

# Every table and key there is, each set once (values only as valid as loading needs).
EVERY_KEY = """\
timezone = "UTC"

[database]
path = "~/posts.db"
busy_timeout = 5

[defaults]
platforms = ["nostr"]
require_alt = false
language = "en"

[media]
fit = false

[scheduling]
poll_interval = 60
max_retries = 3
retry_delay = 300
max_concurrency = 4
shutdown_timeout = 30
grace = 3600
startup_delay = 0
inter_retry_delay = 5

[scheduling.rate_limits.nostr]
posts_per_hour = 100

[slots]
all = ["mon-fri 09:00"]

[nostr]
enabled = true
keys_file = "nostr.keys"
relays = ["ws://127.0.0.1:1"]
min_relays = 1
timeout = 10
default_pow_difficulty = 0
pow_timeout = 300
blossom_servers = ["http://127.0.0.1:1"]
max_bytes = 65536

[mastodon]
instance = "mastodon.example"
token_file = "mastodon.token"
visibility = "public"
timeout = 10
max_chars = 500
max_image_bytes = 16777216

[bluesky]
handle = "alice.test"
app_password_file = "bluesky.password"
pds = "https://bsky.social"
timeout = 10
cards_allow_private = false

[accounts.nostr.work]
keys_file = "work.keys"
relays = ["ws://127.0.0.1:1"]
"""

# What the original tool's own default file holds, and its scheduling keys.
ORIGINAL = """\
[database]
path = "~/.local/share/plurcast/posts.db"

[credentials]
storage = "keyring"
path = "~/.config/plurcast/credentials"

[nostr]
enabled = true
keys_file = "~/.config/plurcast/nostr.keys"
relays = ["wss://relay.damus.io"]

[ssb]
enabled = false
feed_path = "~/.plurcast-ssb"

[defaults]
platforms = ["nostr"]

[scheduling]
poll_interval = 60
max_retries = 3
retry_delay = 300
inter_retry_delay = 5
max_retries_per_iteration = 10
"""


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "plurcast.config"]


def test_every_key_there_is_loads_without_a_word(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    for platform in registry.NAMES:  # the file above holds each of them
        assert all(f"\n{key} = " in EVERY_KEY for key in config_keys.platform_keys(platform))
    write_config(EVERY_KEY)
    config.load()
    assert warnings(caplog) == []


def test_a_file_written_for_the_original_tool_loads_without_a_word(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    write_config(ORIGINAL)
    config.load()
    assert warnings(caplog) == []


@pytest.mark.parametrize(
    ("extra", "named", "near"),
    [
        ("[scheduling]\npoll_intervall = 5\n", "scheduling.poll_intervall", "poll_interval"),
        ("[sheduling]\npoll_interval = 5\n", "sheduling", "scheduling"),
        ("[database]\nbusy_timout = 9\n", "database.busy_timout", "busy_timeout"),
        ("[media]\nfits = true\n", "media.fits", "fit"),
        ("[mastodon.extra]\nx = 1\n", "mastodon.extra", None),
        ("[accounts.nostr.work]\nrelais = []\n", "accounts.nostr.work.relais", "relays"),
        (
            "[scheduling.rate_limits.nostr]\nposts_per_hours = 5\n",
            "scheduling.rate_limits.nostr.posts_per_hours",
            "posts_per_hour",
        ),
        ("colour = 'red'\n", "colour", None),
    ],
)
def test_a_key_nothing_reads_is_named_with_the_nearest_known_one(
    write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture,
    extra: str,
    named: str,
    near: str | None,
) -> None:
    # a key of the top level goes before the first table
    path = write_config(BASE_CONFIG + extra if extra.startswith("[") else extra + BASE_CONFIG)
    cfg = config.load()
    hint = f" (did you mean {near}?)" if near else ""
    assert warnings(caplog) == [
        f"{path}: {named} is not a setting Plurcast reads; it has no effect{hint}"
    ]
    assert cfg.scheduling.poll_interval == 60.0  # the misspelt key changed nothing


@pytest.mark.usefixtures("configured")
def test_plur_post_names_the_key_and_does_its_work(config_path: Path) -> None:
    """In a real process, where nothing set logging up: one bare line on stderr, exit 0."""
    config_path.write_text(BASE_CONFIG + "[scheduling]\nmax_retry = 9\n")
    done = subprocess.run(
        [str(BIN / "plur-post"), "a draft", "--draft"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("draft:")
    assert done.stderr == (
        f"{config_path}: scheduling.max_retry is not a setting Plurcast reads; it has no effect"
        " (did you mean max_retries?)\n"
    )


# The ways a platform's settings modules and adapter read an account's key.
_READS = re.compile(
    r"""inherited\("(\w+)"\)|settings\.get\("(\w+)"\)|secret\(\s*acc,\s*"(\w+)"|"""
    r"""timeout\(\s*acc,\s*"(\w+)"|accounts\.timeout\(acc\)()"""
)


@pytest.mark.parametrize("platform", registry.NAMES)
def test_every_key_a_platform_reads_is_known(platform: str) -> None:
    """A key read but not listed in the registry would be named as one nothing reads."""
    entry = registry.get(platform)
    read: set[str] = set()
    for module in {entry.module, entry.settings or entry.module}:
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        for match in _READS.finditer(source):
            read.add(next((g for g in match.groups() if g), "timeout"))
    assert read, f"no key reads found in {platform}'s modules: the pattern is stale"
    assert read <= config_keys.platform_keys(platform), read - config_keys.platform_keys(platform)


def test_every_key_the_config_module_reads_is_known() -> None:
    source = (ROOT / "plurcast" / "config.py").read_text()
    read = set(re.findall(r"""\.(?:get|number|whole)\("([a-z_]+)\"""", source))
    known = set().union(*config_keys.TABLES.values(), config_keys.RATE_LIMIT_KEYS, {"enabled"})
    assert len(read) > 15
    assert read <= known, read - known


def test_no_file_no_warning(caplog: pytest.LogCaptureFixture, config_path: Path) -> None:
    assert not config_path.exists()
    config.load()
    assert warnings(caplog) == []

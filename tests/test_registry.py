"""plurcast.platforms.registry: every platform's facts in one place, read by everything else."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast.config import Config
from plurcast.platforms import registry
from plurcast.platforms.registry import mastodon_length
from plurcast.pool import default_factories
from tests.peers.postgres import Backend, open_test_db

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 25 bytes
ROOT = Path(__file__).resolve().parent.parent

WriteConfig = Callable[[str], Path]


def test_the_three_platforms_in_their_order() -> None:
    assert registry.NAMES == ("nostr", "mastodon", "bluesky")
    assert registry.ORDER == {"nostr": 0, "mastodon": 1, "bluesky": 2}
    assert [registry.get(n).title for n in registry.NAMES] == ["Nostr", "Mastodon", "Bluesky"]
    with pytest.raises(KeyError):
        registry.get("myspace")


def test_default_rate_limits() -> None:
    assert registry.default_posts_per_hour() == {"nostr": 100, "mastodon": 300, "bluesky": 1000}


def test_every_adapter_module_provides_what_the_registry_calls() -> None:
    for platform in registry.PLATFORMS:
        adapter, settings = platform.adapter(), platform.settings_module()
        assert callable(settings.check_credentials), platform.name
        assert callable(adapter.publisher), platform.name
        assert platform.name == adapter.PLATFORM == settings.PLATFORM
    assert set(default_factories()) == set(registry.NAMES)


def test_limits_with_no_settings(write_config: WriteConfig) -> None:
    write_config("")
    cfg = config_module.load()
    nostr, mastodon, bluesky = (registry.limits(cfg, n, "default") for n in registry.NAMES)
    assert [(b.unit, b.maximum) for b in nostr.text] == [("bytes", 65536)]
    assert [(b.unit, b.maximum) for b in mastodon.text] == [("characters", 500)]
    assert [(b.unit, b.maximum) for b in bluesky.text] == [("characters", 300), ("bytes", 3000)]
    assert (nostr.max_images, nostr.max_image_bytes, nostr.max_alt_chars) == (4, None, 5000)
    assert (mastodon.max_images, mastodon.max_image_bytes, mastodon.max_alt_chars) == (
        4,
        16 * 1024 * 1024,
        1500,
    )
    assert (bluesky.max_images, bluesky.max_image_bytes, bluesky.max_alt_chars) == (
        4,
        2_000_000,
        2000,
    )


def test_capabilities() -> None:
    caps = {p.name: p.capabilities for p in registry.PLATFORMS}
    assert all(c.threads and c.languages and c.media for c in caps.values())
    assert {n: c.content_warning for n, c in caps.items()} == {
        "nostr": True,
        "mastodon": True,
        "bluesky": False,
    }


def test_the_first_excess_says_platform_unit_length_and_maximum(
    write_config: WriteConfig,
) -> None:
    write_config("[mastodon]\nmax_chars = 10\n")
    limits = registry.limits(config_module.load(), "mastodon", "default")
    assert limits.fits("a" * 10)
    assert limits.first_excess("a" * 10) is None
    found = limits.first_excess("a" * 12)
    assert found is not None
    limit, size = found
    assert (limit.platform, limit.unit, limit.maximum, size) == ("mastodon", "characters", 10, 12)
    assert limit.over(size) == "12 characters, over mastodon's limit of 10"
    assert limit.excess("a" * 10) is None


def test_bluesky_checks_graphemes_before_bytes(write_config: WriteConfig) -> None:
    write_config("")
    limits = registry.limits(config_module.load(), "bluesky", "default")
    found = limits.first_excess(FAMILY * 301)  # over both
    assert found is not None
    assert (found[0].unit, found[1]) == ("characters", 301)


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("https://example.com", 23),
        ("http://x.y", 23),
        ("see https://example.com/a/very/long/path?with=query&and=more#frag ok", 4 + 23 + 3),
        ("HTTPS://EXAMPLE.COM/X", 23),
        ("@alice@example.social", 6),
        ("hi @alice@example.social!", 3 + 6 + 1),
        ("@alice", 6),
        ("no link here", 12),
        ("ftp://example.com/x", 19),  # only http(s) links count as 23
        ("mail bob@example.com", 20),
        ("two https://a.example https://b.example", 4 + 23 + 1 + 23),
        ("@bob@mastodon.example.org https://example.com " + FAMILY, 4 + 1 + 23 + 1 + 1),
    ],
)
def test_mastodon_length(text: str, length: int) -> None:
    assert mastodon_length(text) == length


def test_mastodon_length_url_followed_by_full_stop() -> None:
    assert mastodon_length("Read https://example.com/post.") == 5 + 23 + 1


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[nostr]\nmax_bytes = 0\n", "nostr.max_bytes"),
        ("[nostr]\nmax_bytes = 1.5\n", "nostr.max_bytes"),
        ("[mastodon]\nmax_chars = true\n", "mastodon.max_chars"),
        ('[accounts.nostr.big]\nmax_bytes = "lots"\n', "accounts.nostr.big.max_bytes"),
    ],
)
def test_every_maximum_setting_is_checked_when_the_config_is_read(
    write_config: WriteConfig, text: str, key: str
) -> None:
    write_config(text)
    with pytest.raises(config_module.ConfigError, match=re.escape(key)):
        config_module.load()


def test_a_setting_of_a_named_account_falls_back_to_the_default_account(
    write_config: WriteConfig,
) -> None:
    write_config("[nostr]\nmax_bytes = 10\n[accounts.nostr.big]\nmax_bytes = 20\n")
    cfg: Config = config_module.load()
    assert cfg.account_setting("nostr", "big", "max_bytes") == 20
    assert cfg.account_setting("nostr", "other", "max_bytes") == 10
    assert cfg.account_setting("mastodon", "default", "max_chars") is None


def test_reading_the_config_imports_no_adapter_and_no_sdk() -> None:
    """Every command reads the config: the registry it reads must stay import-light."""
    code = (
        "import sys\n"
        "import plurcast.config, plurcast.models, plurcast.validation\n"
        "heavy = [m for m in sys.modules if m.startswith(('plurcast.platforms.nostr',\n"
        "    'plurcast.platforms.mastodon', 'plurcast.platforms.bluesky', 'regex', 'nostr_sdk',\n"
        "    'mastodon', 'atproto', 'asyncio'))]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Where a platform is still named outside plurcast/platforms/, and why (none today: the
# --reply-to shapes are each platform's *_references module, and since migration 8 the
# schema names no platform).
NAMED_ELSEWHERE: set[str] = set()


def test_no_platform_is_named_outside_the_registry_and_its_adapters() -> None:
    """A fourth platform is one new module and one registry entry: no table elsewhere.

    A string that is a platform's name (`"mastodon"`) outside plurcast/platforms/ is a
    platform fact in the wrong place, unless NAMED_ELSEWHERE says why.
    """
    offenders = []
    for package in ("plurcast", "plur_post", "plur_queue", "plur_send"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if path.parent.name == "platforms" or where in NAMED_ELSEWHERE:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in registry.NAMES:
                    offenders.append(f"{where}:{node.lineno}: {node.value!r}")
    assert offenders == []


def test_the_schema_names_no_platform(db_path: Path, backend: Backend) -> None:
    """A new platform needs no migration: no constraint, index or default of the migrated
    schema names one (migration 8 dropped migration 1's CHECK), on either backend."""
    conn = open_test_db(db_path)
    try:
        if backend.name == "postgresql":
            rows = conn.execute(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema() "
                "UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "UNION ALL SELECT column_default FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_default IS NOT NULL"
            ).fetchall()
        else:
            rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    finally:
        conn.close()
    schema = "\n".join(str(row[0]) for row in rows)
    assert "deliveries" in schema and "'pending'" in schema  # the schema was read
    assert [name for name in registry.NAMES if f"'{name}'" in schema] == []

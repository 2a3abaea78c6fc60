"""plurcast.config: where files live, what config.toml may say, and how mistakes are reported."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from plurcast import config
from plurcast.config import (
    Scheduling,
    load,
    system_timezone,
    validate_account_name,
    zone,
)
from plurcast.errors import EXIT_CONFIG, EXIT_INVALID, ConfigError, InvalidInput
from plurcast.platforms import registry

WriteConfig = Callable[[str], Path]


def mastodon_max_chars(cfg: config.Config, account: str = "default") -> int:
    (bound,) = registry.limits(cfg, "mastodon", account).text
    return bound.maximum


def config_error(write_config: WriteConfig, text: str) -> tuple[ConfigError, Path]:
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load()
    return caught.value, path


# --- paths -------------------------------------------------------------------------------


def test_config_path_defaults_to_xdg_config_home(isolated_home: Path, config_path: Path) -> None:
    assert config.config_path() == config_path
    assert config_path == isolated_home / ".config" / "plurcast" / "config.toml"


def test_config_path_falls_back_to_home_dot_config(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert config.config_path() == isolated_home / ".config" / "plurcast" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert config.config_path() == isolated_home / ".config" / "plurcast" / "config.toml"


def test_config_path_follows_a_moved_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
    assert config.config_path() == tmp_path / "elsewhere" / "plurcast" / "config.toml"


def test_plurcast_config_beats_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "mine.toml"
    explicit.write_text('timezone = "Asia/Tokyo"\n')
    monkeypatch.setenv("PLURCAST_CONFIG", str(explicit))
    assert config.config_path() == explicit
    cfg = load()
    assert cfg.path == explicit
    assert cfg.exists is True
    assert cfg.timezone.key == "Asia/Tokyo"


def test_plurcast_config_expands_tilde(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_home / "cfg.toml").write_text('timezone = "Europe/Paris"\n')
    monkeypatch.setenv("PLURCAST_CONFIG", "~/cfg.toml")
    assert config.config_path() == isolated_home / "cfg.toml"
    assert load().timezone.key == "Europe/Paris"


def test_db_path_defaults_to_xdg_data_home(write_config: WriteConfig, db_path: Path) -> None:
    write_config("")
    assert load().db_path == db_path
    assert config.default_db_path() == db_path


def test_db_path_falls_back_to_home_local_share(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")
    expected = isolated_home / ".local" / "share" / "plurcast" / "posts.db"
    assert load().db_path == expected


def test_db_path_from_config_with_tilde(isolated_home: Path, write_config: WriteConfig) -> None:
    write_config('[database]\npath = "~/queue/my.db"\n')
    assert load().db_path == isolated_home / "queue" / "my.db"


def test_env_db_path_beats_config(
    tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config('[database]\npath = "~/queue/my.db"\n')
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "env.db"))
    assert load().db_path == tmp_path / "env.db"


def test_env_db_path_expands_tilde(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLURCAST_DB_PATH", "~/from-env.db")
    assert load().db_path == isolated_home / "from-env.db"


def test_relative_db_path_in_config_is_relative_to_the_config_file(
    tmp_path: Path, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As keys_file is: the daemon runs in `/` and must open the same database as the CLI.
    path = write_config('[database]\npath = "queue/posts.db"\n')
    for cwd in (tmp_path, Path("/")):
        monkeypatch.chdir(cwd)
        assert load().db_path == path.parent / "queue" / "posts.db"


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_a_blank_db_path_in_config_is_a_config_error(write_config: WriteConfig, blank: str) -> None:
    err, path = config_error(write_config, f"[database]\npath = {blank!r}\n".replace("'", '"'))
    assert err.exit_code == EXIT_CONFIG
    assert err.message == f"{path}: database.path is blank"
    assert err.hint == 'name a file, e.g. "~/posts.db", or remove the line'


def test_a_blank_db_path_in_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLURCAST_DB_PATH", "   ")
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.exit_code == EXIT_CONFIG
    assert caught.value.message == "PLURCAST_DB_PATH is blank"
    monkeypatch.setenv("PLURCAST_DB_PATH", "")  # empty is unset, as for every variable here
    assert load().db_path == config.default_db_path()


def test_busy_timeout_default_and_configured(write_config: WriteConfig) -> None:
    assert load().busy_timeout == 5.0
    write_config("[database]\nbusy_timeout = 0.25\n")
    assert load().busy_timeout == 0.25


# --- missing and unreadable files ------------------------------------------------------------


def test_missing_default_config_means_nothing_configured(config_path: Path) -> None:
    assert not config_path.exists()
    cfg = load()
    assert cfg.exists is False
    assert cfg.path == config_path
    assert cfg.platforms == {}
    assert cfg.enabled_platforms() == ()
    assert cfg.default_platforms == ()
    assert cfg.scheduling == Scheduling()
    assert mastodon_max_chars(cfg) == 500


def test_missing_explicit_config_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("PLURCAST_CONFIG", str(missing))
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.exit_code == EXIT_CONFIG == 2
    assert str(missing) in caught.value.message
    assert "PLURCAST_CONFIG" in caught.value.message


def test_a_config_that_is_no_regular_file_is_a_config_error(
    tmp_path: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory or a device was "does not exist"; the default one was silently nothing.
    config_path.mkdir(parents=True)
    with pytest.raises(ConfigError) as caught:
        load()
    assert caught.value.message == f"config file {config_path} is not a regular file"
    assert caught.value.hint == "move it aside, or set PLURCAST_CONFIG to a TOML file"
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer for ever
    for explicit in (fifo, Path("/dev/null"), tmp_path):
        monkeypatch.setenv("PLURCAST_CONFIG", str(explicit))
        with pytest.raises(ConfigError) as caught:
            load()
        assert caught.value.exit_code == EXIT_CONFIG
        assert caught.value.message == f"config file {explicit} is not a regular file"
        assert caught.value.hint == "unset PLURCAST_CONFIG or point it at a TOML file"


def test_a_blank_plurcast_config_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLURCAST_CONFIG", " ")
    with pytest.raises(ConfigError) as caught:
        load()
    assert (caught.value.exit_code, caught.value.message) == (2, "PLURCAST_CONFIG is blank")


def test_a_byte_order_mark_is_no_toml_error(config_path: Path) -> None:
    config_path.parent.mkdir(parents=True)
    config_path.write_bytes(b'\xef\xbb\xbftimezone = "Asia/Tokyo"\r\n')
    assert load().timezone == ZoneInfo("Asia/Tokyo")


def test_bad_toml_names_file_and_line(write_config: WriteConfig) -> None:
    err, path = config_error(write_config, 'timezone = "UTC"\n\n[nostr\nenabled = true\n')
    assert err.exit_code == 2
    assert str(path) in err.message
    assert "line 3" in err.message
    assert "\n" not in str(err)


def test_config_not_utf8(config_path: Path) -> None:
    config_path.parent.mkdir(parents=True)
    config_path.write_bytes(b'timezone = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8") as caught:
        load()
    assert str(config_path) in caught.value.message


# --- wrong types and values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[scheduling]\npoll_interval = "x"\n', "scheduling.poll_interval"),
        ("[scheduling]\npoll_interval = 0\n", "scheduling.poll_interval"),
        ("[scheduling]\npoll_interval = true\n", "scheduling.poll_interval"),
        ("[scheduling]\nmax_retries = -1\n", "scheduling.max_retries"),
        ("[scheduling]\nmax_retries = true\n", "scheduling.max_retries"),
        ("[scheduling]\nmax_retries = 1.5\n", "scheduling.max_retries"),
        ("[scheduling]\nretry_delay = -5\n", "scheduling.retry_delay"),
        ("[scheduling]\nmax_concurrency = 0\n", "scheduling.max_concurrency"),
        ('[scheduling]\ngrace = "1h"\n', "scheduling.grace"),
        ('[scheduling]\ninter_retry_delay = "5s"\n', "scheduling.inter_retry_delay"),
        (
            "[scheduling.rate_limits.nostr]\nposts_per_hour = 0\n",
            "rate_limits.nostr.posts_per_hour",
        ),
        ("[scheduling.rate_limits.nostr]\nposts_per_hour = true\n", "posts_per_hour"),
        ("[scheduling.rate_limits.myspace]\nposts_per_hour = 5\n", "rate_limits.myspace"),
        ('[database]\nbusy_timeout = "soon"\n', "database.busy_timeout"),
        ("[database]\npath = 5\n", "database.path"),
        ('[nostr]\nenabled = "yes"\n', "nostr.enabled"),
        ("[mastodon]\nmax_chars = 0\n", "mastodon.max_chars"),
        ('[mastodon]\nmax_chars = "500"\n', "mastodon.max_chars"),
        ("timezone = 1\n", "timezone"),
        ('[defaults]\nplatforms = "nostr"\n', "defaults.platforms"),
        ("nostr = 1\n", "nostr"),
    ],
)
def test_wrong_type_or_value_names_the_key(write_config: WriteConfig, text: str, key: str) -> None:
    err, path = config_error(write_config, text)
    assert err.exit_code == EXIT_CONFIG
    assert key in err.message
    assert str(path) in err.message


def test_scheduling_values_are_read(write_config: WriteConfig) -> None:
    write_config(
        "[scheduling]\npoll_interval = 5\nmax_retries = 0\nretry_delay = 30.5\n"
        "max_concurrency = 2\nshutdown_timeout = 3\ngrace = 600\nstartup_delay = 1\n"
        "inter_retry_delay = 2\n"
    )
    s = load().scheduling
    assert (s.poll_interval, s.max_retries, s.retry_delay, s.max_concurrency) == (5.0, 0, 30.5, 2)
    assert (s.shutdown_timeout, s.grace, s.startup_delay) == (3, 600, 1)
    assert isinstance(s.poll_interval, float)
    assert isinstance(s.grace, float)


def test_scheduling_defaults() -> None:
    s = load().scheduling
    assert (s.poll_interval, s.max_retries, s.retry_delay) == (60.0, 3, 300.0)
    assert (s.shutdown_timeout, s.grace) == (20.0, None)


# --- timezone ----------------------------------------------------------------------------


def test_unknown_timezone_in_config(write_config: WriteConfig) -> None:
    err, path = config_error(write_config, 'timezone = "Mars/Base"\n')
    assert err.exit_code == EXIT_CONFIG
    assert "Mars/Base" in err.message
    assert str(path) in err.message


def test_timezone_from_config_is_honoured(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    write_config('timezone = "Europe/Berlin"\n')
    assert load().timezone == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("tz", "expected"),
    [("America/New_York", "America/New_York"), (":Asia/Tokyo", "Asia/Tokyo"), ("UTC", "UTC")],
)
def test_system_timezone_from_tz_env(
    monkeypatch: pytest.MonkeyPatch, tz: str, expected: str
) -> None:
    monkeypatch.setenv("TZ", tz)
    assert system_timezone().key == expected
    assert load().timezone.key == expected


@pytest.mark.parametrize(
    "junk", ["", "Mars/Base", "../etc/passwd", "/etc/passwd", " UTC", "Europe/../UTC", "UTC\n"]
)
def test_zone_rejects_junk(junk: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        zone(junk)
    assert caught.value.exit_code == EXIT_INVALID == 3
    assert "unknown timezone" in caught.value.message


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_zone_accepts_iana_names(name: str) -> None:
    assert zone(name).key == name


# --- platforms, defaults and accounts ------------------------------------------------------


def test_defaults_platforms_unknown_name(write_config: WriteConfig) -> None:
    err, _ = config_error(write_config, '[defaults]\nplatforms = ["nostr", "myspace"]\n')
    assert err.exit_code == EXIT_CONFIG
    assert "defaults.platforms" in err.message
    assert "myspace" in err.message


def test_defaults_platforms_are_read(configured: Path) -> None:
    assert load().default_platforms == ("nostr", "mastodon")


def test_enabled_platforms_in_canonical_order_without_disabled(write_config: WriteConfig) -> None:
    write_config(
        '[bluesky]\nhandle = "a.test"\n\n[mastodon]\nenabled = false\n\n[nostr]\nrelays = []\n'
    )
    cfg = load()
    assert cfg.enabled_platforms() == ("nostr", "bluesky")
    assert set(cfg.platforms) == {"nostr", "mastodon", "bluesky"}
    assert cfg.platforms["mastodon"].enabled is False
    assert cfg.platforms["bluesky"].accounts["default"] == {"handle": "a.test"}


def test_all_platforms_of_the_usual_config(configured: Path) -> None:
    cfg = load()
    assert cfg.exists is True
    assert cfg.enabled_platforms() == ("nostr", "mastodon", "bluesky")
    assert cfg.timezone.key == "Europe/Berlin"


def test_named_account(configured: Path) -> None:
    nostr = load().platforms["nostr"]
    assert set(nostr.accounts) == {"default", "test"}
    assert nostr.accounts["test"] == {"keys_file": "~/.config/plurcast/nostr-test.keys"}
    assert nostr.accounts["default"]["keys_file"] == "~/.config/plurcast/nostr.keys"


@pytest.mark.parametrize("name", ["a", "work-2", "A_b", "x" * 64])
def test_valid_account_names(write_config: WriteConfig, name: str) -> None:
    write_config(f'[nostr]\n\n[accounts.nostr."{name}"]\nkeys_file = "k"\n')
    assert load().platforms["nostr"].accounts[name] == {"keys_file": "k"}
    assert validate_account_name(name) == name


@pytest.mark.parametrize("name", ["bad name", "default", "x" * 65, "émile", "a.b", ""])
def test_invalid_account_names(write_config: WriteConfig, name: str) -> None:
    err, _ = config_error(write_config, f'[nostr]\n\n[accounts.nostr."{name}"]\nkeys_file = "k"\n')
    assert err.exit_code == EXIT_CONFIG
    assert f"accounts.nostr.{name}" in err.message
    assert "account name" in err.message


@pytest.mark.parametrize("name", ["bad name", "x" * 65, "a/b", ""])
def test_validate_account_name_rejects(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_account_name(name)
    assert caught.value.exit_code == EXIT_INVALID


def test_accounts_for_unknown_platform(write_config: WriteConfig) -> None:
    err, _ = config_error(write_config, '[accounts.myspace.work]\ntoken_file = "t"\n')
    assert err.exit_code == EXIT_CONFIG
    assert "accounts.myspace" in err.message
    assert "is not a platform" in err.message


def test_named_account_settings_are_validated(write_config: WriteConfig) -> None:
    write_config(
        '[mastodon]\ninstance = "a.example"\n\n[accounts.mastodon.work]\nmax_chars = "x"\n'
    )
    with pytest.raises(ConfigError, match=r"accounts\.mastodon\.work\.max_chars"):
        load()


# --- rate limits and character limits -----------------------------------------------------


def test_rate_limit_defaults(configured: Path) -> None:
    assert load().scheduling.posts_per_hour == {"nostr": 100, "mastodon": 300, "bluesky": 1000}
    assert registry.default_posts_per_hour() == {"nostr": 100, "mastodon": 300, "bluesky": 1000}


def test_rate_limit_defaults_with_scheduling_table(write_config: WriteConfig) -> None:
    write_config("[scheduling]\npoll_interval = 10\n")
    assert load().scheduling.posts_per_hour == {"nostr": 100, "mastodon": 300, "bluesky": 1000}


def test_rate_limit_overrides(write_config: WriteConfig) -> None:
    write_config(
        "[scheduling.rate_limits.bluesky]\nposts_per_hour = 50\n\n"
        "[scheduling.rate_limits.nostr]\nposts_per_hour = 7\n"
    )
    assert load().scheduling.posts_per_hour == {"nostr": 7, "mastodon": 300, "bluesky": 50}


def test_rate_limits_are_not_shared_between_configs(write_config: WriteConfig) -> None:
    write_config("[scheduling.rate_limits.nostr]\nposts_per_hour = 7\n")
    assert load().scheduling.posts_per_hour["nostr"] == 7
    assert Scheduling().posts_per_hour["nostr"] == 100
    assert registry.get("nostr").posts_per_hour == 100


def test_mastodon_max_chars_default(configured: Path) -> None:
    cfg = load()
    assert mastodon_max_chars(cfg) == 500
    assert mastodon_max_chars(cfg, "nobody") == 500


def test_mastodon_max_chars_configured(write_config: WriteConfig) -> None:
    write_config(
        '[mastodon]\ninstance = "big.example"\nmax_chars = 5000\n\n'
        '[accounts.mastodon.small]\ninstance = "small.example"\nmax_chars = 280\n'
    )
    cfg = load()
    assert mastodon_max_chars(cfg) == 5000
    assert mastodon_max_chars(cfg, "small") == 280


def test_named_accounts_alone_do_not_make_a_default_platform(write_config: WriteConfig) -> None:
    write_config('[nostr]\n\n[accounts.bluesky.work]\nhandle = "w.test"\n')
    cfg = load()
    assert cfg.enabled_platforms() == ("nostr",)
    assert set(cfg.platforms["bluesky"].accounts) == {"work"}


def test_relative_xdg_dirs_are_ignored(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    assert config.config_path() == isolated_home / ".config" / "plurcast" / "config.toml"
    assert config.default_db_path() == isolated_home / ".local" / "share" / "plurcast" / "posts.db"

"""Secret files: only the owner may read them; the environment speaks for the default account."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plurcast.errors import EXIT_CONFIG, ConfigError
from plurcast.secrets import read_secret_file, secret

ENV = "PLURCAST_TEST_SECRET"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(mode)
    return path


def refused(path: Path, what: str = "token") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        read_secret_file(path, what)
    assert info.value.exit_code == EXIT_CONFIG == 2
    return info.value


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_file_is_read_and_stripped(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "token", "  s3cret\n\n", mode)
    assert read_secret_file(path, "token") == "s3cret"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602])
def test_file_open_to_group_or_other_is_refused_with_the_chmod_fix(
    tmp_path: Path, mode: int
) -> None:
    path = write(tmp_path / "token", "s3cret", mode)
    error = refused(path)
    assert error.message == f"{path} is readable by other users"
    assert error.hint == f"chmod 600 {path}"
    assert "s3cret" not in str(error)


def test_symlink_to_an_open_file_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "real", "s3cret", 0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert "readable by other users" in refused(link).message


def test_symlink_to_a_private_file_is_read(tmp_path: Path) -> None:
    target = write(tmp_path / "real", "s3cret", 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_secret_file(link, "token") == "s3cret"


def test_missing_file_names_the_path_and_how_to_create_it(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "token"
    error = refused(path, "Mastodon access token")
    assert str(path) in error.message
    assert "does not exist" in error.message
    assert error.hint is not None
    assert "umask 077" in error.hint
    assert str(path) in error.hint


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    error = refused(write(tmp_path / "token", text))
    assert "is empty" in error.message


def test_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dir"
    path.mkdir(mode=0o700)
    assert "not a regular file" in refused(path).message


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    assert "UTF-8" in refused(write(tmp_path / "token", b"\xff\xfe\x00")).message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    assert "permission denied" in refused(write(tmp_path / "token", "x", 0o000)).message


def test_tilde_is_expanded(isolated_home: Path) -> None:
    write(isolated_home / ".config" / "plurcast" / "token", "from-home\n")
    assert read_secret_file(Path("~/.config/plurcast/token"), "token") == "from-home"


# --- secret(): environment or file --------------------------------------------------


def test_env_wins_for_the_default_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "token", "from-file")
    monkeypatch.setenv(ENV, " from-env\n")
    assert secret({"token_file": str(path)}, "token_file", ENV, "token", None) == "from-env"


def test_env_wins_even_when_the_file_is_missing_or_unsafe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "from-env")
    unsafe = write(tmp_path / "token", "from-file", 0o644)
    assert secret({"token_file": str(unsafe)}, "token_file", ENV, "token", None) == "from-env"
    assert secret({}, "token_file", ENV, "token", None) == "from-env"


def test_env_is_ignored_for_a_named_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "token", "from-file")
    monkeypatch.setenv(ENV, "from-env")
    assert secret({"token_file": str(path)}, "token_file", None, "token", None) == "from-file"
    with pytest.raises(ConfigError):
        secret({}, "token_file", None, "token", None)


def test_empty_env_falls_back_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "token", "from-file")
    monkeypatch.setenv(ENV, "  ")
    assert secret({"token_file": str(path)}, "token_file", ENV, "token", None) == "from-file"


def test_file_setting_with_tilde(isolated_home: Path) -> None:
    write(isolated_home / "t", "from-home")
    assert secret({"token_file": "~/t"}, "token_file", None, "token", None) == "from-home"


def test_relative_file_setting_is_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "keys" / "token", "beside-config")
    cfg_path = tmp_path / "conf" / "config.toml"
    got = secret({"token_file": "keys/token"}, "token_file", None, "token", cfg_path)
    assert got == "beside-config"


def test_missing_setting_says_which_setting_to_add(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as info:
        secret({}, "token_file", ENV, "Mastodon access token", cfg_path, section="mastodon")
    error = info.value
    assert error.exit_code == 2
    assert "no Mastodon access token configured" in error.message
    assert error.hint is not None
    assert "token_file" in error.hint
    assert "[mastodon]" in error.hint
    assert str(cfg_path) in error.hint
    assert ENV in error.hint


def test_missing_setting_for_a_named_account_does_not_mention_the_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        secret({}, "token_file", None, "token", tmp_path / "c.toml", section="accounts.m.x")
    assert info.value.hint is not None
    assert ENV not in info.value.hint
    assert "[accounts.m.x]" in info.value.hint


def test_setting_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        secret({"token_file": 3}, "token_file", None, "token", tmp_path / "c.toml")
    assert "token_file" in info.value.message


def test_unsafe_file_named_by_setting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "token", "from-file", 0o640)
    with pytest.raises(ConfigError) as info:
        secret({"token_file": str(path)}, "token_file", None, "token", None)
    assert info.value.hint == f"chmod 600 {path}"

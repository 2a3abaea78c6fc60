"""What every adapter reads and says the same way: an account's timeout and secret, the
plain-http rule for its server, a reason as one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from plurcast import config as config_module
from plurcast.errors import ConfigError
from plurcast.platforms import accounts
from plurcast.platforms.base import one_line
from tests.helpers import secret_file

WriteConfig = Callable[[str], Path]


def nostr_account(write_config: WriteConfig, text: str, name: str = "default") -> accounts.Account:
    write_config(text)
    return accounts.account(config_module.load(), "nostr", name, needs="keys_file and relays")


def test_timeout_default_inherited_and_checked(write_config: WriteConfig) -> None:
    assert accounts.timeout(nostr_account(write_config, "[nostr]\n")) == accounts.DEFAULT_TIMEOUT
    named = nostr_account(write_config, "[nostr]\ntimeout = 3\n[accounts.nostr.b]\n", "b")
    assert accounts.timeout(named) == 3.0
    own = nostr_account(
        write_config, "[nostr]\ntimeout = 3\n[accounts.nostr.b]\ntimeout = 4\n", "b"
    )
    assert accounts.timeout(own) == 4.0
    for bad in ("0", "-1", "true", '"10"', "nan", "inf", "1e300", "55.5"):
        with pytest.raises(ConfigError, match=r"nostr\.timeout must be a number of seconds above"):
            accounts.timeout(nostr_account(write_config, f"[nostr]\ntimeout = {bad}\n"))


def test_secret_from_the_environment_for_the_default_account_only(
    write_config: WriteConfig, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secret_file(isolated_home / "b.keys", "from the file")
    text = f'[nostr]\nkeys_file = "{key}"\n[accounts.nostr.b]\nkeys_file = "{key}"\n'
    monkeypatch.setenv("PLURCAST_NOSTR_KEY", " from the environment \n")
    default = nostr_account(write_config, text)
    found = accounts.secret(default, "keys_file", "PLURCAST_NOSTR_KEY", "Nostr secret key")
    assert found == accounts.Secret("from the environment", "PLURCAST_NOSTR_KEY")
    named = nostr_account(write_config, text, "b")
    found = accounts.secret(named, "keys_file", "PLURCAST_NOSTR_KEY", "Nostr secret key")
    assert found == accounts.Secret("from the file", str(key))


def test_a_relative_secret_file_is_relative_to_the_config_file(write_config: WriteConfig) -> None:
    acc = nostr_account(write_config, '[nostr]\nkeys_file = "n.keys"\n')
    secret_file(acc.cfg_path.parent / "n.keys", "k")
    found = accounts.secret(acc, "keys_file", "PLURCAST_NOSTR_KEY", "Nostr secret key")
    assert found.source == str(acc.cfg_path.parent / "n.keys")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("127.0.0.2", False),
        ("example.org", False),
        ("", False),
        (None, False),
    ],
)
def test_plain_http_only_to_this_machine(host: str | None, allowed: bool) -> None:
    assert accounts.plain_http_allowed(host) is allowed


def test_one_line() -> None:
    assert one_line("  relay\n  said:\tno  ") == "relay said: no"
    assert one_line(" \n") == "(no reason given)"
    assert one_line("x" * 400) == "x" * 400
    assert one_line("x" * 400, 300) == "x" * 299 + "…"
    assert one_line("abcdef", 4) == "abc…"

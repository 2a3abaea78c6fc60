"""What a post must satisfy before it is written: its text and its targets, checked once.

Every way of writing a post — plur-post now or --schedule, a recurring schedule, an
edit, an import — calls `check_post` (new text and targets) or `check_text` (new
text for known targets), so that a post a platform would refuse at 9 am is refused
now, while the user is at the keyboard, and the same way on every path.

The rules themselves are platform facts and live in the registry: a platform's text
limits and way of counting (`registry.Platform.text_limits`), its credential check
(the adapter's `check_credentials`). Nothing here is written to the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from plurcast import content
from plurcast.config import DEFAULT_ACCOUNT, Config, validate_account_name
from plurcast.errors import ConfigError, InvalidInput
from plurcast.platforms import registry

if TYPE_CHECKING:  # the splitter imports regex (~20 ms): only threads need it
    from plurcast.thread import plan

Target = tuple[str, str]  # (platform, account)
Part = dict[Target, str]  # one post to write: its text on each target


class CheckedPost(NamedTuple):
    text: str  # as it will be stored: surrounding blank space stripped
    targets: list[Target]
    # The posts to write, each its text per target: one, unless composed into a thread.
    parts: Sequence[Part] = ()


def check_post(
    cfg: Config,
    text: str,
    *,
    platforms: Sequence[str],
    account: str | None,
    compose: plan.Compose | None = None,
    narrow: Callable[[list[Target]], list[Target]] | None = None,
) -> CheckedPost:
    """A new post's text and targets: encoding and size, each target's config and
    credentials, then each target's limits (InvalidInput exit 3, ConfigError exit 2).

    `narrow` may leave targets out before their limits are checked (a reply to a Nostr
    event goes to Nostr only). With `compose` (--thread, --auto-thread, --numbered,
    --variant) each target's text is cut into parts by its own limits, and every part
    must fit (plurcast.thread.plan).
    """
    text = content.normalise(text)
    targets = resolve_targets(cfg, platforms, account)
    if narrow is not None:
        targets = narrow(targets)
    if compose is not None and compose.shaped:
        from plurcast.thread import plan

        parts = plan.plan(text, targets, compose, text_limits(cfg))
    else:
        _check_limits(cfg, text, targets)
        parts = [dict.fromkeys(targets, text)]
    return CheckedPost(text, targets, parts)


def text_limits(cfg: Config) -> plan.LimitsOf:
    """Each (platform, account)'s text limits, counted its platform's way."""
    return lambda platform, account: registry.limits(cfg, platform, account).text


def check_text(cfg: Config, text: str, targets: Sequence[Target]) -> str:
    """New text for known targets (an edit): the text as it will be stored, once it fits."""
    text = content.normalise(text)
    _check_limits(cfg, text, targets)
    return text


def _check_limits(cfg: Config, text: str, targets: Sequence[Target]) -> None:
    """Each target's limits, in registry order: the first one over is the one named."""
    for platform, account in sorted(set(targets), key=lambda t: (registry.ORDER[t[0]], t[1])):
        registry.limits(cfg, platform, account).check_text(text)


def split_platforms(values: Sequence[str]) -> list[str]:
    """`-p nostr -p mastodon,bluesky` → unique names in the order given."""
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in registry.NAMES:
                raise InvalidInput(
                    f'unknown platform "{name}"', f"choose from {', '.join(registry.NAMES)}"
                )
            if name not in names:
                names.append(name)
    return names


def one_platform(value: str) -> str:
    """`-p NAME` where one platform is meant (plur-queue list and edit, plur-history)."""
    names = split_platforms([value])
    if len(names) != 1:
        raise InvalidInput(
            f'-p "{value}" names {len(names)} platforms',
            f"give one of {', '.join(registry.NAMES)}",
        )
    return names[0]


def resolve_targets(cfg: Config, requested: Sequence[str], account: str | None) -> list[Target]:
    """(platform, account) pairs to deliver to, each checked against the config."""
    names = split_platforms(requested) or list(cfg.default_platforms or cfg.enabled_platforms())
    if not names:
        sections = [f"[{name}]" for name in registry.NAMES]
        raise ConfigError(
            "no platforms are configured",
            f"add a {', '.join(sections[:-1])} or {sections[-1]} section to {cfg.path}, or pass -p",
        )
    account = validate_account_name(account) if account else DEFAULT_ACCOUNT
    targets = []
    for name in names:
        section = cfg.platforms.get(name)
        if section is None:
            raise ConfigError(f"{name} is not configured", f"add a [{name}] section to {cfg.path}")
        if not section.enabled:
            raise ConfigError(
                f"{name} is disabled", f"set enabled = true in [{name}] of {cfg.path}"
            )
        if account not in section.accounts:
            raise ConfigError(
                f'no account "{account}" for {name}',
                f"add [accounts.{name}.{account}] to {cfg.path}",
            )
        targets.append((name, account))
    for name, account in targets:
        # A post that cannot be sent is refused now, not at 9 am: keys, tokens, servers.
        registry.get(name).check_credentials(cfg, account)
    return targets

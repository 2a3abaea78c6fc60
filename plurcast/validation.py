"""What a post must satisfy before it is written: its text and its targets, checked once.

Every way of writing a post — plur-post now or --schedule, a recurring schedule, an
edit, an import — calls `check_post` (new text and targets) or `check_text` (new
text for known targets), so that a post a platform would refuse at 9 am is refused
now, while the user is at the keyboard, and the same way on every path.

The rules themselves are platform facts and live in the registry: a platform's text
limits and way of counting (`registry.Platform.text_limits`), where it counts a content
warning, how many images it takes and how big (`registry.Limits`), its credential check
(the adapter's `check_credentials`) and what it needs for images (`check_images`).

Besides its text a post may carry `Extras` (plur-post's --image/--alt, --cw, --label,
--lang, --no-card): `check_post` checks them too, the images down to their last byte
(`plurcast.media.attach`), and hands back what the post's metadata will keep. Nothing
here is written to the database or the media store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from plurcast import content
from plurcast.config import DEFAULT_ACCOUNT, Config, validate_account_name
from plurcast.errors import ConfigError, InvalidInput
from plurcast.platforms import registry
from plurcast.value import Value

if TYPE_CHECKING:  # the splitter imports regex (~20 ms): only threads need it
    from plurcast.media.attach import ImageSpec, Ready
    from plurcast.media.store import MediaStore
    from plurcast.thread import plan

Target = tuple[str, str]  # (platform, account)
Part = dict[Target, str]  # one post to write: its text on each target
# A content warning is one line of a few words; Mastodon's own composer allows this much.
MAX_WARNING_CHARS = 500


class Extras(Value):
    """What a post carries besides its text, as plur-post was given it."""

    images: Sequence[ImageSpec] = ()
    fit: bool | None = None  # re-encode images over a platform's limit; None: [media] fit
    keep_metadata: bool = False  # leave location and camera data in the images
    warning: str | None = None  # --cw
    label: str | None = None  # --label, one of registry.LABELS
    languages: Sequence[str] | None = None  # --lang; None: [defaults] language
    card: bool = True  # False: --no-card


class CheckedExtras(Value):
    """Extras checked against every target: the images ready to store, the other metadata."""

    images: Sequence[Ready] = ()
    options: dict[str, Any] = {}  # noqa: RUF012 - cw, label, langs, card; never changed in place
    warnings: Sequence[str] = ()  # for stderr (an image without alt)

    def metadata(self, media: MediaStore) -> dict[str, Any]:
        """The post's metadata keys for these extras, storing the images in `media`.

        Call it inside the transaction that writes the post (see plurcast.media.store)."""
        from plurcast.media import attach

        if not self.images:
            return dict(self.options)
        return {**self.options, "images": attach.store(media, self.images)}


class CheckedPost(Value):
    text: str  # as it will be stored: surrounding blank space stripped
    targets: list[Target]
    # The posts to write, each its text per target: one, unless composed into a thread.
    parts: Sequence[Part] = ()
    extras: CheckedExtras = CheckedExtras()


def check_post(
    cfg: Config,
    text: str,
    *,
    platforms: Sequence[str],
    account: str | None,
    compose: plan.Compose | None = None,
    narrow: Callable[[list[Target]], list[Target]] | None = None,
    extras: Extras | None = None,
) -> CheckedPost:
    """A new post's text, targets and extras: encoding and size, each target's config and
    credentials, its extras, then each target's limits (InvalidInput exit 3, ConfigError
    exit 2). The images are read, checked and cleaned last: they cost the most.

    `narrow` may leave targets out before their limits are checked (a reply to a Nostr
    event goes to Nostr only). With `compose` (--thread, --auto-thread, --numbered,
    --variant) each target's text is cut into parts by its own limits, and every part
    must fit (plurcast.thread.plan) — with the content warning, which every part carries,
    counted where the platform counts it. Images go with the first part.
    """
    text = content.normalise(text)
    targets = resolve_targets(cfg, platforms, account)
    if narrow is not None:
        targets = narrow(targets)
    extras = extras or Extras()
    options = _options(cfg, extras)
    warning = options.get("cw")
    if compose is not None and compose.shaped:
        from plurcast.thread import plan

        parts = plan.plan(text, targets, compose, text_limits(cfg, warning))
    else:
        _check_limits(cfg, text, targets, warning)
        parts = [dict.fromkeys(targets, text)]
    checked = CheckedExtras((), options)
    if extras.images:
        checked = _with_images(cfg, extras, targets, options)
    return CheckedPost(text, targets, parts, checked)


def text_limits(cfg: Config, warning: str | None = None) -> plan.LimitsOf:
    """Each (platform, account)'s text limits, counted its platform's way — with `warning`
    (a post's --cw) counted where the platform counts it."""
    return lambda platform, account: registry.limits(cfg, platform, account).counted(warning)


def check_text(
    cfg: Config, text: str, targets: Sequence[Target], metadata: dict[str, Any] | None = None
) -> str:
    """New text for known targets (an edit): the text as it will be stored, once it fits
    with the post's content warning (from its `metadata`)."""
    text = content.normalise(text)
    _check_limits(cfg, text, targets, (metadata or {}).get("cw"))
    return text


def check_alt_texts(
    cfg: Config, entries: Sequence[dict[str, Any]], targets: Sequence[Target]
) -> list[str]:
    """A post's images with new alt texts (an edit) against every target; the warnings."""
    from plurcast.media import attach

    warnings: list[str] = []
    attach.check_alt_texts(
        entries, _limits(cfg, targets), require_alt=cfg.require_alt, warn=warnings.append
    )
    return warnings


def _ordered(targets: Sequence[Target]) -> list[Target]:
    return sorted(set(targets), key=lambda t: (registry.ORDER[t[0]], t[1]))


def _limits(cfg: Config, targets: Sequence[Target]) -> list[registry.Limits]:
    return [registry.limits(cfg, p, a) for p, a in _ordered(targets)]


def _check_limits(
    cfg: Config, text: str, targets: Sequence[Target], warning: str | None = None
) -> None:
    """Each target's limits, in registry order: the first one over is the one named."""
    for limits in _limits(cfg, targets):
        limits.check_text(text, warning)


def _options(cfg: Config, extras: Extras) -> dict[str, Any]:
    """The metadata keys of the extras other than images, each checked."""
    options: dict[str, Any] = {}
    if extras.warning is not None:
        options["cw"] = _one_line(extras.warning, "--cw", MAX_WARNING_CHARS)
    if extras.label is not None:
        if extras.label not in registry.LABELS:
            raise InvalidInput(
                f'unknown label "{extras.label}"', f"choose from {', '.join(registry.LABELS)}"
            )
        options["label"] = extras.label
    if extras.languages is not None:
        from plurcast import languages

        options["langs"] = list(languages.checked(extras.languages))
    elif cfg.languages:
        options["langs"] = list(cfg.languages)
    if not extras.card:
        options["card"] = False
    return options


def _one_line(value: str, flag: str, maximum: int) -> str:
    text = " ".join(value.split())
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{flag} is not valid UTF-8") from None
    if not text:
        raise InvalidInput(f"{flag} is empty", f"give its text, e.g. {flag} 'spoilers'")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise InvalidInput(f"{flag} contains control characters", "remove them")
    length = content.graphemes(text)
    if length > maximum:
        raise InvalidInput(f"{flag} is {length:,} characters, over {maximum:,}", "shorten it")
    return text


def _with_images(
    cfg: Config, extras: Extras, targets: Sequence[Target], options: dict[str, Any]
) -> CheckedExtras:
    from plurcast.media import attach

    for platform, account in _ordered(targets):
        registry.get(platform).check_images(cfg, account)
    warnings: list[str] = []
    ready = attach.prepare(
        extras.images,
        _limits(cfg, targets),
        fit=cfg.media_fit if extras.fit is None else extras.fit,
        keep_metadata=extras.keep_metadata,
        require_alt=cfg.require_alt,
        warn=warnings.append,
    )
    return CheckedExtras(ready, options, warnings)


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
    if values and not names:  # `-p ""` or `-p ,` is a slip, not "the default platforms"
        raise InvalidInput(
            f'-p "{",".join(values)}" names 0 platforms', f"give one of {', '.join(registry.NAMES)}"
        )
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

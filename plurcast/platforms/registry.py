"""Every platform plurcast posts to, and every fact about each one, in one place.

An entry in PLATFORMS holds a platform's name (config sections, `-p`, output lines),
how people write it, the module of its adapter, its default rate limit, the limits of
a post's text with the way the platform counts them, and what a post there can carry
(threads, images, content warnings, languages). Config, validation, the rate limiter
and the engine read these entries; nothing else names a platform's facts.

Adding a platform is one new module and one entry here: write
`plurcast/platforms/<name>.py` with `check_credentials(cfg, account)` (pure Python —
plur-post calls it for every post, so no SDK may load there) and
`publisher(cfg, account)` returning a `base.Publisher`, then add its `Platform` below.
The schema names no platform. One that can answer someone else's post also names, as
`references`, the module that reads its posts' links (see plurcast.thread.references).
The account checks may live in a module of their own, named as `settings`
(plurcast.platforms.nostr_settings, mastodon_settings, bluesky_settings), so that checking a
post loads no publisher code.

This module imports no adapter and no SDK: config reads it on every command. An
adapter is imported when a post for it is sent (or checked, without `settings`). Its
records are `plurcast.value.Value`s, not dataclasses or NamedTuples, for the same reason:
both compile code for each class they make, on every command's start-up.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from plurcast.content import graphemes, utf8_bytes
from plurcast.errors import InvalidInput
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.config import Config
    from plurcast.platforms.base import Publisher


class Maximum(Value):
    """How much of something a platform takes; an account setting may say otherwise.

    A named account without the setting takes the default account's. The config check
    makes every such setting a whole number of at least 1.
    """

    default: int
    setting: str | None = None  # e.g. "max_chars" in [mastodon] or [accounts.mastodon.NAME]

    def of(self, cfg: Config, platform: str, account: str) -> int:
        if self.setting is None:
            return self.default
        value = cfg.account_setting(platform, account, self.setting)
        return self.default if value is None else int(value)


class TextLimit(Value):
    """One way a platform measures a post's text, and how much of it the platform takes."""

    unit: str  # what `measure` counts, for messages: "characters", "bytes"
    measure: Callable[[str], int]
    maximum: Maximum
    hint: str | None = None  # the fix for a text over it (default: shorten, or leave it out)


class Media(Value):
    """Images on a post: how many, how big each may be, how long its alt text."""

    max_images: Maximum
    max_image_bytes: Maximum | None  # None: the platform sets no size (its file hosts do)
    max_alt_chars: Maximum  # grapheme clusters


class Capabilities(Value):
    """What a post on the platform can carry besides its text."""

    threads: bool = False  # replies to a post, ours (a thread) or someone else's
    media: Media | None = None  # None: text only
    content_warning: bool = False  # a field of its own (else it goes first in the text: CW_PREFIX)
    warning_counted: bool = False  # that field counts in the text's limits (Mastodon's spoiler)
    languages: bool = False  # the post can say its language


# Verdicts of credential checks, while `checking_once()` runs (innermost last).
_CHECKED: list[dict[tuple[int, str, str], Exception | None]] = []


@contextlib.contextmanager
def checking_once() -> Iterator[None]:
    """Check each account's credentials once within the block: plur-import checks 10,000
    rows as plur-post checks one, and need not read a key file 20,000 times for it."""
    _CHECKED.append({})
    try:
        yield
    finally:
        _CHECKED.pop()


class Platform(Value):
    name: str  # as in config sections, -p and output lines: "nostr"
    title: str  # as people write it: "Nostr"
    module: str  # the adapter, imported on first use
    posts_per_hour: int  # the default of [scheduling.rate_limits.<name>] posts_per_hour
    text_limits: tuple[TextLimit, ...]
    capabilities: Capabilities = Capabilities()
    # The module that reads references to its posts (`--reply-to`; plurcast.thread.references
    # says what it holds), imported on first use; None: none can be named.
    references: str | None = None
    # The module that reads and checks an account's settings without the publisher and its
    # SDK (`check_credentials`, `check_images`), imported on first use; None: the adapter.
    # plur-post checks every post's accounts, so a scheduling run loads this one only.
    settings: str | None = None
    # What an account's table holds besides its maximums' settings (plurcast.config_keys
    # names any other key as one nothing reads).
    keys: tuple[str, ...] = ()

    def adapter(self) -> ModuleType:
        return importlib.import_module(self.module)

    def settings_module(self) -> ModuleType:
        return importlib.import_module(self.settings or self.module)

    def reference_module(self) -> ModuleType | None:
        return None if self.references is None else importlib.import_module(self.references)

    def check_credentials(self, cfg: Config, account: str) -> None:
        """What can be known of the account's credentials without the network (ConfigError).

        Inside `checking_once()`, each (config, platform, account) is checked once and the
        verdict reused."""
        memo = _CHECKED[-1] if _CHECKED else None
        key = (id(cfg), self.name, account)
        if memo is not None and key in memo:
            if memo[key] is not None:
                raise memo[key]  # type: ignore[misc]
            return
        try:
            self.settings_module().check_credentials(cfg, account)
        except Exception as exc:
            if memo is not None:
                memo[key] = exc
            raise
        if memo is not None:
            memo[key] = None

    def publisher(self, cfg: Config, account: str) -> Publisher:
        publisher: Publisher = self.adapter().publisher(cfg, account)
        return publisher

    def maximums(self) -> Iterator[Maximum]:
        """Every maximum of the platform, for the config check of their settings."""
        yield from (limit.maximum for limit in self.text_limits)
        media = self.capabilities.media
        if media is not None:
            yield media.max_images
            if media.max_image_bytes is not None:
                yield media.max_image_bytes
            yield media.max_alt_chars

    def limits(self, cfg: Config, account: str) -> Limits:
        """The platform's limits as they apply to one account."""

        def of(maximum: Maximum) -> int:
            return maximum.of(cfg, self.name, account)

        media = self.capabilities.media
        image_bytes = None if media is None else media.max_image_bytes
        caps = self.capabilities
        return Limits(
            platform=self.name,
            account=account,
            text=tuple(
                Limit(self.name, t.measure, of(t.maximum), t.unit, t.hint) for t in self.text_limits
            ),
            max_images=0 if media is None else of(media.max_images),
            max_image_bytes=None if image_bytes is None else of(image_bytes),
            max_alt_chars=0 if media is None else of(media.max_alt_chars),
            warning_field=caps.content_warning,
            warning_counted=caps.warning_counted,
        )

    def as_sent(self, text: str, warning: str | None) -> str:
        """The text as the platform gets it: a content warning without a field of its own
        goes first, as `CW: <warning>` and a blank line (Bluesky)."""
        return _as_sent(text, warning, self.capabilities.content_warning)

    def check_images(self, cfg: Config, account: str) -> None:
        """What the account needs to carry images (Nostr: a Blossom server), ConfigError if
        missing; a platform without such needs has no `check_images`."""
        check = getattr(self.settings_module(), "check_images", None)
        if check is not None:
            check(cfg, account)


class Limit(Value):
    """A text limit as it applies to one account: what is counted, how, and how much."""

    platform: str
    measure: Callable[[str], int]
    maximum: int
    unit: str  # "characters" or "bytes", for messages
    hint: str | None = None  # the fix for a text over it (default: shorten, or leave it out)

    def excess(self, text: str) -> int | None:
        """The measured size when `text` is over the limit, else None."""
        size = self.measure(text)
        return size if size > self.maximum else None

    def over(self, size: int) -> str:
        """`12 bytes, over nostr's limit of 10`: what is wrong with a text of `size`."""
        return f"{size:,} {self.unit}, over {self.platform}'s limit of {self.maximum:,}"


class Limits(Value):
    """What one (platform, account) takes: its text limits, in the order the platform's
    are checked, and its images.

    A content warning (`--cw`) counts where the platform counts it: in the text itself on
    a platform without a field for it (Bluesky: `CW: <warning>` first in the post), in
    the limit beside the text where the field counts (Mastodon's spoiler_text), not at
    all where it is a tag (Nostr).
    """

    platform: str
    account: str
    text: tuple[Limit, ...]
    max_images: int  # 0: the platform takes no images
    max_image_bytes: int | None  # None: no size of the platform's own
    max_alt_chars: int
    warning_field: bool = True  # a content warning has a field of its own
    warning_counted: bool = False  # … whose length counts in the text's limits

    def as_sent(self, text: str, warning: str | None = None) -> str:
        return _as_sent(text, warning, self.warning_field)

    def counted(self, warning: str | None = None) -> tuple[Limit, ...]:
        """The text limits, each measuring a text as the platform counts it when the post has
        `warning` (the thread splitter cuts by these too)."""
        if not warning or (self.warning_field and not self.warning_counted):
            return self.text
        if not self.warning_field:
            return tuple(
                limit._replace(measure=functools.partial(_measure_sent, limit.measure, warning))
                for limit in self.text
            )
        return tuple(
            limit._replace(measure=functools.partial(_measure_beside, limit.measure, warning))
            for limit in self.text
        )

    def first_excess(self, text: str, warning: str | None = None) -> tuple[Limit, int] | None:
        """The first limit the text (with its warning, as counted) is over, with its
        measured size; None when it fits."""
        for limit in self.counted(warning):
            size = limit.excess(text)
            if size is not None:
                return limit, size
        return None

    def fits(self, text: str, warning: str | None = None) -> bool:
        return self.first_excess(text, warning) is None

    def check_text(self, text: str, warning: str | None = None) -> None:
        """InvalidInput naming the platform, its limit and the text's length when over."""
        found = self.first_excess(text, warning)
        if found is None:
            return
        limit, size = found
        hint = limit.hint or f"shorten it, or leave {limit.platform} out with -p"
        if warning and self.first_excess(text) is None:
            where = "beside the text" if self.warning_field else "first in the text, as CW: …"
            raise InvalidInput(
                f"content with its content warning is {limit.over(size)} ({limit.platform} "
                f"counts the warning {where})",
                f"shorten the text or the --cw, or leave {limit.platform} out with -p",
            )
        raise InvalidInput(f"content is {limit.over(size)}", hint)


# A content warning on a platform without a field for one: first in the text (issue 13).
CW_PREFIX = "CW: "


def _as_sent(text: str, warning: str | None, has_field: bool) -> str:
    return text if not warning or has_field else f"{CW_PREFIX}{warning}\n\n{text}"


def _measure_sent(measure: Callable[[str], int], warning: str, text: str) -> int:
    return measure(_as_sent(text, warning, False))


def _measure_beside(measure: Callable[[str], int], warning: str, text: str) -> int:
    return measure(text) + measure(warning)


# What a post may say about itself with --label: Bluesky's self-label values; Mastodon marks
# the post sensitive, Nostr gives it a content-warning tag (NIP-36) with the label as reason.
LABELS = ("sexual", "nudity", "porn", "graphic-media")
# At most this many languages per post (Bluesky's `langs`); Mastodon takes the first.
MAX_LANGUAGES = 3


# --- how Mastodon counts ---------------------------------------------------------------

# Mastodon counts every link as 23 characters and a mention by its local part only.
MASTODON_URL_LENGTH = 23


@functools.cache
def _mastodon_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """A link (ending before trailing punctuation, as Mastodon's own parser ends it) and a
    mention; compiled on first use, not on every command's start-up."""
    url = re.compile(r"https?://[^\s<>\"]*[^\s<>\".,;:!?'()\[\]]", re.IGNORECASE)
    return url, re.compile(r"(@[A-Za-z0-9_]+)@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def mastodon_length(text: str) -> int:
    if "://" in text or "@" in text:  # else it holds neither: no need to compile the patterns
        url, mention = _mastodon_patterns()
        text = mention.sub(r"\1", url.sub("x" * MASTODON_URL_LENGTH, text))
    return graphemes(text)


# --- the platforms -----------------------------------------------------------------------

FOUR_IMAGES = Maximum(4)

PLATFORMS = (
    Platform(
        name="nostr",
        title="Nostr",
        module="plurcast.platforms.nostr",
        references="plurcast.platforms.nostr_references",
        settings="plurcast.platforms.nostr_settings",
        keys=(
            "keys_file",
            "relays",
            "min_relays",
            "timeout",
            "default_pow_difficulty",
            "pow_timeout",
            "blossom_servers",
        ),
        posts_per_hour=100,
        # Relays set their own limits; 64 KiB is a common ceiling.
        text_limits=(
            TextLimit(
                "bytes",
                utf8_bytes,
                Maximum(65536, "max_bytes"),
                "shorten it, or raise [nostr] max_bytes if your relays take more",
            ),
        ),
        capabilities=Capabilities(
            threads=True,  # NIP-10 marked e tags
            # On Blossom servers, which set their own sizes.
            media=Media(FOUR_IMAGES, None, Maximum(5000)),
            content_warning=True,  # NIP-36
            languages=True,  # NIP-32
        ),
    ),
    Platform(
        name="mastodon",
        title="Mastodon",
        module="plurcast.platforms.mastodon",
        references="plurcast.platforms.mastodon_references",
        settings="plurcast.platforms.mastodon_settings",
        keys=("instance", "token_file", "visibility", "timeout"),
        posts_per_hour=300,
        text_limits=(TextLimit("characters", mastodon_length, Maximum(500, "max_chars")),),
        capabilities=Capabilities(
            threads=True,  # in_reply_to_id
            # The default of Mastodon's own 16 MB; an instance may set another.
            media=Media(FOUR_IMAGES, Maximum(16 * 1024 * 1024, "max_image_bytes"), Maximum(1500)),
            content_warning=True,  # spoiler_text
            warning_counted=True,  # Mastodon counts the spoiler text in max_chars
            languages=True,
        ),
    ),
    Platform(
        name="bluesky",
        title="Bluesky",
        module="plurcast.platforms.bluesky",
        references="plurcast.platforms.bluesky_references",
        settings="plurcast.platforms.bluesky_settings",
        keys=("handle", "app_password_file", "pds", "timeout", "cards_allow_private"),
        # Below Bluesky's own cap of 1,666 record creations an hour.
        posts_per_hour=1000,
        # The lexicon's maxGraphemes and maxLength of app.bsky.feed.post's text.
        text_limits=(
            TextLimit("characters", graphemes, Maximum(300)),
            TextLimit("bytes", utf8_bytes, Maximum(3000)),
        ),
        capabilities=Capabilities(
            threads=True,  # reply.root and reply.parent
            # What the PDS takes per image blob; the app's alt text limit.
            media=Media(FOUR_IMAGES, Maximum(2_000_000), Maximum(2000)),
            content_warning=False,  # self-labels only; a warning's text goes into the post
            languages=True,  # langs
        ),
    ),
)

NAMES = tuple(p.name for p in PLATFORMS)
_BY_NAME = {p.name: p for p in PLATFORMS}
# Platforms in output (lists, reports) come in registry order.
ORDER = {name: i for i, name in enumerate(NAMES)}


def get(name: str) -> Platform:
    """The platform called `name` (KeyError for one not in the registry)."""
    return _BY_NAME[name]


def limits(cfg: Config, platform: str, account: str) -> Limits:
    """What `platform` takes from `account`, e.g. `limits(cfg, "mastodon", "work").fits(text)`."""
    return get(platform).limits(cfg, account)


def default_posts_per_hour() -> dict[str, int]:
    return {p.name: p.posts_per_hour for p in PLATFORMS}


def setting_names(platform: str) -> tuple[str, ...]:
    """The account settings of `platform` that override one of its maximums."""
    return tuple(m.setting for m in get(platform).maximums() if m.setting is not None)

"""The Mastodon statuses `--reply-to` can name: a numeric id, or a status link
(`https://host/@user/<id>`, `https://host/users/<user>/statuses/<id>`,
`https://host/web/statuses/<id>`). Whether the link is on the account's own instance is
`check_account`'s question: it needs the config."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.config import Config
    from plurcast.thread.references import Link

SHAPES = "a Mastodon status link or id"
WHAT = "a Mastodon status"
_DIGITS = re.compile(r"[0-9]{1,32}")
_PATHS = (
    re.compile(r"/@[^/]+/([0-9]+)"),
    re.compile(r"/users/[^/]+/statuses/([0-9]+)"),
    re.compile(r"/web/statuses/([0-9]+)"),
    re.compile(r"/web/@[^/]+/([0-9]+)"),
)


class MastodonStatus(Value):
    status_id: str
    host: str | None  # the server of the link (None for a bare id), lower case with its port

    @property
    def platform(self) -> str:
        return "mastodon"

    def check_account(self, cfg: Config, account: str) -> None:
        from plurcast.platforms import mastodon

        mastodon.check_reply_reference(cfg, account, self)


def reference(text: str) -> MastodonStatus | None:
    return MastodonStatus(text, None) if _DIGITS.fullmatch(text) else None


def link_reference(link: Link) -> MastodonStatus | None:
    path = link.path.rstrip("/")
    for pattern in _PATHS:
        match = pattern.fullmatch(path)
        if match:
            return MastodonStatus(match.group(1), link.netloc)
    return None

"""What `--reply-to REF` points at, read from its shape alone (no database, no network).

- one of our posts: its id or a unique prefix of 8 or more characters;
- a post on a platform: each platform that takes replies reads its own shapes, in the module
  its registry entry names as `references` (`plurcast/platforms/<name>_references.py`):
  `reference(text)` for text that is not a web link (`note1…`, `at://…`, a status id),
  `link_reference(link)` for a web link, `SHAPES` and `WHAT` for messages. Each returns its
  platform's reference (a `PlatformRef`), None for a shape not its own, or raises
  `Unreadable` for one of its own shapes that is malformed.

Eight digits could be our id's first characters or a (very old) Mastodon status id: `parse`
reads them as ours, and `OurPost.as_theirs` is what they mean if no post of ours has them.
What a reference needs from the config or the network is for later (`check_account`, and
the adapter when the reply is prepared).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from plurcast.errors import InvalidInput
from plurcast.platforms import registry
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.config import Config

_UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


class PlatformRef(Protocol):
    """Someone's post on one platform, as a platform's `*_references` module reads it."""

    @property
    def platform(self) -> str: ...

    def check_account(self, cfg: Config, account: str) -> None:
        """InvalidInput (exit 3) when `account` cannot answer it (e.g. another instance)."""
        ...


class OurPost(Value):
    """A post of ours, by id or prefix (resolved against the database)."""

    prefix: str

    def as_theirs(self) -> PlatformRef | None:
        """What the text means if it is no id of ours (all digits: a Mastodon status id)."""
        try:
            return _theirs(self.prefix)
        except Unreadable:
            return None


Reference = OurPost | PlatformRef


class Link(Value):
    """A web link, taken apart once for every platform's `link_reference`."""

    host: str  # lower case
    port: int | None
    path: str
    segments: tuple[str, ...]  # the path's non-empty parts

    @property
    def netloc(self) -> str:
        """`host[:port]`, lower case."""
        return self.host + (f":{self.port}" if self.port else "")


class Unreadable(Exception):
    """A reference in a platform's shape that is not well formed; the text says why."""


def parse(text: str) -> Reference:
    """The reference `text` names, or InvalidInput (exit 3) saying what would be understood."""
    ref = text.strip()
    if _is_our_id(ref.lower()):
        return OurPost(ref.lower())
    try:
        found = _theirs(ref)
    except Unreadable as exc:
        raise InvalidInput(f'"{text}" is not a post to reply to ({exc})', examples()) from None
    if found is None:
        raise InvalidInput(f'cannot tell what "{text}" is to reply to', examples())
    return found


def examples() -> str:
    shapes = [module.SHAPES for module in _modules()]
    return f"give a plurcast post id, {', '.join(shapes[:-1])}, or {shapes[-1]}"


def _modules() -> Iterator[ModuleType]:
    for platform in registry.PLATFORMS:
        module = platform.reference_module()
        if module is not None:
            yield module


def _theirs(ref: str) -> PlatformRef | None:
    for module in _modules():
        found: PlatformRef | None = module.reference(ref)
        if found is not None:
            return found
    if "://" not in ref:
        return None
    link = _link(ref)
    for module in _modules():
        found = module.link_reference(link)
        if found is not None:
            return found
    what = [module.WHAT for module in _modules()]
    raise Unreadable(f"not a link to {', '.join(what[:-1])} or {what[-1]}")


def _is_our_id(text: str) -> bool:
    """A uuid4 or its first 8+ characters: hex digits, dashes where a uuid has them."""
    if not 8 <= len(text) <= len(_UUID_SHAPE):
        return False
    return all(
        (c == "-") if shape == "-" else c in "0123456789abcdef"
        for c, shape in zip(text, _UUID_SHAPE, strict=False)
    )


def _link(ref: str) -> Link:
    try:
        parts = urlsplit(ref)
        port = parts.port
    except ValueError:
        raise Unreadable("not a link") from None
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise Unreadable("not a web link")
    return Link(host, port, parts.path, tuple(s for s in parts.path.split("/") if s))

"""`--reply-to REF` against the config and the database: where the reply goes, and what each
of its deliveries answers.

- One of our posts: on each target the reply answers that post's own delivery there (G6: it
  waits until that delivery is sent). A target where the post never went, or gave up, or was
  cancelled is refused (exit 3): leave it out with -p.
- Someone's post on one platform: the reply goes to that platform only, with a note when
  others were meant too; a Mastodon status must be on the account's own instance. What it is
  (the event, the record's CID, its thread's root) is looked up when the reply is prepared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from plurcast.config import Config
from plurcast.errors import InvalidInput, NotFound
from plurcast.models import DeliveryState, Post
from plurcast.platforms import registry
from plurcast.thread import references
from plurcast.value import Value

Target = tuple[str, str]
# A delivery a reply may wait on: sent, or still on its way.
ANSWERABLE = (
    DeliveryState.SENT,
    DeliveryState.PENDING,
    DeliveryState.RETRY,
    DeliveryState.SENDING,
)


class Resolved(Value):
    targets: list[Target]
    reply_to: str  # what the post records: our post's full id, or the reference as given
    parents: Mapping[Target, int] = MappingProxyType({})  # our post's delivery per target
    note: str | None = None  # for stderr: the targets left out, and why


def resolve(
    cfg: Config,
    text: str,
    targets: Sequence[Target],
    *,
    find_post: Callable[[str], Post],
) -> Resolved:
    """`find_post` turns an id prefix into our post (NotFound when there is none)."""
    ref = references.parse(text)
    if isinstance(ref, references.OurPost):
        try:
            return _ours(find_post(ref.prefix), targets)
        except NotFound:
            fallback = ref.as_theirs()
            if fallback is None:
                raise
            ref = fallback
    return _theirs(cfg, text, ref, targets)


def _ours(post: Post, targets: Sequence[Target]) -> Resolved:
    parents: dict[Target, int] = {}
    for platform, account in targets:
        there = [d for d in post.deliveries if d.platform == platform]
        usable = [d for d in there if d.state in ANSWERABLE]
        if not usable:
            why = "it was never sent there" if not there else f"it is {there[0].state} there"
            others = [p for p, _ in targets if p != platform]
            hint = f"leave {platform} out: -p {','.join(others)}" if others else None
            raise InvalidInput(
                f"post {post.id} cannot be replied to on {platform}: {why}",
                hint or "reply to it on a platform where it went out",
            )
        mine = [d for d in usable if d.account == account]
        parents[(platform, account)] = (mine or usable)[0].id
    return Resolved(list(targets), post.id, parents)


def _theirs(
    cfg: Config, text: str, ref: references.PlatformRef, targets: Sequence[Target]
) -> Resolved:
    kept = [t for t in targets if t[0] == ref.platform]
    title = registry.get(ref.platform).title
    if not kept:
        meant = ", ".join(p for p, _ in targets)
        raise InvalidInput(
            f"{text.strip()} is a {title} post, but this one goes to {meant} only",
            f"add -p {ref.platform}",
        )
    for _, account in kept:
        ref.check_account(cfg, account)
    dropped = [p for p, _ in targets if p != ref.platform]
    note = None
    if dropped:
        note = (
            f"Note: replying to a {title} post: posting to "
            f"{ref.platform} only, not to {', '.join(dict.fromkeys(dropped))}."
        )
    return Resolved(kept, text.strip(), note=note)

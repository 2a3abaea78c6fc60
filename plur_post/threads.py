"""plur-post's thread and reply options (--thread, --auto-thread, --numbered, --reply-to,
--variant), and how a thread's parts are printed when queued."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from plurcast import cliparse, writing
from plurcast.models import Post
from plurcast.output import Format, emit_json
from plurcast.thread.plan import Compose
from plurcast.timefmt import format_local
from plurcast.value import Value
from plurcast.views import queued_line, time_fields

F = TypeVar("F", bound=Callable[..., Any])


class ThreadArgs(Value):
    compose: Compose
    reply_to: str | None


def thread_options(func: F) -> F:
    """The five options, handed to the command as one `threading: ThreadArgs`."""

    @functools.wraps(func)
    def command(
        *args: Any,
        thread: bool,
        auto_thread: bool,
        numbered: bool,
        reply_to: str | None,
        variants: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        compose = Compose.from_args(thread, auto_thread, numbered, variants)
        return func(*args, threading=ThreadArgs(compose, reply_to), **kwargs)

    options = [
        cliparse.option(
            "--thread",
            is_flag=True,
            help="The text is a thread: a line holding only --- separates its parts.",
        ),
        cliparse.option(
            "--auto-thread",
            is_flag=True,
            help="Split a text too long for a platform into a thread, by that platform's own "
            "limit and counting: at paragraphs, then sentences, then words.",
        ),
        cliparse.option(
            "--numbered",
            is_flag=True,
            help="End each part of a thread with ' i/N' (counted in the limit).",
        ),
        cliparse.option(
            "--reply-to",
            metavar="REF",
            help="Reply to a post: a plurcast post id (8+ characters; replies on each "
            "platform), note1…/nevent1…/hex (Nostr), an at:// or bsky.app link (Bluesky), a "
            "status link on your instance or its id (Mastodon; these three post there only).",
        ),
        cliparse.option(
            "--variant",
            "variants",
            multiple=True,
            metavar="PLATFORM=TEXT",
            help="Another text for one platform (PLATFORM=@FILE reads a file; @@ starts the "
            "text with @); repeatable.",
        ),
    ]
    wrapped: Callable[..., Any] = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]


# --- what a queued thread prints ------------------------------------------------------------


def thread_fields(post: Post, reply_to: str | None) -> dict[str, Any]:
    return {
        "thread_id": post.thread_id,
        "thread_part": post.thread_part,
        "thread_parts": post.thread_parts,
        "reply_to": reply_to,
    }


def emit_queued(
    created: writing.Created,
    posts: Sequence[Post],
    fmt: Format,
    *,
    zone: ZoneInfo,
    now: datetime,
) -> None:
    """`draft[i]:<uuid>` / `scheduled[i]:<uuid>:for:…` per part; JSON: the single-post
    objects in an array, each with its place in the thread."""
    items = []
    lines = []
    answers = [created.reply_to, *(p.id for p in posts[:-1])]
    for post, answered in zip(posts, answers, strict=True):
        label = f"[{post.thread_part}]"
        item: dict[str, Any]
        if created.scheduled_at is None:
            lines.append(queued_line(f"draft{label}", post.id, None, zone, now))
            item = {"draft": True, "post_id": post.id, "platforms": post.platforms}
        else:
            shown = format_local(created.scheduled_at, zone, now)
            lines.append(queued_line(f"scheduled{label}", post.id, created.scheduled_at, zone, now))
            item = {
                "scheduled": True,
                "post_id": post.id,
                **time_fields("scheduled_at", post.scheduled_at_ms, zone),
                "scheduled_time": shown,
                "platforms": post.platforms,
                "account": post.account,
            }
        items.append(item | thread_fields(post, answered))
    if fmt == "text":
        click.echo("\n".join(lines))
    else:
        emit_json(items, fmt)

"""plur-post's options for what a post carries besides its text: --image/--alt, --fit,
--keep-metadata, --cw, --label, --lang, --no-card — handed to the command as one
`extras: validation.Extras`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from plurcast import clikit, cliparse, validation
from plurcast.errors import InvalidInput
from plurcast.platforms import registry

if TYPE_CHECKING:
    from plurcast.media.attach import ImageSpec

F = TypeVar("F", bound=Callable[..., Any])
_ORDER = "plur_post.image_order"


class ImageOrderCommand(clikit.Command):
    """A command that keeps the order in which --image and --alt were given, which click
    does not: each --alt belongs to the --image before it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The order needs a parse of its own: only when an argument may be one of the two
        # (click matches long options whole, so each starts with its name).
        if any(arg.startswith(("--image", "--alt")) for arg in args):
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            ctx.meta[_ORDER] = [p.name for p in order if p.name in ("images", "alts")]
        return super().parse_args(ctx, args)


def image_specs(images: tuple[str, ...], alts: tuple[str, ...]) -> list[ImageSpec]:
    """`--image A --alt "…" --image B`: each image with the --alt that follows it, if any."""
    if not images and not alts:
        return []
    from plurcast.media.attach import ImageSpec

    order = click.get_current_context().meta.get(_ORDER, [])
    pending_images, pending_alts = list(images), list(alts)
    specs: list[ImageSpec] = []
    has_alt = False
    for name in order:
        if name == "images":
            specs.append(ImageSpec(pending_images.pop(0)))
            has_alt = False
            continue
        alt = pending_alts.pop(0)
        if not specs:
            raise InvalidInput("--alt without an --image before it", 'write --image PATH --alt "…"')
        if has_alt:
            raise InvalidInput(
                f"two --alt for --image {specs[-1].path}", "give each image one --alt"
            )
        specs[-1] = ImageSpec(specs[-1].path, alt)
        has_alt = True
    return specs


def media_options(func: F) -> F:
    """The options, handed to the command (an ImageOrderCommand) as `extras`."""

    @functools.wraps(func)
    def command(
        *args: Any,
        images: tuple[str, ...],
        alts: tuple[str, ...],
        fit: bool | None,
        keep_metadata: bool,
        cw: str | None,
        label: str | None,
        langs: tuple[str, ...],
        no_card: bool,
        **kwargs: Any,
    ) -> Any:
        extras = validation.Extras(
            images=image_specs(images, alts),
            fit=fit,
            keep_metadata=keep_metadata,
            warning=cw,
            label=label,
            languages=langs or None,
            card=not no_card,
        )
        return func(*args, extras=extras, **kwargs)

    options = [
        cliparse.option(
            "--image",
            "images",
            multiple=True,
            metavar="PATH",
            help="Attach a JPEG, PNG, GIF or WebP image (up to 4; with a thread, to its first "
            "part). Location and camera data are removed first; the file is copied, so it may "
            "change or go away afterwards.",
        ),
        cliparse.option(
            "--alt",
            "alts",
            multiple=True,
            metavar="TEXT",
            help="The alt text of the --image before it: what the picture shows, for people "
            "who cannot see it. Missing: a warning ([defaults] require_alt = true makes it an "
            "error).",
        ),
        cliparse.option(
            "--fit/--no-fit",
            default=None,
            help="Re-encode an image over a platform's size limit to the largest that fits "
            "(default: [media] fit, else refuse the image).",
        ),
        cliparse.option(
            "--keep-metadata",
            is_flag=True,
            help="Leave location and camera data (EXIF GPS, maker notes, XMP) in the images.",
        ),
        cliparse.option(
            "--cw",
            metavar="TEXT",
            help="Content warning: Mastodon's spoiler, Nostr's content-warning tag (NIP-36); "
            'Bluesky has none, so "CW: TEXT" goes first in the post (and counts in its 300).',
        ),
        cliparse.option(
            "--label",
            type=click.Choice(registry.LABELS),
            help="Say what the images show: a Bluesky self-label, Mastodon sensitive, a Nostr "
            "content-warning.",
        ),
        cliparse.option(
            "--lang",
            "langs",
            multiple=True,
            metavar="CODE",
            help="The post's language (en, de, pt-BR …; up to 3, repeatable or comma-separated; "
            "Mastodon takes the first). Default: [defaults] language.",
        ),
        cliparse.option(
            "--no-card",
            is_flag=True,
            help="No link card on Bluesky (by default a link in a post without images gets the "
            "page's title, description and image).",
        ),
    ]
    wrapped: Callable[..., Any] = command
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]

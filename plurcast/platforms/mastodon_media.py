"""Mastodon: a post's images uploaded while its delivery is prepared, and the status's options.

Each image is sent with `POST /api/v2/media` and its alt text as `description`. The server
may answer 202 (still processing): the attachment is then asked for (`GET /api/v1/media/:id`)
until it has a URL, a bounded number of times, after which the delivery is retried later
(a transient failure). The ids go into the stored payload, so every later attempt posts
the status with the same `media_ids` and the same Idempotency-Key — nothing is uploaded
twice once the payload is stored, and the status is never made twice.

An upload refused with 403 means the token lacks the `write:media` scope: an auth error
(plur-post exits 2) that names the scope, since the same token may post text fine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plurcast import languages
from plurcast.errors import ConfigError, InvalidInput, RuntimeFailure
from plurcast.media import attach

if TYPE_CHECKING:
    from plurcast.media.store import MediaReader
    from plurcast.platforms.mastodon import Answer

PLATFORM = "mastodon"
# Seconds between the questions "is the image processed yet?" (about 17 s in all).
POLL_DELAYS = (0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0)
SCOPE_HINT = (
    "make an access token with the write:statuses and write:media scopes "
    "(see the README, Mastodon) and put it in the account's token_file"
)


async def upload_images(
    request: Callable[[Callable[[], Any]], Any],
    client: Any,
    entries: Sequence[dict[str, Any]],
    media: MediaReader,
    *,
    poll_delays: Sequence[float] = POLL_DELAYS,
) -> list[str]:
    """Upload every image of the post; their media ids, in order.

    `request(call)` runs `call()` (a Mastodon.py call) in a worker thread and returns the
    HTTP answer it got (the publisher's Answer). Raises ConfigError (token, scope),
    InvalidInput (the server will never take it) or RuntimeFailure (try again later).
    """
    ids: list[str] = []
    for number, stored in enumerate(entries, start=1):
        entry = attach.for_platform(stored, PLATFORM)
        data = media.read(entry["sha256"])
        alt = entry.get("alt") or None
        name = entry.get("name") or f"image.{entry['mime'].split('/')[-1]}"
        answer = await request(_uploader(client, data, entry["mime"], alt, name))
        body = _checked(answer, number)
        media_id = str(body["id"])
        if answer.status == 202 or not body.get("url"):
            await _wait_until_processed(request, client, media_id, number, poll_delays)
        ids.append(media_id)
    return ids


def _uploader(client: Any, data: bytes, mime: str, alt: str | None, name: str) -> Callable[[], Any]:
    def upload() -> Any:
        return client.media_post(data, mime_type=mime, description=alt, file_name=name)

    return upload


async def _wait_until_processed(
    request: Callable[[Callable[[], Any]], Any],
    client: Any,
    media_id: str,
    number: int,
    poll_delays: Sequence[float],
) -> None:
    for delay in poll_delays:
        await asyncio.sleep(delay)
        answer = await request(lambda: client.media(media_id))
        if answer.status == 206:  # still processing
            continue
        if _checked(answer, number).get("url"):
            return
    raise RuntimeFailure(
        f"Mastodon is still processing image {number} after {sum(poll_delays):g} s",
        "it is tried again later",
    )


def _checked(answer: Answer, number: int) -> dict[str, Any]:
    """The attachment in a 2xx answer; anything else raised as what it means."""
    from plurcast.platforms.mastodon import _http_error

    code = answer.status
    if code is None:
        raise RuntimeFailure(f"uploading image {number}: {answer.problem or 'no answer'}")
    if 200 <= code < 300:
        body = answer.body
        if isinstance(body, dict) and body.get("id") not in (None, ""):
            return body
        raise RuntimeFailure(f"uploading image {number}: HTTP {code}, but no attachment")
    said = _http_error(answer)
    if code == 403:
        raise ConfigError(
            f"Mastodon refused image {number} ({said}): the access token needs the "
            "write:media scope",
            SCOPE_HINT,
        )
    if code == 401:
        raise ConfigError(f"Mastodon refused the access token ({said})", SCOPE_HINT)
    if code == 413:
        raise InvalidInput(
            f"Mastodon refused image {number} as too large ({said})",
            "set [mastodon] max_image_bytes to your instance's limit and write the post "
            "again with --fit",
        )
    if code in (408, 429) or code >= 500:
        raise RuntimeFailure(f"uploading image {number}: {said}")
    raise InvalidInput(f"Mastodon refused image {number}: {said}")


def status_options(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The status fields a post's options give: content warning, sensitivity, language."""
    options: dict[str, Any] = {}
    if metadata.get("cw"):
        options["spoiler_text"] = metadata["cw"]
    if metadata.get("cw") or metadata.get("label"):
        options["sensitive"] = True
    if metadata.get("langs"):  # Mastodon has one language per status: the first
        options["language"] = languages.primary(metadata["langs"][0])
    return options

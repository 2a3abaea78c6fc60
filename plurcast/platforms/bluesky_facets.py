"""Rich text for a Bluesky post: links, @mentions and #hashtags as facets over UTF-8 byte ranges.

Bluesky does not parse a post's text when showing it: a link, mention or tag is one only if
the record carries a facet for it, and a facet's range counts UTF-8 *bytes* of the text — not
characters (Python) nor UTF-16 units (JavaScript). Any emoji, umlaut or CJK character before a
link shifts it by several bytes, which is why the offsets are computed from the encoded text.

What counts as a link, mention or tag is decided by the atproto SDK's port of Bluesky's own
`detectFacets` (the rules the Bluesky app applies: trailing punctuation is not part of a link,
a bare `example.com` with a known top-level domain is a link, `$TICKER` is a tag), so a post
from plurcast looks as if written in the app. A mention needs the DID behind the handle, which
only the network knows: `mention_handles` lists the handles, the caller resolves them, and
`build_facets` makes a mention facet for each handle it was given a DID for.

The SDK is imported inside the functions (~450 ms); they run only when a post is prepared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LINK = "app.bsky.richtext.facet#link"
MENTION = "app.bsky.richtext.facet#mention"
TAG = "app.bsky.richtext.facet#tag"


def mention_handles(text: str) -> list[str]:
    """The handles mentioned in the text (`@alice.bsky.social` → `alice.bsky.social`), lower
    case, each once, in order of first appearance."""
    from atproto_client.utils.facet_detection import (  # type: ignore[import-untyped, unused-ignore]
        detect_mentions,
    )

    handles: list[str] = []
    for mention in detect_mentions(text):
        handle = mention.handle.lower()
        if handle not in handles:
            handles.append(handle)
    return handles


def build_facets(text: str, dids: Mapping[str, str]) -> list[dict[str, Any]]:
    """The facets of the text as lexicon JSON, ordered by position.

    `dids` maps lower-case handles to DIDs; a mention whose handle is missing gets no facet
    (it stays plain text, as in the Bluesky app when a handle does not resolve).
    """
    from atproto_client import models  # type: ignore[import-untyped, unused-ignore]
    from atproto_client.utils.facet_detection import (  # type: ignore[import-untyped, unused-ignore]
        detect_facets,
        detect_mentions,
    )

    facets: list[tuple[int, int, dict[str, str]]] = []
    for facet in detect_facets(text):
        for feature in facet.features:
            if isinstance(feature, models.AppBskyRichtextFacet.Link):
                facets.append(_span(facet, {"$type": LINK, "uri": feature.uri}))
            elif isinstance(feature, models.AppBskyRichtextFacet.Tag):
                facets.append(_span(facet, {"$type": TAG, "tag": feature.tag}))
    for mention in detect_mentions(text):
        did = dids.get(mention.handle.lower())
        if did is not None:
            facets.append((mention.byte_start, mention.byte_end, {"$type": MENTION, "did": did}))
    return [
        {"index": {"byteStart": start, "byteEnd": end}, "features": [feature]}
        for start, end, feature in sorted(facets, key=lambda f: (f[0], f[1]))
    ]


def _span(facet: Any, feature: dict[str, str]) -> tuple[int, int, dict[str, str]]:
    return facet.index.byte_start, facet.index.byte_end, feature

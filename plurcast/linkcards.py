"""Link cards: a page's Open Graph title, description and image, fetched carefully.

Bluesky shows a link as a card only when the post carries one (`app.bsky.embed.external`),
so the card is fetched when the delivery is prepared, with the limits a server that fetches
pages for others needs:
- http and https only; at most MAX_REDIRECTS redirects, each checked again;
- no private, loopback, link-local or otherwise non-public address unless `allow_private`
  (`[bluesky] cards_allow_private`): every address the name resolves to is checked, and the
  connection goes to the address that was checked (a name cannot change its answer between
  the check and the connection);
- TIMEOUT seconds for the whole fetch; the page read up to MAX_PAGE_BYTES (the tags are in
  its head); the image up to MAX_IMAGE_DOWNLOAD, then cleaned of metadata and re-encoded
  under MAX_THUMB_BYTES.

Synchronous (http.client): callers in the event loop run it in a thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from plurcast import __version__
from plurcast.value import Value

TIMEOUT = 5.0
MAX_PAGE_BYTES = 1_000_000
MAX_IMAGE_DOWNLOAD = 10_000_000
MAX_THUMB_BYTES = 1_000_000
MAX_REDIRECTS = 5
MAX_TITLE_CHARS = 300
MAX_DESCRIPTION_CHARS = 1000
_HTML_TYPES = ("text/html", "application/xhtml+xml")


class CardError(Exception):
    """Why there is no card (one line, for the delivery's history)."""


class Card(Value):
    url: str
    title: str
    description: str
    image: bytes | None = None  # cleaned, at most MAX_THUMB_BYTES
    image_mime: str | None = None
    problems: tuple[str, ...] = ()  # e.g. why the image was left out


def fetch_card(url: str, *, allow_private: bool = False, timeout: float = TIMEOUT) -> Card:
    """The card for `url`; raises CardError when the page cannot give one."""
    deadline = time.monotonic() + timeout
    final, content_type, body = _fetch(url, allow_private, deadline, MAX_PAGE_BYTES, truncate=True)
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() not in _HTML_TYPES:
        raise CardError(f"{url} is not an HTML page ({kind.strip() or 'no type'})")
    declared = params.partition("charset=")[2].strip(" \"'").split(";")[0]
    tags = _parse(_decode(body, declared or _charset(body)))
    title = tags.get("og:title") or tags.get("twitter:title") or tags.get("title") or ""
    description = (
        tags.get("og:description")
        or tags.get("twitter:description")
        or tags.get("description")
        or ""
    )
    if not title and not description:
        raise CardError(f"{url} has neither a title nor a description")
    card = Card(url, _cut(title, MAX_TITLE_CHARS), _cut(description, MAX_DESCRIPTION_CHARS))
    image_url = tags.get("og:image:secure_url") or tags.get("og:image") or tags.get("og:image:url")
    if not image_url:
        return card
    try:
        image, mime = _thumbnail(urljoin(final, image_url), allow_private, deadline)
    except CardError as exc:
        return card._replace(problems=(f"no image: {exc}",))
    return card._replace(image=image, image_mime=mime)


def _thumbnail(url: str, allow_private: bool, deadline: float) -> tuple[bytes, str]:
    from plurcast.media import clean, images

    _, _, data = _fetch(url, allow_private, deadline, MAX_IMAGE_DOWNLOAD, truncate=False)
    try:
        picture = images.inspect(data)
        data = clean.strip(data, picture.mime)
        if len(data) > MAX_THUMB_BYTES:
            data = images.fit(data, MAX_THUMB_BYTES)
    except (images.Unreadable, clean.Damaged) as exc:
        raise CardError(f"the image {url} is unusable: {exc}") from None
    return data, picture.mime


# --- fetching ---------------------------------------------------------------------------


class _Pinned(http.client.HTTPSConnection):
    """A connection to `address`, speaking to (and, over TLS, verifying) `host`."""

    def __init__(self, host: str, port: int, address: str, timeout: float, tls: bool) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        if self._tls:
            context = ssl.create_default_context()
            self.sock = context.wrap_socket(sock, server_hostname=self.host)
        else:
            self.sock = sock


def check_address(address: str, allow_private: bool) -> None:
    """Raise CardError for an address that is not on the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not allow_private and not ip.is_global:
        raise CardError(
            f"{address} is a private or local address (set [bluesky] cards_allow_private "
            "= true to allow it)"
        )


def _resolve(host: str, port: int, allow_private: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CardError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:  # every answer: a name must not mix public and private ones
        check_address(address, allow_private)
    if not addresses:
        raise CardError(f"{host} has no address")
    return addresses[0]


def _fetch(
    url: str, allow_private: bool, deadline: float, limit: int, *, truncate: bool
) -> tuple[str, str, bytes]:
    """(final URL, Content-Type, body) of a GET, following redirects within the rules."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise CardError(f"{url} is not an http or https link")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise CardError(f"{url} has a bad port") from None
        address = _resolve(parts.hostname, port, allow_private)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CardError(f"{url}: no answer within {TIMEOUT:g} s")
        conn = _Pinned(parts.hostname, port, address, remaining, scheme == "https")
        try:
            conn.request(
                "GET",
                path,
                headers={
                    "User-Agent": f"plurcast/{__version__} (link card)",
                    "Accept": "text/html, image/*;q=0.9, */*;q=0.1",
                },
            )
            answer = conn.getresponse()
            if answer.status in (301, 302, 303, 307, 308) and answer.getheader("Location"):
                url = urljoin(url, answer.getheader("Location", ""))
                continue
            if answer.status != 200:
                raise CardError(f"{url} answered HTTP {answer.status}")
            content_type = answer.getheader("Content-Type") or ""
            return url, content_type, _read(answer, conn, deadline, limit, truncate, url)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError | socket.timeout):
                raise CardError(f"{url}: no answer within {TIMEOUT:g} s") from None
            raise CardError(f"{url}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
    raise CardError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _read(
    answer: http.client.HTTPResponse,
    conn: _Pinned,
    deadline: float,
    limit: int,
    truncate: bool,
    url: str,
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if conn.sock is not None:
            conn.sock.settimeout(remaining)
        chunk = answer.read1(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    if truncate:
        return b"".join(chunks)[:limit]
    raise CardError(f"{url} is over {limit:,} bytes")


# --- parsing ----------------------------------------------------------------------------


class _Done(Exception):
    """The head is over: the card's tags are all known."""


class _HeadTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, str] = {}
        self._in_title = False
        self._title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            values = {k.lower(): v for k, v in attrs if v is not None}
            key = (values.get("property") or values.get("name") or "").lower()
            if key and "content" in values:
                self.tags.setdefault(key, values["content"])
        elif tag == "title":
            self._in_title = True
        elif tag == "body":
            raise _Done

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            self.tags.setdefault("title", "".join(self._title))
        elif tag == "head":
            raise _Done

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)


def _parse(html: str) -> dict[str, str]:
    parser = _HeadTags()
    try:
        parser.feed(html)
        parser.close()
    except _Done:
        pass
    return {k: " ".join(v.split()) for k, v in parser.tags.items() if v.strip()}


def _charset(body: bytes) -> str:
    import re

    match = re.search(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", body[:2048], re.I)
    return match.group(1).decode() if match else "utf-8"


def _decode(body: bytes, charset: str) -> str:
    import codecs

    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return body.decode(charset, errors="replace")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

"""Link cards: Open Graph fetched from a local web server, within the safety limits."""

from __future__ import annotations

import pytest

from plurcast import linkcards
from plurcast.linkcards import CardError, fetch_card
from tests.images import has_location, photo
from tests.peers.pages import PageServer, og_page


def test_title_description_and_image_make_the_card(page_server: PageServer) -> None:
    big = photo("JPEG", (1600, 1200), quality=97)  # noise: well over the 1,000,000 bytes
    assert len(big) > linkcards.MAX_THUMB_BYTES
    page_server.add("/thumb.jpg", big, content_type="image/jpeg")
    url = page_server.add("/post", og_page("A &amp; B", "What   it is", "/thumb.jpg"))
    card = fetch_card(url, allow_private=True)
    assert (card.title, card.description) == ("A & B", "What it is")
    assert card.image is not None and card.image_mime == "image/jpeg"
    assert len(card.image) <= linkcards.MAX_THUMB_BYTES
    assert not has_location(card.image)
    assert card.problems == ()


def test_loopback_and_private_addresses_are_refused_unless_allowed(
    page_server: PageServer,
) -> None:
    url = page_server.add("/post", og_page("Title"))
    with pytest.raises(CardError, match="private or local address"):
        fetch_card(url)
    assert page_server.requests == []  # refused before connecting
    for address in ("10.1.2.3", "192.168.1.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"):
        with pytest.raises(CardError, match="private or local"):
            linkcards.check_address(address, False)
    linkcards.check_address("93.184.216.34", False)


def test_a_redirect_is_checked_again(page_server: PageServer) -> None:
    target = page_server.add("/final", og_page("Moved here"))
    url = page_server.add("/old", b"", status=302, headers={"Location": "/final"})
    assert fetch_card(url, allow_private=True).title == "Moved here"
    loop = page_server.add("/loop", b"", status=301, headers={"Location": "/loop"})
    with pytest.raises(CardError, match="redirects"):
        fetch_card(loop, allow_private=True)
    away = page_server.add("/away", b"", status=302, headers={"Location": "ftp://x/y"})
    with pytest.raises(CardError, match="not an http"):
        fetch_card(away, allow_private=True)
    assert target


def test_only_web_links_and_html_pages(page_server: PageServer) -> None:
    with pytest.raises(CardError, match="not an http"):
        fetch_card("file:///etc/passwd", allow_private=True)
    pdf = page_server.add("/doc.pdf", b"%PDF-1.4", content_type="application/pdf")
    with pytest.raises(CardError, match="not an HTML page"):
        fetch_card(pdf, allow_private=True)
    missing = page_server.url + "/nothing"
    with pytest.raises(CardError, match="HTTP 404"):
        fetch_card(missing, allow_private=True)
    bare = page_server.add("/bare", "<html><body>no head</body></html>")
    with pytest.raises(CardError, match="neither a title"):
        fetch_card(bare, allow_private=True)


def test_a_huge_page_is_read_only_up_to_the_cap(page_server: PageServer) -> None:
    body = og_page("Big page").replace("<body>", "<body>" + "x" * 3_000_000)
    url = page_server.add("/big", body)
    assert fetch_card(url, allow_private=True).title == "Big page"


def test_a_page_that_never_answers_times_out(page_server: PageServer) -> None:
    url = page_server.hang("/slow")
    with pytest.raises(CardError, match="no answer"):
        fetch_card(url, allow_private=True, timeout=0.3)


def test_a_broken_image_leaves_a_card_without_one(page_server: PageServer) -> None:
    page_server.add("/broken.png", b"\x89PNG\r\n\x1a\nnot really", content_type="image/png")
    url = page_server.add("/post", og_page("Title", "Text", "/broken.png"))
    card = fetch_card(url, allow_private=True)
    assert card.image is None and card.problems and "unusable" in card.problems[0]


def test_the_page_charset_is_honoured(page_server: PageServer) -> None:
    body = og_page("Grüße aus Köln").encode("latin-1")
    url = page_server.add("/latin", body, content_type="text/html; charset=iso-8859-1")
    assert fetch_card(url, allow_private=True).title == "Grüße aus Köln"

"""A local web server with pages to fetch (Open Graph pages for link cards), on 127.0.0.1.

`pages.add(path, body, content_type=…, status=…, headers=…)` publishes a response;
`pages.hang(path)` makes a path accept the request and never answer (until the server stops).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

from tests.peers.process import Peer, free_port, serve_in_thread


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class PageServer(Peer):
    port: int = field(default_factory=free_port)
    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _httpd: _QuietServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, path: str, body: bytes | str, **options: Any) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.pages[path] = Page(data, **options)
        return self.url + path

    def hang(self, path: str) -> str:
        self.pages[path] = Page(b"", hang=True)
        return self.url + path

    def start(self) -> Self:
        if self._httpd is None:
            self._httpd = _QuietServer(("127.0.0.1", self.port), _handler(self))
            self._httpd.daemon_threads = True
            serve_in_thread(self._httpd)
        return self

    def close(self) -> None:
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early (a capped read) is no error worth a traceback."""


def _handler(server: PageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `requests`."""

        def do_GET(self) -> None:
            server.requests.append(self.path)
            page = server.pages.get(self.path)
            if page is None:
                self.send_error(404)
                return
            if page.hang:
                server._stopping.wait(30)
                return
            self.send_response(page.status)
            self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(page.body)))
            for name, value in page.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(page.body)

    return Handler


def og_page(title: str, description: str = "", image: str | None = None) -> str:
    """A small page with Open Graph tags in its head."""
    metas = [f'<meta property="og:title" content="{title}">']
    if description:
        metas.append(f'<meta property="og:description" content="{description}">')
    if image:
        metas.append(f'<meta property="og:image" content="{image}">')
    head = f"<head><title>Other</title>{''.join(metas)}</head>"
    return f"<!doctype html><html>{head}<body>x</body></html>"


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server

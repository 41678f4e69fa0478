"""The bundled offline news site (``pipeline/data/demo_site``), served on 127.0.0.1.

It speaks plain HTTP the way real feed servers do: strong ETags and Last-Modified on
every file, ``304 Not Modified`` for matching conditional requests, a charset in the
Content-Type where the manifest gives one, 404 for anything else. The demo polls it; the
tests use it as a real server.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import urlsplit

import yaml

PLACEHOLDER = b"{BASE}"
# A fixed modification time keeps Last-Modified stable across runs of the demo.
SITE_MTIME = 1_763_900_000.0


@dataclass(frozen=True)
class SiteFeed:
    path: str
    name: str
    outlet: str
    lang: str


class FixtureSite:
    """The demo site's files, with ``{BASE}`` replaced by the address it is served on."""

    def __init__(self, root: Traversable | None = None) -> None:
        self.root = root or resources.files("pipeline") / "data" / "demo_site"
        manifest = yaml.safe_load((self.root / "manifest.yaml").read_text(encoding="utf-8"))
        self.feeds = [SiteFeed(f["path"], f["name"], f["outlet"], f["lang"]) for f in manifest["feeds"]]
        self.content_types: dict[str, str] = {
            entry["path"]: entry["content_type"] for entry in [*manifest["feeds"], *manifest.get("pages", [])]
        }

    def body(self, path: str, base: str) -> bytes | None:
        if path not in self.content_types:
            return None
        raw = (self.root / path).read_bytes()
        return raw.replace(PLACEHOLDER, base.encode("ascii"))


class FixtureServer:
    """Serve a :class:`FixtureSite` on 127.0.0.1 in a background thread (use ``with``)."""

    def __init__(self, site: FixtureSite | None = None, *, port: int = 0) -> None:
        self.site = site or FixtureSite()
        self.requests: list[dict[str, Any]] = []
        self._server = _bind(port, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.base}/{path.lstrip('/')}"

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path.lstrip("/")
                body = server.site.body(path, server.base)
                record: dict[str, Any] = {
                    "path": path,
                    "if_none_match": self.headers.get("If-None-Match"),
                    "if_modified_since": self.headers.get("If-Modified-Since"),
                    "user_agent": self.headers.get("User-Agent"),
                }
                if body is None:
                    record["status"] = 404
                    server.requests.append(record)
                    self.send_error(404, "Not Found")
                    return
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                last_modified = formatdate(SITE_MTIME, usegmt=True)
                if _not_modified(self.headers, etag):
                    record["status"] = 304
                    server.requests.append(record)
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                record["status"] = 200
                server.requests.append(record)
                self.send_response(200)
                self.send_header("Content-Type", server.site.content_types[path])
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", last_modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _not_modified(headers: Any, etag: str) -> bool:
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match == "*"
    since = headers.get("If-Modified-Since")
    if since:
        try:
            return parsedate_to_datetime(since).timestamp() >= SITE_MTIME
        except (TypeError, ValueError):
            return False
    return False


def _bind(port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        if port == 0:
            raise
        # The preferred port is taken: any free port will do.
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)

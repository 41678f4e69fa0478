"""The HTTP seam against a real local server: caps, timeouts, redirects, SSRF guard."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest

from pipeline.errors import FetchError
from pipeline.http import HttpClient
from pipeline.settings import HttpSettings
from tests.local_server import LocalServer, Reply

LIMITS = HttpSettings(timeout_seconds=1.0, connect_timeout_seconds=1.0, max_bytes=50_000, max_redirects=3)


def client(*, private: bool = True) -> HttpClient:
    return HttpClient(LIMITS, allow_private_networks=private)


def endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 8192


def test_conditional_get_and_headers() -> None:
    def feed(handler: object) -> Reply:
        if getattr(handler, "headers").get("If-None-Match") == '"v1"':  # noqa: B009
            return Reply(304)
        return Reply(200, b"<rss/>", {"ETag": '"v1"', "Content-Type": "application/rss+xml; charset=koi8-r"})

    with LocalServer({"/feed": feed}) as server, client() as http:
        first = http.get(server.url("/feed"))
        assert first.status == 200 and first.body == b"<rss/>"
        assert first.headers["etag"] == '"v1"'
        assert first.charset == "koi8-r"
        second = http.get(server.url("/feed"), etag='"v1"')
        assert second.not_modified and second.body == b""
        assert server.hits[0]["headers"]["User-Agent"].startswith("summitwatch/")


def test_oversize_body_is_refused_without_reading_it_all() -> None:
    routes = {
        "/declared": lambda h: Reply(200, b"y" * 60_000),
        "/streamed": lambda h: Reply(200, endless()),
    }
    with LocalServer(routes) as server, client() as http:
        with pytest.raises(FetchError, match="limit") as declared:
            http.get(server.url("/declared"))
        assert declared.value.permanent
        with pytest.raises(FetchError, match="limit"):
            http.get(server.url("/streamed"))


def test_gzip_bomb_is_capped_after_decompression() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    with LocalServer({"/bomb": lambda h: Reply(200, bomb, {"Content-Encoding": "gzip"})}) as server:
        with client() as http, pytest.raises(FetchError, match="limit"):
            http.get(server.url("/bomb"))


def test_timeout_is_transient() -> None:
    with LocalServer({"/slow": lambda h: Reply(200, b"late", delay=2.5)}) as server:
        with client() as http, pytest.raises(FetchError, match="timed out") as caught:
            http.get(server.url("/slow"))
    assert not caught.value.permanent


@pytest.mark.parametrize(("status", "permanent"), [(404, True), (410, True), (503, False), (429, False)])
def test_error_statuses(status: int, permanent: bool) -> None:
    with LocalServer({"/x": lambda h: Reply(status, b"no")}) as server:
        with client() as http, pytest.raises(FetchError, match=f"HTTP {status}") as caught:
            http.get(server.url("/x"))
    assert caught.value.permanent is permanent


def test_redirects_followed_up_to_the_limit() -> None:
    routes = {
        "/a": lambda h: Reply(301, b"", {"Location": "/b"}),
        "/b": lambda h: Reply(302, b"", {"Location": "/c"}),
        "/c": lambda h: Reply(200, b"done"),
        "/loop": lambda h: Reply(302, b"", {"Location": "/loop"}),
    }
    with LocalServer(routes) as server, client() as http:
        response = http.get(server.url("/a"))
        assert response.body == b"done"
        assert response.final_url == server.url("/c")
        with pytest.raises(FetchError, match="redirects"):
            http.get(server.url("/loop"))


def test_private_addresses_refused_by_default() -> None:
    with LocalServer({"/x": lambda h: Reply(200, b"secret")}) as server, client(private=False) as http:
        with pytest.raises(FetchError, match="non-public") as caught:
            http.get(server.url("/x"))
        assert caught.value.permanent
        assert server.hits == []
        for url in ("http://10.1.2.3/", "http://169.254.169.254/latest/meta-data", "http://[::1]/"):
            with pytest.raises(FetchError, match="non-public"):
                http.get(url)


class LoopbackOnlyClient(HttpClient):
    """Trusts the test server's loopback address but guards every other host for real."""

    def _check_url(self, url: str) -> None:
        if url.startswith("http://127.0.0.1:"):
            return
        super()._check_url(url)


def test_every_redirect_hop_is_guarded() -> None:
    with LocalServer({"/r": lambda h: Reply(302, b"", {"Location": "http://10.0.0.1/admin"})}) as server:
        with LoopbackOnlyClient(LIMITS, allow_private_networks=False) as http:
            with pytest.raises(FetchError, match=r"non-public 10\.0\.0\.1"):
                http.get(server.url("/r"))
        assert len(server.hits) == 1


@pytest.mark.parametrize(
    "url", ["ftp://example.com/feed", "file:///etc/passwd", "gopher://x/", "http:///nohost"]
)
def test_only_http_urls(url: str) -> None:
    with client() as http, pytest.raises(FetchError) as caught:
        http.get(url)
    assert caught.value.permanent


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::a00:1]/",  # NAT64 form of 10.0.0.1
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped metadata address
        "http://[::127.0.0.1]/",  # IPv4-compatible loopback
        "http://x.example:99999/",  # port out of range: refused, not a crash
    ],
)
def test_embedded_private_addresses_and_malformed_urls_are_refused(url: str) -> None:
    with client(private=False) as http, pytest.raises(FetchError) as caught:
        http.get(url)
    assert caught.value.permanent


def test_credentials_in_urls_stay_out_of_errors() -> None:
    with LocalServer({"/x": lambda h: Reply(500, b"no")}) as server, client() as http:
        secret_url = server.url("/x") + "?apikey=s3cretKEY"
        with pytest.raises(FetchError) as caught:
            http.get(secret_url)
    assert "s3cretKEY" not in str(caught.value)

"""The HTTP seam against a real local server: caps, timeouts, redirects, SSRF guard."""

from __future__ import annotations

import gzip
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpcore
import pytest

from pipeline.errors import FetchError
from pipeline.http import HostBreaker, HttpClient, PageFetcher, redirected_away, site_of
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


@pytest.mark.parametrize("coding", ["x-gzip", "X-Gzip", "x-deflate"])
def test_a_body_compressed_under_an_old_name_of_its_coding_is_unpacked(coding: str) -> None:
    """RFC 9110 has "x-gzip" read as "gzip" ("x-deflate" is the same habit): the compressed
    bytes were handed on as the body."""
    text = b"<rss version='2.0'><channel><title>Power of Siberia 2</title></channel></rss>" * 50
    body = gzip.compress(text) if "gzip" in coding.lower() else zlib.compress(text)
    with LocalServer({"/feed": lambda h: Reply(200, body, {"Content-Encoding": coding})}) as server:
        with client() as http:
            assert http.get(server.url("/feed")).body == text


@pytest.mark.parametrize("codings", ["gzip, gzip", "deflate, gzip", "gzip,deflate"])
def test_a_body_compressed_twice_over_is_refused_without_being_unpacked(codings: str) -> None:
    """Each layer was unpacked whole before the size was counted: 2 KB of gzip in gzip took
    2 GB of memory (1 GB of zeros inside). Here 50 MB inside, refused as stacked codings."""
    inner = gzip.compress(b"\0" * 50_000_000)
    layers = [coding.strip() for coding in codings.split(",")]
    body = inner if layers[0] == "gzip" else zlib.compress(inner)
    body = gzip.compress(body) if layers[1] == "gzip" else zlib.compress(body)
    with LocalServer({"/twice": lambda h: Reply(200, body, {"Content-Encoding": codings})}) as server:
        with client() as http, pytest.raises(FetchError, match="compressed 2 times over") as caught:
            http.get(server.url("/twice"))
    assert caught.value.permanent


def test_timeout_is_transient() -> None:
    with LocalServer({"/slow": lambda h: Reply(200, b"late", delay=2.5)}) as server:
        with client() as http, pytest.raises(FetchError, match="timed out") as caught:
            http.get(server.url("/slow"))
    assert not caught.value.permanent


def test_a_failed_fetch_says_what_failed() -> None:
    """A body that is not the gzip its header says, or a server that is not there: the
    message says so in words, not only httpx's class name."""
    import socket

    with LocalServer(
        {"/lie": lambda h: Reply(200, b"plain text " * 50, {"Content-Encoding": "gzip"})}
    ) as server:
        with client() as http, pytest.raises(FetchError) as caught:
            http.get(server.url("/lie"))
    assert "not in the Content-Encoding it was sent with (DecodingError)" in str(caught.value)
    assert not caught.value.permanent
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with client() as http, pytest.raises(FetchError) as caught:
        http.get(f"http://127.0.0.1:{port}/x")
    assert str(caught.value).endswith("no connection to the server (ConnectError)")


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(404, False), (403, False), (410, True), (400, True), (451, True), (503, False), (429, False)],
)
def test_error_statuses(status: int, permanent: bool) -> None:
    """403 and 404 are what real sites also answer in passing (a CDN's hiccup, a page not
    live yet): not permanent, so retried a few times; 410 Gone is meant."""
    with LocalServer({"/x": lambda h: Reply(status, b"no")}) as server:
        with client() as http, pytest.raises(FetchError, match=f"HTTP {status}") as caught:
            http.get(server.url("/x"))
    assert caught.value.permanent is permanent
    assert caught.value.status == status and caught.value.answered


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


def test_a_page_that_only_sends_the_browser_on_is_followed() -> None:
    """A page that is only a <meta http-equiv="refresh"> to another address (a link
    shortener's or an old address's page) is followed as a temporary redirect: counted
    among the hops, a loop refused; a page with text of its own, one reloading itself now
    and then, or a refresh to no web address is read as it is."""
    article = b"<html><body><article><p>Putin and Xi met in Beijing.</p></article></body></html>"

    def refresh(to: str, *, extra: bytes = b"", quote: bytes = b'"') -> Reply:
        inner = b"'" if quote == b'"' else b'"'  # (the address quoted inside the attribute)
        content = b"0; URL=" + inner + to.encode() + inner
        page = (
            b"<html><head><meta http-equiv="
            + quote
            + b"Refresh"
            + quote
            + b" content="
            + quote
            + content
            + quote
            + b"></head><body><p>Moved: "
            b'<a href="' + to.encode() + b'">follow</a></p>' + extra + b"</body></html>"
        )
        return Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})

    routes = {
        "/short": lambda h: refresh("/story", quote=b"'"),
        "/twice": lambda h: refresh("/short"),
        "/story": lambda h: Reply(200, article, {"Content-Type": "text/html"}),
        "/own-text": lambda h: refresh("/story", extra=b"<p>" + b"An article of its own. " * 40 + b"</p>"),
        "/reloads": lambda h: Reply(200, b'<meta http-equiv="refresh" content="300"><p>live</p>'),
        "/itself": lambda h: refresh("/itself#top"),
        "/script": lambda h: refresh("javascript:alert(1)"),
        "/loop": lambda h: refresh("/loop2"),
        "/loop2": lambda h: refresh("/loop"),
        "/moved": lambda h: Reply(301, b"", {"Location": "/short"}),
    }
    with LocalServer(routes) as server, client() as http:
        for start in ("/short", "/twice", "/moved"):
            response = http.get(server.url(start))
            assert response.body == article and response.final_url == server.url("/story"), start
        # A refresh is no permanent move: the 301 before it moved the URL to the refresh page.
        assert http.get(server.url("/moved")).moved_to == server.url("/short")
        assert http.get(server.url("/twice")).moved_to is None
        for start in ("/own-text", "/reloads", "/itself", "/script"):
            response = http.get(server.url(start))
            assert response.final_url == server.url(start) and b"refresh" in response.body.lower(), start
        with pytest.raises(FetchError, match="redirects") as loop:
            http.get(server.url("/loop"))
        assert loop.value.permanent


def test_a_refresh_header_is_followed_as_its_meta_twin_is() -> None:
    """A ``Refresh: 0; url=...`` header (a site's JavaScript-free redirect, sent with an empty
    body) sends a browser on as the <meta> does: the empty body was the page, an error."""
    article = b"<html><body><article><p>Putin and Xi met in Beijing.</p></article></body></html>"
    routes = {
        "/short": lambda h: Reply(200, b"", {"Refresh": "0; url=/story"}),
        "/story": lambda h: Reply(200, article, {"Content-Type": "text/html"}),
        "/reloads": lambda h: Reply(200, article, {"Refresh": "300", "Content-Type": "text/html"}),
        "/loop": lambda h: Reply(200, b"", {"Refresh": "0;URL='/loop2'"}),
        "/loop2": lambda h: Reply(200, b"", {"Refresh": "0; url=/loop"}),
    }
    with LocalServer(routes) as server, client() as http:
        response = http.get(server.url("/short"))
        assert response.body == article and response.final_url == server.url("/story")
        assert response.moved_to is None
        assert http.get(server.url("/reloads")).final_url == server.url("/reloads")
        with pytest.raises(FetchError, match="redirects"):
            http.get(server.url("/loop"))


def test_a_response_says_where_its_url_moved_for_good() -> None:
    """Only permanent redirects (301, 308) from the start move the URL asked for: to the
    last of them before a temporary one (a 301 to a 302 moved it to the 302's address,
    which only borrows another for now)."""
    routes = {
        "/301": lambda h: Reply(301, b"", {"Location": "/new"}),
        "/308": lambda h: Reply(308, b"", {"Location": "/301"}),
        "/then-302": lambda h: Reply(301, b"", {"Location": "/302"}),
        "/302": lambda h: Reply(302, b"", {"Location": "/new"}),
        "/307": lambda h: Reply(307, b"", {"Location": "/301"}),
        "/new": lambda h: Reply(200, b"<rss/>"),
        "/away": lambda h: Reply(301, b"", {"Location": "ftp://files.example/feed"}),
        "/loop": lambda h: Reply(308, b"", {"Location": "/loop"}),
    }
    with LocalServer(routes) as server, client() as http:
        assert http.get(server.url("/301")).moved_to == server.url("/new")
        assert http.get(server.url("/308")).moved_to == server.url("/new")
        assert http.get(server.url("/then-302")).moved_to == server.url("/302")
        for temporary in ("/302", "/307"):
            response = http.get(server.url(temporary))
            assert response.final_url == server.url("/new") and response.moved_to is None
        assert http.get(server.url("/new")).moved_to is None
        with pytest.raises(FetchError, match="only http and https") as away:
            http.get(server.url("/away"))
        with pytest.raises(FetchError, match="redirects") as loop:
            http.get(server.url("/loop"))
    assert away.value.permanent and loop.value.permanent


def test_private_addresses_refused_by_default() -> None:
    with LocalServer({"/x": lambda h: Reply(200, b"secret")}) as server, client(private=False) as http:
        with pytest.raises(FetchError, match="non-public") as caught:
            http.get(server.url("/x"))
        assert caught.value.permanent
        assert server.hits == []
        for url in ("http://10.1.2.3/", "http://169.254.169.254/latest/meta-data", "http://[::1]/"):
            with pytest.raises(FetchError, match="non-public"):
                http.get(url)


class FakeInternet(httpcore.NetworkBackend):
    """Stands in for the internet below the HTTP client: connections to a few public
    addresses are routed to local servers; any other address is connected for real
    (loopback reaches the local servers directly). Every connection is recorded."""

    def __init__(self, routes: dict[tuple[str, int], int]) -> None:
        self.routes = routes
        self.connects: list[tuple[str, int]] = []
        self._real = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        if (host, port) in self.routes:
            return self._real.connect_tcp("127.0.0.1", self.routes[host, port], timeout=timeout)
        if host != "127.0.0.1":
            raise httpcore.ConnectError(f"no route to {host} in the test network")
        return self._real.connect_tcp(host, port, timeout=timeout)


class ScriptedResolver:
    """A DNS resolver whose answers change from one lookup to the next, like a rebinding attack."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


PUBLIC = "93.184.215.14"  # a global unicast address; the fake internet routes it locally


def test_dns_rebinding_cannot_reach_a_private_address() -> None:
    """The first answer is public, every later one is loopback: the client connects to
    the address it checked and never asks again."""
    with (
        LocalServer({"/secret": lambda h: Reply(200, b"internal admin")}) as internal,
        LocalServer({"/secret": lambda h: Reply(200, b"public page")}) as public,
    ):
        resolver = ScriptedResolver([PUBLIC], ["127.0.0.1"])
        internet = FakeInternet({(PUBLIC, internal.port): public.port})
        with HttpClient(LIMITS, resolver=resolver, network_backend=internet) as http:
            response = http.get(internal.url("/secret", host="rebind.test"))
        assert response.body == b"public page"
        assert resolver.lookups == ["rebind.test"], "one lookup, the checked one"
        assert internet.connects == [(PUBLIC, internal.port)]
        assert internal.hits == []
        assert public.hits[0]["headers"]["Host"] == f"rebind.test:{internal.port}"


def test_a_private_answer_is_refused_before_connecting() -> None:
    with LocalServer({"/x": lambda h: Reply(200, b"internal")}) as internal:
        for answers in (["127.0.0.1"], [PUBLIC, "10.0.0.7"], ["::ffff:169.254.169.254"], ["64:ff9b::a00:1"]):
            resolver = ScriptedResolver(answers, [PUBLIC])
            internet = FakeInternet({})
            with HttpClient(LIMITS, resolver=resolver, network_backend=internet) as http:
                with pytest.raises(FetchError, match="non-public") as caught:
                    http.get(internal.url("/x", host="intranet.test"))
            assert caught.value.permanent
            assert resolver.lookups == ["intranet.test"]
            assert internet.connects == []
        assert internal.hits == []


@pytest.mark.parametrize("location", ["http://[::1", "http://0251.0376.0251.0376/"])
def test_a_redirect_to_no_url_is_a_permanent_failure(location: str) -> None:
    """httpx refuses such a Location itself: it was taken for a network error and retried."""
    routes = {"/r": lambda h: Reply(302, b"", {"Location": location})}
    with LocalServer(routes) as server, client() as http, pytest.raises(FetchError) as caught:
        http.get(server.url("/r"))
    assert "malformed redirect" in str(caught.value) and caught.value.permanent


def test_every_redirect_hop_is_guarded() -> None:
    routes = {
        "/to-metadata": lambda h: Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data"}),
        "/to-name": lambda h: Reply(302, b"", {"Location": "http://internal.test/admin"}),
    }
    with LocalServer(routes) as public:
        resolver = ScriptedResolver([PUBLIC])
        internet = FakeInternet({(PUBLIC, 80): public.port})
        with HttpClient(LIMITS, resolver=resolver, network_backend=internet) as http:
            with pytest.raises(FetchError, match=r"non-public 169\.254\.169\.254"):
                http.get("http://news.test/to-metadata")
            resolver.answers = [[PUBLIC], ["10.0.0.1"]]
            resolver.lookups.clear()
            with pytest.raises(FetchError, match=r"non-public 10\.0\.0\.1"):
                http.get("http://news.test/to-name")
        assert len(public.hits) == 2
        assert set(internet.connects) == {(PUBLIC, 80)}


def test_host_names_are_resolved_by_the_given_resolver_only() -> None:
    """With private networks allowed, a name only the test resolver knows still connects:
    the connection goes to the resolved address, with the name kept in the Host header."""
    with LocalServer({"/feed": lambda h: Reply(200, b"<rss/>")}) as server:
        resolver = ScriptedResolver(["127.0.0.1"])
        with HttpClient(LIMITS, allow_private_networks=True, resolver=resolver) as http:
            assert http.get(server.url("/feed", host="feeds.intranet.test")).body == b"<rss/>"
        assert server.hits[0]["headers"]["Host"] == f"feeds.intranet.test:{server.port}"
        with HttpClient(LIMITS, allow_private_networks=True, resolver=ScriptedResolver([])) as http:
            with pytest.raises(FetchError, match="cannot resolve") as caught:
                http.get(server.url("/feed", host="nowhere.test"))
        assert not caught.value.permanent


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``feeds.test`` (and nothing else): (cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "feeds.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("feeds.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def test_tls_verifies_the_host_name_not_the_pinned_address(certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    names_asked: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: names_asked.append(name)
    trust = ssl.create_default_context(cafile=str(cert_file))
    resolver = ScriptedResolver(["127.0.0.1"])
    with LocalServer({"/feed": lambda h: Reply(200, b"<rss/>")}, tls=server_tls) as server:
        with HttpClient(LIMITS, allow_private_networks=True, resolver=resolver, ssl_context=trust) as http:
            assert http.get(server.url("/feed", host="feeds.test")).body == b"<rss/>"
            assert names_asked == ["feeds.test"], "the name goes out as SNI, not the address"
            for wrong in ("other.test", "127.0.0.1"):
                with pytest.raises(FetchError, match="certificate verification failed"):
                    http.get(server.url("/feed", host=wrong))
        with HttpClient(LIMITS, allow_private_networks=True, resolver=resolver) as untrusting:
            with pytest.raises(FetchError, match="certificate verification failed"):
                untrusting.get(server.url("/feed", host="feeds.test"))
    assert len(server.hits) == 1, "only the verified connection sent a request"


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
        "http://x.example:0/",  # port 0: no server listens there (it was retried as a failed connection)
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


def test_link_local_is_refused_even_when_private_networks_are_allowed() -> None:
    """Cloud metadata lives at link-local addresses; a feed never does."""
    routes = {"/r": lambda h: Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})}
    with LocalServer(routes) as server:
        resolver = ScriptedResolver(["169.254.169.254"])
        internet = FakeInternet({})
        with HttpClient(
            LIMITS, allow_private_networks=True, resolver=resolver, network_backend=internet
        ) as http:
            with pytest.raises(FetchError, match="link-local addresses are never fetched") as caught:
                http.get(server.url("/r"))
            assert caught.value.permanent
            for url in ("http://[fe80::1]/", "http://[::ffff:169.254.169.254]/", "http://metadata.test/"):
                with pytest.raises(FetchError, match="non-public"):
                    http.get(url)
        assert internet.connects == [("127.0.0.1", server.port)], "only the loopback server was reached"


def test_page_fetcher_keeps_per_host_and_global_limits() -> None:
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    peak_total = [0]
    lock = threading.Lock()

    def slow_page(handler: object) -> Reply:
        host = str(getattr(handler, "headers")["Host"]).split(":")[0]  # noqa: B009
        with lock:
            in_flight[host] = in_flight.get(host, 0) + 1
            peak[host] = max(peak.get(host, 0), in_flight[host])
            peak_total[0] = max(peak_total[0], sum(in_flight.values()))
        time.sleep(0.15)
        with lock:
            in_flight[host] -= 1
        return Reply(200, handler.path.encode(), {"Content-Type": "text/plain"})  # type: ignore[attr-defined]

    routes = {f"/p{n}": slow_page for n in range(12)}
    with LocalServer(routes) as server, client() as http:
        urls = [server.url(f"/p{n}", host=("127.0.0.1", "localhost")[n % 2]) for n in range(12)]
        with PageFetcher(http, max_concurrency=3, per_host=2) as fetcher:
            calls = [fetcher.submit(url) for url in urls]
            bodies = [call.result().body for call in calls]
    # Results come back for the URL asked, in the order asked, whatever answered first.
    assert bodies == [f"/p{n}".encode() for n in range(12)]
    assert max(peak.values()) == 2, peak  # never more than 2 to one host...
    assert peak_total[0] == 3, peak_total  # ...nor more than 3 in all, and the pool was used


def test_page_fetcher_with_one_at_a_time_fetches_in_the_caller() -> None:
    with LocalServer({"/a": lambda h: Reply(200, b"a"), "/b": lambda h: Reply(404, b"")}) as server:
        with client() as http, PageFetcher(http, max_concurrency=1, per_host=1) as fetcher:
            first, missing = fetcher.submit(server.url("/a")), fetcher.submit(server.url("/b"))
            assert server.hits == []  # nothing fetched before it is asked for
            assert not first.ready()
            assert first.result().body == b"a"
            with pytest.raises(FetchError):
                missing.result()


class _KeptAliveServer:
    """A server as Python's http.server answers over HTTP/1.1 by default: the connection
    kept alive, headers and body written apart, Nagle's algorithm on."""

    def __init__(self, body: bytes, tls: ssl.SSLContext | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ports: list[int] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.ports.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fetch_many(http: HttpClient, server: _KeptAliveServer, count: int, host: str = "127.0.0.1") -> float:
    http.get(server.url("/warm", host))  # the connection is opened here
    started = time.perf_counter()
    for number in range(count):
        assert http.get(server.url(f"/page{number}", host)).body.endswith(b"</html>")
    return time.perf_counter() - started


# Connections to this machine's servers kept alive, as they are to public ones by default.
KEEP_ALIVE = LIMITS.model_copy(update={"keep_alive_private": True})


def test_a_kept_alive_connection_does_not_wait_for_delayed_acks() -> None:
    # On a reused connection the kernel delays its ACKs (up to 40 ms); such a server holds
    # the body until the headers are ACKed. 20 pages took 20 x 44 ms before the client
    # acknowledged at once; now a few ms. (A bound 20 times above what it takes.)
    body = b"<html>" + b"x" * 30_000 + b"</html>"
    server = _KeptAliveServer(body)
    try:
        with HttpClient(KEEP_ALIVE, allow_private_networks=True) as http:
            elapsed = _fetch_many(http, server, 20)
    finally:
        server.close()
    assert len(set(server.ports)) == 1, "one connection, kept alive"
    assert elapsed < 0.4, f"20 pages in {elapsed:.2f} s: waiting for delayed ACKs"


def test_a_kept_alive_tls_connection_does_not_wait_for_delayed_acks(certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    trust = ssl.create_default_context(cafile=str(cert_file))
    server = _KeptAliveServer(b"<html>" + b"x" * 30_000 + b"</html>", tls=server_tls)
    try:
        resolver = ScriptedResolver(["127.0.0.1"])
        with HttpClient(
            KEEP_ALIVE, allow_private_networks=True, resolver=resolver, ssl_context=trust
        ) as http:
            elapsed = _fetch_many(http, server, 20, host="feeds.test")
    finally:
        server.close()
    assert len(set(server.ports)) == 1, "one connection, kept alive"
    assert elapsed < 0.4, f"20 pages in {elapsed:.2f} s: waiting for delayed ACKs"


class _SingleThreadedServer(_KeptAliveServer):
    """The same server without threads: it serves one connection until the client closes it."""

    def __init__(self, body: bytes) -> None:
        from http.server import HTTPServer

        super().__init__(body)
        handler = self.server.RequestHandlerClass
        self.server.shutdown()
        self.server.server_close()
        self.server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_pages_fetched_at_once_from_a_single_threaded_local_server() -> None:
    # Two pages at a time, feeds read ahead: more than one connection to the host. A kept-
    # alive connection would hold such a server while the other waited until it timed out;
    # connections to local addresses are closed after each response instead.
    server = _SingleThreadedServer(b"<html>" + b"x" * 3_000 + b"</html>")
    try:
        with client() as http, PageFetcher(http, max_concurrency=4, per_host=2) as fetcher:
            pending = [fetcher.submit(server.url(f"/page{number}")) for number in range(8)]
            for page in pending:
                page.wait()
                assert page.result().status == 200
    finally:
        server.close()
    assert len(server.ports) == 8 and len(set(server.ports)) == 8, "a connection per page"


def test_public_hosts_keep_their_connections_alive() -> None:
    # Only loopback and private addresses are closed after each response. A public name
    # (its address routed to this machine's server by the fake internet) keeps its
    # connection, and so does a local one with keep_alive_private.
    server = _KeptAliveServer(b"<html>ok</html>")
    port = server.server.server_address[1]
    try:
        resolver = ScriptedResolver([PUBLIC])
        internet = FakeInternet({(PUBLIC, port): port})
        with HttpClient(
            LIMITS, allow_private_networks=True, resolver=resolver, network_backend=internet
        ) as http:
            for number in range(3):
                http.get(f"http://news.test:{port}/public{number}")
        assert internet.connects == [(PUBLIC, port)], "one connection to the public address"
        with HttpClient(LIMITS, allow_private_networks=True) as http:
            for number in range(3):
                http.get(server.url(f"/local{number}"))
        with HttpClient(KEEP_ALIVE, allow_private_networks=True) as http:
            for number in range(3):
                http.get(server.url(f"/kept{number}"))
    finally:
        server.close()
    assert len(set(server.ports[:3])) == 1, "public: one connection"
    assert len(set(server.ports[3:6])) == 3, "local: one connection per request"
    assert len(set(server.ports[6:])) == 1, "keep_alive_private: one connection"


# Servers that misbehave in ways a poll must survive ------------------------------------------


def test_a_validator_outside_ascii_is_not_sent_back_and_the_feed_stays_readable() -> None:
    def feed(handler: object) -> Reply:
        # http.server writes header values in Latin-1: a raw é, as some servers send.
        return Reply(
            200, b"<rss/>", {"ETag": '"caf\u00e9"', "Last-Modified": "Di, 03 J\u00e4n 2025 10:00:00"}
        )

    from pipeline.ingest import _validators

    with LocalServer({"/feed": feed}) as server, client() as http:
        first = http.get(server.url("/feed"))
        again = http.get(
            server.url("/feed"), etag=first.headers["etag"], last_modified=first.headers["last-modified"]
        )
        assert again.status == 200
        assert "If-None-Match" not in server.hits[1]["headers"]
        assert "If-Modified-Since" not in server.hits[1]["headers"]
    now = datetime.now(UTC)
    assert _validators(first.headers, now) == (None, None)  # nothing kept that cannot be sent
    assert _validators({"etag": '"v1"', "last-modified": "Tue, 03 Jun 2025 10:00:00 GMT"}, now) == (
        '"v1"',
        "Tue, 03 Jun 2025 10:00:00 GMT",
    )


def test_headers_that_trickle_in_are_cut_at_the_overall_deadline() -> None:
    """One header line every 0.4 s never meets the 1 s read timeout; the 2 s deadline of
    the request stops it all the same."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for number in range(100):
                if stop.wait(0.4):
                    return
                connection.sendall(f"X-Slow-{number}: yes\r\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    with client() as http, pytest.raises(FetchError, match="timed out") as caught:
        http.get(f"http://127.0.0.1:{listener.getsockname()[1]}/slow")
    elapsed = time.monotonic() - started
    stop.set()
    listener.close()
    assert not caught.value.permanent
    assert elapsed < 4.0, elapsed  # the deadline (2 x 1 s), not the server's 40 s


def test_a_gzip_body_cut_short_is_a_transient_failure() -> None:
    whole = gzip.compress(("Power of Siberia 2 talks resumed in Beijing. " * 400).encode())

    def cut(handler: object) -> Reply:
        # No Content-Length (an iterator) and the connection closed after 60 % of the stream.
        return Reply(200, iter([whole[: len(whole) * 6 // 10]]), {"Content-Encoding": "gzip"})

    with LocalServer(
        {"/cut": cut, "/whole": lambda h: Reply(200, whole, {"Content-Encoding": "gzip"})}
    ) as server:
        with client() as http:
            assert http.get(server.url("/whole")).body.startswith(b"Power of Siberia 2")
            with pytest.raises(FetchError, match="ended before its compressed body did") as caught:
                http.get(server.url("/cut"))
    assert not caught.value.permanent


def test_a_part_of_the_document_sent_for_the_whole_is_a_transient_failure() -> None:
    """A 206 to a request without a Range (a cache astray) is a piece of the page: stored, it
    would be an article cut short for good. A 206 whose range is the whole body is an answer."""
    whole = ("Power of Siberia 2 talks resumed in Beijing. " * 40).encode()
    part = whole[: len(whole) // 3]
    routes = {
        "/part": lambda h: Reply(206, part, {"Content-Range": f"bytes 0-{len(part) - 1}/{len(whole)}"}),
        "/no-range": lambda h: Reply(206, part),
        "/all": lambda h: Reply(206, whole, {"Content-Range": f"bytes 0-{len(whole) - 1}/{len(whole)}"}),
    }
    with LocalServer(routes) as server, client() as http:
        for path in ("/part", "/no-range"):
            with pytest.raises(FetchError, match=r"HTTP 206 .* only part of the document") as caught:
                http.get(server.url(path))
            assert not caught.value.permanent and caught.value.status == 206
        assert http.get(server.url("/all")).body == whole


def test_an_international_name_idna_refuses_is_a_permanent_fetch_error() -> None:
    with client() as http, pytest.raises(FetchError, match="invalid host name") as caught:
        http.get("http://xn--zz/story")
    assert caught.value.permanent


def test_not_modified_without_validators_is_not_taken_for_an_answer() -> None:
    with LocalServer({"/always": lambda h: Reply(304)}) as server, client() as http:
        assert http.get(server.url("/always"), etag='"v1"').not_modified
        with pytest.raises(FetchError, match="without validators") as caught:
            http.get(server.url("/always"))
    assert not caught.value.permanent


def test_retry_after_is_read_from_seconds_and_dates() -> None:
    from email.utils import format_datetime

    from pipeline.http import MAX_RETRY_AFTER_SECONDS, retry_after_seconds

    later = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    routes = {
        "/busy": lambda h: Reply(429, b"slow down", {"Retry-After": "3600"}),
        "/down": lambda h: Reply(503, b"maintenance", {"Retry-After": later}),
        "/gone": lambda h: Reply(404, b"no", {"Retry-After": "3600"}),
    }
    with LocalServer(routes) as server, client() as http:
        with pytest.raises(FetchError) as busy:
            http.get(server.url("/busy"))
        with pytest.raises(FetchError) as down:
            http.get(server.url("/down"))
        with pytest.raises(FetchError) as gone:
            http.get(server.url("/gone"))
    assert busy.value.retry_after == 3600 and not busy.value.permanent
    assert down.value.retry_after is not None and 7000 < down.value.retry_after <= 7200
    assert gone.value.retry_after is None and gone.value.status == 404
    assert retry_after_seconds("31536000") == MAX_RETRY_AFTER_SECONDS
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


QUICK = HttpSettings(timeout_seconds=0.3, connect_timeout_seconds=1.0, max_bytes=50_000)


def test_a_host_whose_pages_keep_timing_out_is_not_asked_again_in_the_run() -> None:
    """Two pages of a host in a row time out: its other pages fail at once, deferred (no
    request, not permanent), while another host's page is fetched as usual."""
    routes = {f"/slow{i}": (lambda handler: Reply(200, b"late", delay=1.5)) for i in range(6)}
    routes["/ok"] = lambda handler: Reply(200, b"fine")
    with LocalServer(routes) as server, HttpClient(QUICK, allow_private_networks=True) as http:
        with PageFetcher(http, max_concurrency=4, per_host=1, breaker=HostBreaker(2)) as fetcher:
            pending = [fetcher.submit(server.url(f"/slow{i}")) for i in range(6)]
            other = fetcher.submit(server.url("/ok", host="localhost"))
            errors = []
            for page in pending:
                with pytest.raises(FetchError) as caught:
                    page.result()
                errors.append(caught.value)
            assert other.result().body == b"fine"
    # (which two pages are asked first depends on the fetch threads: the count does not)
    timed_out = [e for e in errors if e.timed_out]
    deferred = [e for e in errors if e.deferred]
    assert len(timed_out) == 2 and len(deferred) == 4
    assert all(not e.permanent and "not fetched" in str(e) for e in deferred)
    asked = [hit["path"] for hit in server.hits]
    assert len(asked) == 3 and "/ok" in asked


def test_an_answer_from_the_host_starts_its_count_again() -> None:
    routes = {"/slow": lambda handler: Reply(200, b"late", delay=1.5), "/gone": lambda handler: Reply(404)}
    with LocalServer(routes) as server, HttpClient(QUICK, allow_private_networks=True) as http:
        breaker = HostBreaker(2)
        outcomes = []
        for path in ("/slow", "/gone", "/slow", "/gone", "/slow", "/slow", "/gone"):
            try:
                breaker.get(http, server.url(path))
            except FetchError as exc:
                outcomes.append("deferred" if exc.deferred else "timed out" if exc.timed_out else "error")
    assert outcomes == ["timed out", "error", "timed out", "error", "timed out", "timed out", "deferred"]
    assert HostBreaker(0).tripped(server.url("/slow")) is False


def test_a_host_asking_to_be_left_alone_is_not_asked_again_until_then() -> None:
    """A 429 with Retry-After: the host's other pages are put off at once (deferred, with
    the wait it asked for), another host's are fetched; once the wait is over it is asked."""
    routes = {f"/p{i}": (lambda handler: Reply(429, b"", {"Retry-After": "2"})) for i in range(4)}
    routes["/now"] = lambda handler: Reply(503, b"", {"Retry-After": "0"})
    routes["/ok"] = lambda handler: Reply(200, b"fine")
    with LocalServer(routes) as server, HttpClient(QUICK, allow_private_networks=True) as http:
        breaker = HostBreaker(3)
        with pytest.raises(FetchError) as first:
            breaker.get(http, server.url("/p0"))
        assert first.value.retry_after == 2 and not first.value.deferred
        with pytest.raises(FetchError, match="asked to be left alone for 2 s") as later:
            breaker.get(http, server.url("/p1"))
        assert later.value.deferred and later.value.retry_after == 2
        assert breaker.get(http, server.url("/ok", host="localhost")).body == b"fine"
        time.sleep(2.1)
        with pytest.raises(FetchError) as again:
            breaker.get(http, server.url("/p2"))
        assert not again.value.deferred
        # "Retry-After: 0" asks for no wait: the host is asked again at once.
        other = HostBreaker(3)
        for _ in range(2):
            with pytest.raises(FetchError) as now:
                other.get(http, server.url("/now", host="localhost"))
            assert not now.value.deferred
    assert [hit["path"] for hit in server.hits] == ["/p0", "/ok", "/p2", "/now", "/now"]


def test_a_breaker_kept_across_runs_leaves_a_dead_host_alone_for_its_hold() -> None:
    routes = {"/slow": lambda handler: Reply(200, b"late", delay=1.5)}
    with LocalServer(routes) as server, HttpClient(QUICK, allow_private_networks=True) as http:
        held = HostBreaker(1, hold=1.0)
        for_the_run = HostBreaker(1)
        for breaker in (held, for_the_run):
            with pytest.raises(FetchError, match="timed out"):
                breaker.get(http, server.url("/slow"))
        time.sleep(1.1)
        assert not held.tripped(server.url("/slow"))  # (held long enough: asked again)
        assert for_the_run.tripped(server.url("/slow"))  # (for its whole life)


@pytest.mark.parametrize(
    ("requested", "final", "verdict"),
    [
        ("http://news.example/a/1", "http://news.example/a/1", None),
        ("http://news.example/a/1", "https://NEWS.example/a/1", None),  # to https: the same page
        ("http://news.example/a/1", "https://www.news.example/2026/12/a-1.html", None),  # moved
        ("http://news.example/a/1", "http://news.example/world/login-data-breach", None),  # a word in a slug
        ("http://news.example/a/1", "https://news.example/", "front"),
        ("http://news.example/a/1", "https://www.news.example", "front"),
        ("http://news.example/a/1", "https://news.example/index.php", "front"),
        ("http://news.example/", "https://www.news.example/", None),  # a front page asked for
        ("http://news.example/a/1", "https://consent.portal.example/?continue=x", "wall"),
        ("http://news.example/a/1", "https://guce.news.example/collectConsent?x=1", "wall"),
        ("http://news.example/a/1", "https://news.example/login?next=/a/1", "wall"),
        ("http://news.example/a/1", "https://news.example/account/Subscribe/", "wall"),
        ("http://news.example/a/1", "https://accounts.news.example/signin", "wall"),
        # Articles whose address looks like a front page's, or holds a wall's word itself.
        ("https://t.example/abc", "https://blog.example/?p=123", None),
        ("http://news.example/news/12345", "http://news.example/index.php?id=12345", None),
        ("http://news.example/a/1", "https://news.example/?utm_source=rss", "front"),
        ("http://news.example/a/1", "https://news.example/en/", "front"),
        ("http://example.com/news/gdpr/meta-fined", "https://www.example.com/news/gdpr/meta-fined", None),
        (
            "http://example.com/privacy/consent/eu-court-rules",
            "http://example.com/privacy/consent/eu-court-rules/",
            None,
        ),
        ("http://login.example.com/news/1", "https://login.example.com/2026/news-1", None),
    ],
)
def test_a_redirect_away_from_the_article_is_told_from_a_move(
    requested: str, final: str, verdict: str | None
) -> None:
    error = redirected_away(requested, final)
    if verdict is None:
        assert error is None
        return
    assert error is not None
    if verdict == "front":
        assert "front page" in str(error) and not error.permanent
    else:
        assert "consent or sign-in page" in str(error) and error.permanent


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://news.example.com/a/1", "example.com"),
        ("https://example.com/", "example.com"),
        ("https://feeds.bbc.co.uk/news/rss.xml", "bbc.co.uk"),
        ("http://www.xinhuanet.com.cn/x", "xinhuanet.com.cn"),
        ("https://t.co/abc", "t.co"),
        ("http://127.0.0.1:8080/feed", "127.0.0.1"),
        ("http://localhost/feed", "localhost"),
        ("not a url", ""),
    ],
)
def test_the_site_of_an_address_is_its_registered_name(url: str, site: str) -> None:
    assert site_of(url) == site

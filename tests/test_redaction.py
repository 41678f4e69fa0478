"""The URL redaction rule: examples, log records, and properties (hypothesis)."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.redaction import (
    MARKER,
    RedactingFilter,
    install_log_redaction,
    is_secret_name,
    redact_text,
    redact_url,
)

# --- examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:password@feeds.example.org/rss", f"http://{MARKER}@feeds.example.org/rss"),
        ("https://token@git.example.org/feed.xml", f"https://{MARKER}@git.example.org/feed.xml"),
        ("https://u:p%40ss@h.example.org:8443/a", f"https://{MARKER}@h.example.org:8443/a"),
        ("https://u:p@ss@h.example.org/a", f"https://{MARKER}@h.example.org/a"),
        (
            "https://e.org/feed?access_token=abc123&lang=ru",
            f"https://e.org/feed?access_token={MARKER}&lang=ru",
        ),
        ("https://e.org/f?client_secret=s3&id=1", f"https://e.org/f?client_secret={MARKER}&id=1"),
        ("https://e.org/f?apiKey=k&x-api-key=k2", f"https://e.org/f?apiKey={MARKER}&x-api-key={MARKER}"),
        ("https://e.org/f?APIKEY=k", f"https://e.org/f?APIKEY={MARKER}"),
        (
            "https://b.s3.amazonaws.com/o?X-Amz-Credential=AK%2F2025&X-Amz-Signature=ff&X-Amz-Expires=60",
            f"https://b.s3.amazonaws.com/o?X-Amz-Credential={MARKER}&X-Amz-Signature={MARKER}&X-Amz-Expires=60",
        ),
        ("https://e.org/f?sig=abc;sp=r", f"https://e.org/f?sig={MARKER};sp=r"),
        ("https://e.org/cb#access_token=t&state=1", f"https://e.org/cb#access_token={MARKER}&state=1"),
        (
            "https://e.org/f?jsessionid=9&PHPSESSID=8",
            f"https://e.org/f?jsessionid={MARKER}&PHPSESSID={MARKER}",
        ),
        ("https://e.org/f?pwd=1&passwd=2", f"https://e.org/f?pwd={MARKER}&passwd={MARKER}"),
        (
            "https://e.org/f?auth=1&authorization=Bearer%20x",
            f"https://e.org/f?auth={MARKER}&authorization={MARKER}",
        ),
        ("https://e.org/f?access%5Ftoken=x", f"https://e.org/f?access%5Ftoken={MARKER}"),
        ("https://e.org/f?oauth_token=x&session=2", f"https://e.org/f?oauth_token={MARKER}&session={MARKER}"),
        # Credentials in the path: webhooks, a Telegram bot, a JSON Web Token, a segment
        # after one named as a credential.
        (
            "https://hooks.slack.com/services/T000/B000/XXXXsecret",
            f"https://hooks.slack.com/services/{MARKER}",
        ),
        (
            "https://discord.com/api/webhooks/1234567/tok-EN_x?wait=true",
            f"https://discord.com/api/webhooks/1234567/{MARKER}?wait=true",
        ),
        (
            "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getUpdates",
            f"https://api.telegram.org/bot123456789:{MARKER}/getUpdates",
        ),
        (
            "https://e.org/a/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmN/feed",
            f"https://e.org/a/{MARKER}/feed",
        ),
        (
            "https://e.org/feeds/token/9f8e7d6c5b4a39281706/rss.xml",
            f"https://e.org/feeds/token/{MARKER}/rss.xml",
        ),
        ("https://u:p@e.org/API_KEY/Zq5f8e7d6c5b4a3928", f"https://{MARKER}@e.org/API_KEY/{MARKER}"),
        # Discord's versioned path, a host written with its final dot, a doubled slash, a
        # segment named access-token; a bot token after /token/ is redacted once, not twice.
        (
            "https://discord.com/api/v10/webhooks/1234567/tok-EN_x",
            f"https://discord.com/api/v10/webhooks/1234567/{MARKER}",
        ),
        ("https://hooks.slack.com./services/T0/B0/secret", f"https://hooks.slack.com./services/{MARKER}"),
        ("https://hooks.slack.com//services/T0/B0/secret", f"https://hooks.slack.com//services/{MARKER}"),
        ("https://e.org/access-token/9f8e7d6c5b4a39281706", f"https://e.org/access-token/{MARKER}"),
        (
            "https://e.org/token/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            f"https://e.org/token/bot123456789:{MARKER}",
        ),
    ],
)
def test_credentials_are_replaced(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://tass.ru/rss/v2.xml",
        "https://e.org/search?author=putin&keyword=gas&monkey=1&turkey=2&page=3",
        "https://e.org/a?b=&token",  # no value to hide
        "https://e.org/#section-2",
        "https://e.org/path/with@sign?x=1",  # an @ in the path is not userinfo
        "https://[2001:db8::1]:8080/feed?lang=zh",
        "mailto:someone@example.org",
        "not a url at all",
        "",
        "https://e.org/?",
        # Article paths with slugs and ids that are no credentials.
        "https://news.example.org/key-issues/2024/putin-xi-summit-9f8e7d6c5b4a3928",
        "https://e.org/key/putin-xi-summit-talks",
        "https://e.org/key/putin-xi-summit-talks-2024",
        "https://news.example.org/auth/2024-05-01-minister-resigns-over-scandal",
        "https://news.example.org/news/token/solana-sol-price-jumps-15pct-2024",
        "https://etherscan.io/token/0xdac17f958d2ee523a2206206994597c13d831ec7",
        "https://e.org/token/short1",
        "https://e.org/bot123/status",
        "https://hooks.example.org/services/T000/B000/X",
    ],
)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("Access_Token", True),
        ("accesstoken", True),
        ("refreshToken", True),
        ("client_secret", True),
        ("x-amz-security-token", True),
        ("subscriptionKey", True),
        ("api_key", True),
        ("SessionId", True),
        ("author", False),
        ("keyword", False),
        ("monkey", False),
        ("passage", False),
        ("signal", False),
        ("utm_source", False),
        ("id", False),
    ],
)
def test_secret_names_are_words_not_substrings(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_text_with_urls_slack_tokens_and_webhooks() -> None:
    line = (
        'HTTP Request: GET http://bob:hunter2@[::1]:8080/feed?access_token=tok42 "HTTP/1.1 500" '
        "(see https://e.org/p?sig=ab)cd&x=1) token xoxb-1111-2222-abcdef via "
        "https://hooks.slack.com/services/T000/B000/whsecret; query ?password=pw9"
    )
    redacted = redact_text(line)
    for secret in ("bob", "hunter2", "tok42", "ab)cd", "xoxb-1111", "whsecret", "pw9"):
        assert secret not in redacted
    assert "[::1]:8080/feed" in redacted
    assert '"HTTP/1.1 500"' in redacted
    assert redact_text(redacted) == redacted


# --- logging ----------------------------------------------------------------------------


def test_the_filter_redacts_message_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.redaction.filter")
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactingFilter())
    try:
        raise ValueError("could not fetch http://u:secretpw@e.org/f?token=tok77")
    except ValueError:
        logger.exception("feed %s failed", "https://e.org/f?api_key=key55")
    record = caplog.records[-1]
    assert record.getMessage() == f"feed https://e.org/f?api_key={MARKER} failed"
    assert record.exc_info is None
    assert record.exc_text is not None
    assert "ValueError" in record.exc_text
    for secret in ("secretpw", "tok77", "key55"):
        assert secret not in caplog.text


def test_install_adds_one_filter_to_handlers_and_third_party_loggers() -> None:
    handler = logging.StreamHandler()
    install_log_redaction([handler])
    install_log_redaction([handler])
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    for name in ("httpx", "httpcore.http11"):
        assert sum(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters) == 1


# --- properties -------------------------------------------------------------------------
# No deadline on the examples: timing is not what these properties are about.

# Secrets start with "Zq", which no other generated part can contain (hosts, paths and
# plain values are lower case), so finding the secret in the output means it leaked.
SECRET_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=20
).map(lambda tail: "Zq" + tail)
LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
HOSTS = st.lists(st.text(alphabet=LOWER, min_size=1, max_size=12), min_size=1, max_size=3).map(
    lambda labels: ".".join([*labels, "org"])
)
PATHS = st.lists(st.text(alphabet=LOWER + "-._~@:", max_size=10), max_size=4).map(
    lambda segments: "/" + "/".join(segments)
)
SECRET_NAMES_ = st.sampled_from(
    ["token", "access_token", "api_key", "apikey", "key", "secret", "client_secret", "password",
     "passwd", "pwd", "sig", "signature", "auth", "authorization", "session", "sessionid",
     "credential", "X-Amz-Signature", "X-Amz-Credential", "accessToken", "AUTH_TOKEN"]
)  # fmt: skip
PLAIN_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda name: not is_secret_name(name)
)
PLAIN_VALUES = st.text(alphabet=LOWER + "-._~%+", max_size=12)


@st.composite
def urls_with_secrets(draw: st.DrawFn) -> tuple[str, list[str], str, str, str]:
    """A URL with credentials in userinfo and/or parameters: (url, secrets, scheme, host, path)."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(HOSTS)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    path = draw(PATHS)
    secrets: list[str] = []
    userinfo = ""
    if draw(st.booleans()):
        user, password = draw(SECRET_TEXT), draw(st.one_of(st.none(), SECRET_TEXT))
        secrets += [user] + ([password] if password else [])
        userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    params = []
    for _ in range(draw(st.integers(0 if secrets else 1, 4))):
        if draw(st.booleans()) or not secrets:
            value = draw(SECRET_TEXT)
            secrets.append(value)
            params.append(f"{draw(SECRET_NAMES_)}={quote(value, safe='')}")
        if draw(st.booleans()):
            params.append(f"{draw(PLAIN_NAMES)}={draw(PLAIN_VALUES)}")
    query = ("?" + draw(st.sampled_from(["&", ";"])).join(params)) if params else ""
    authority = userinfo + host + (f":{port}" if port else "")
    return f"{scheme}://{authority}{path}{query}", secrets, scheme, host, path


@settings(deadline=None)
@given(urls_with_secrets())
@example(("https://u:ZqA@e.org/f?token=ZqB", ["ZqA", "ZqB"], "https", "e.org", "/f"))
def test_no_secret_survives_and_the_rest_is_kept(case: tuple[str, list[str], str, str, str]) -> None:
    url, secrets, scheme, host, path = case
    redacted = redact_url(url)
    for secret in secrets:
        assert secret not in redacted
        assert quote(secret, safe="") not in redacted
    parts = urlsplit(redacted)
    assert parts.scheme == scheme
    assert parts.hostname == host
    assert parts.path == path
    assert parts.port == urlsplit(url).port
    assert redact_url(redacted) == redacted


@settings(deadline=None)
@given(urls_with_secrets(), st.text(max_size=20), st.text(max_size=20))
def test_urls_inside_text_are_redacted(
    case: tuple[str, list[str], str, str, str], before: str, after: str
) -> None:
    url, secrets, *_ = case
    redacted = redact_text(f"{before} {url} {after}")
    for secret in secrets:
        assert quote(secret, safe="") not in redacted
    assert redact_text(redacted) == redacted


@settings(deadline=None)
@given(
    st.sampled_from(["http", "https"]),
    HOSTS,
    PATHS,
    st.lists(st.tuples(PLAIN_NAMES, PLAIN_VALUES), max_size=4),
    st.one_of(st.none(), st.text(alphabet=LOWER + "-", max_size=10)),
)
def test_urls_without_secrets_come_back_unchanged(
    scheme: str, host: str, path: str, params: list[tuple[str, str]], fragment: str | None
) -> None:
    url = f"{scheme}://{host}{path}"
    if params:
        url += "?" + "&".join(f"{name}={value}" for name, value in params)
    if fragment is not None:
        url += "#" + fragment
    assert redact_url(url) == url


@settings(deadline=None)
@given(st.text())
def test_any_text_is_redacted_idempotently_without_errors(text: str) -> None:
    once = redact_url(text)
    assert redact_url(once) == once
    once_text = redact_text(text)
    assert redact_text(once_text) == once_text

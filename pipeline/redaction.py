"""One redaction rule for URLs, applied wherever a URL is shown, logged or stored in an error.

A URL can carry a credential in three places: the userinfo (``https://user:password@host/``),
parameters of the query or fragment whose name says they hold a secret
(``?access_token=…``, ``&X-Amz-Signature=…``, ``#id_token=…``), and the path, where some
services put their tokens (webhooks, Telegram bots, a segment after ``/token/``). :func:`redact_url` replaces
those values with :data:`MARKER` and leaves every other character as it was, so a URL
without credentials comes back unchanged and redacting twice changes nothing.

A parameter name is secret when one of its words (split at punctuation and camelCase
humps: ``client_secret``, ``x-api-key``, ``accessToken``) is a secret word, or when the name
run together ends with one (``accesstoken``, ``apisecret``), or is a known compound
(``apikey``, ``jsessionid``). Words, not substrings: ``author`` and ``keyword`` are kept.

The feed's real URL is stored and used to poll; only what is displayed goes through here.
:class:`RedactingFilter` applies :func:`redact_text` to log records, including those of
third-party libraries (httpx logs every request line with its URL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus

MARKER = "REDACTED"

# Parameter-name words that mean the value is a credential.
SECRET_WORDS = frozenset(
    {
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "key",
        "keys",
        "apikey",
        "sig",
        "signature",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "sessid",
        "credential",
        "credentials",
        "jwt",
        "bearer",
        "otp",
        "hmac",
    }
)
# Names run together (case and punctuation removed) that end with one of these are secret.
SECRET_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "credentials",
    "apikey",
    "sessionid",
)
# Compounds whose last word is too common to match on its own ("monkey", "turkey").
SECRET_NAMES = frozenset(
    {
        "accesskey",
        "appkey",
        "authkey",
        "clientkey",
        "consumerkey",
        "encryptionkey",
        "jsessionid",
        "licensekey",
        "masterkey",
        "phpsessid",
        "privatekey",
        "secretkey",
        "sessionkey",
        "sharedkey",
        "signingkey",
        "subscriptionkey",
        "authtoken",
    }
)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_CAMEL_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_PARAM_SEPARATORS = re.compile(r"([&;])")
# A URL inside free text: a scheme and "//", up to whitespace or a character that
# usually ends a quoted or bracketed URL in messages (brackets stay: IPv6 hosts).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`{}|\\^()]+")
# A parameter anywhere in text, for what the URL pattern cut short (a URL in parentheses
# with a ")" in a value, a query quoted on its own).
# The value is taken whole and its trailing punctuation (a sentence's stop after the URL)
# given back in the replacement: a lazy value before a lookahead for that punctuation tried
# every length of a value made of dots, quadratic in it.
_PARAM_IN_TEXT = re.compile(r"(?<=[?&;#])([^\s=&;#?\"'<>]+)=([^\s&;#\"'<>]+)")
_TRAILING_PUNCTUATION = ".,:!?"
# Slack credentials that may turn up in text without a URL around them.
_SLACK_TOKEN = re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+")
# (A webhook URL with its scheme was already redacted by redact_url, to the same shape:
# its kind kept, "hooks.slack.com/services/REDACTED".)
_SLACK_WEBHOOK = re.compile(
    r"(hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/)(?!" + MARKER + r"(?![\w/-]))[^\s\"'<>]+"
)


# Credentials in a URL's path. Webhooks: by host, the path up to the secret (from there
# on, all is replaced).
_WEBHOOK_PATHS: dict[str, re.Pattern[str]] = {
    **dict.fromkeys(
        ("hooks.slack.com", "hooks.slack-gov.com"), re.compile(r"/*(?:services|workflows|triggers)/")
    ),
    **dict.fromkeys(
        ("discord.com", "discordapp.com", "canary.discord.com", "ptb.discord.com"),
        re.compile(r"/*api/(?:v\d+/)?webhooks/\d+/"),
    ),
}
_TELEGRAM_BOT = re.compile(r"(bot\d{6,}:)[A-Za-z0-9_-]{30,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# A path segment named like these is followed by the credential ("/token/…").
_SECRET_SEGMENTS = frozenset(
    {"token", "tokens", "secret", "apikey", "api_key", "api-key", "auth", "key", "password"}
    | {f"{prefix}{joint}token" for prefix in ("access", "api", "auth") for joint in ("", "_", "-")}
)
# ... unless the segment is a slug of words ("putin-xi-summit-talks-2024") or a public
# blockchain address or hash ("0xdac17f…"), which news URLs carry.
_SLUG = re.compile(r"(?:^|-)[^\W\d_]{3,}-(?:.*-)?[^\W\d_]{3,}(?:-|$)")
_HEX_ADDRESS = re.compile(r"0x(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")


def is_secret_name(name: str) -> bool:
    """True when a query parameter called ``name`` looks like it holds a credential."""
    decoded = unquote_plus(name).strip()
    words = [w.lower() for w in _CAMEL_WORDS.findall(decoded)]
    if any(word in SECRET_WORDS for word in words):
        return True
    squashed = "".join(words)
    return squashed in SECRET_NAMES or squashed.endswith(SECRET_SUFFIXES)


def redact_url(url: str) -> str:
    """``url`` with its userinfo, secret-looking parameter values and path credentials
    (:func:`_redact_path`) replaced by :data:`MARKER`.

    Everything else (scheme, host, port, the rest of the path, other parameters,
    separators) is kept character for character. Never raises: text that is not a URL is
    returned as it is.
    """
    rest, hash_sign, fragment = url.partition("#")
    head, question_mark, query = rest.partition("?")
    result = _redact_path(_redact_userinfo(head))
    if question_mark:
        result += "?" + _redact_params(query)
    if hash_sign:
        # OAuth's implicit flow puts tokens in the fragment (#access_token=…).
        result += "#" + (_redact_params(fragment) if "=" in fragment else fragment)
    return result


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`) and Slack tokens and
    webhook paths masked. For log lines and error messages."""
    if "://" in text:
        text = _URL_IN_TEXT.sub(_redact_url_match, text)
    if "=" in text:
        text = _PARAM_IN_TEXT.sub(_redact_param_match, text)
    if "xox" in text:
        text = _SLACK_TOKEN.sub(MARKER, text)
    if "hooks.slack" in text:
        text = _SLACK_WEBHOOK.sub(lambda match: f"{match.group(1)}{MARKER}", text)
    return text


def redact_optional(url: str | None) -> str | None:
    """:func:`redact_url` that passes ``None`` through (for optional columns and fields)."""
    return None if url is None else redact_url(url)


def _redact_userinfo(head: str) -> str:
    scheme = _SCHEME.match(head)
    start = scheme.end() if scheme else 0
    if not head.startswith("//", start):
        return head
    authority_start = start + 2
    slash = head.find("/", authority_start)
    authority_end = len(head) if slash < 0 else slash
    authority = head[authority_start:authority_end]
    at = authority.rfind("@")
    if at <= 0 or authority[:at] == MARKER:
        return head
    return head[:authority_start] + MARKER + authority[at:] + head[authority_end:]


def _redact_path(head: str) -> str:
    """``head`` (a URL before its query) with the credentials some URLs carry in their path:

    * a Slack webhook's or a Discord webhook's token (``hooks.slack.com/services/…``,
      ``discord.com/api/webhooks/ID/…``);
    * a Telegram bot token (``/bot123456:AA…/``) or a JSON Web Token as a segment;
    * the segment after one named as a credential (``/token/…``, ``/api_key/…``) when it
      looks like one: at least 16 characters, with letters and digits, and neither a slug
      of words nor a public blockchain address.
    """
    scheme = _SCHEME.match(head)
    start = scheme.end() if scheme else 0
    if not head.startswith("//", start):
        return head
    slash = head.find("/", start + 2)
    if slash < 0:
        return head
    host = head[start + 2 : slash].rpartition("@")[2].split(":")[0].lower().rstrip(".")
    path = head[slash + 1 :]
    webhook = _WEBHOOK_PATHS.get(host)
    hook = webhook.match(path) if webhook is not None else None
    if hook is not None and hook.end() < len(path) and path[hook.end() :] != MARKER:
        return head[: slash + 1] + path[: hook.end()] + MARKER
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if MARKER in segment:
            continue
        bot = _TELEGRAM_BOT.fullmatch(segment)
        if bot:
            segments[index] = bot.group(1) + MARKER
        elif _JWT.fullmatch(segment) or (index and _looks_secret(segments[index - 1], segment)):
            segments[index] = MARKER
    return head[: slash + 1] + "/".join(segments)


def _looks_secret(name: str, segment: str) -> bool:
    """Whether ``segment``, after a segment called ``name``, looks like a credential."""
    return (
        name.lower() in _SECRET_SEGMENTS
        and len(segment) >= 16
        and _LETTER.search(segment) is not None
        and _DIGIT.search(segment) is not None
        and not _SLUG.search(segment)
        and not _HEX_ADDRESS.fullmatch(segment)
    )


def _redact_url_match(match: re.Match[str]) -> str:
    # Punctuation that ends a sentence ("cannot fetch URL: timeout") is not part of the URL.
    url = match.group(0)
    kept = url.rstrip(".,:;!?")
    return redact_url(kept) + url[len(kept) :]


def _redact_param_match(match: re.Match[str]) -> str:
    name, whole = match.group(1), match.group(2)
    value = whole.rstrip(_TRAILING_PUNCTUATION) or whole[:1]
    if value == MARKER or not is_secret_name(name):
        return match.group(0)
    return f"{name}={MARKER}{whole[len(value) :]}"


def _redact_params(params: str) -> str:
    pieces = _PARAM_SEPARATORS.split(params)
    for index in range(0, len(pieces), 2):  # odd indexes hold the separators
        name, equals, value = pieces[index].partition("=")
        if equals and value and value != MARKER and is_secret_name(name):
            pieces[index] = f"{name}={MARKER}"
    return "".join(pieces)


# Logging ----------------------------------------------------------------------------------

# Loggers of libraries that log URLs: httpx writes each request line with its URL, and
# httpcore's trace loggers log connection details. A filter on a logger only sees the
# records created on that very logger, so each name is listed.
THIRD_PARTY_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


class RedactingFilter(logging.Filter):
    """Redacts URLs and Slack credentials in a log record's message, traceback and stack.

    The record is changed in place, so every handler that sees it afterwards gets the
    redacted text. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Apply :func:`redact_text` to ``record`` (message with its arguments, traceback, stack)."""
    if getattr(record, "summitwatch_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed format string is the caller's bug; still redact what is there
        message = str(record.msg)
    redacted = redact_text(message)
    if redacted != message or record.args:
        record.msg, record.args = redacted, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        exc_text = redact_text(record.exc_text)
        if exc_text != record.exc_text:
            # The formatted traceback is what handlers print; the exception object itself
            # may hold the URL, so it is dropped once its text had to be changed.
            record.exc_text, record.exc_info = exc_text, None
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    record.summitwatch_redacted = True


def install_log_redaction(handlers: Iterable[logging.Handler] = ()) -> None:
    """Add a :class:`RedactingFilter` to ``handlers`` and to the third-party loggers that log
    URLs (once each: calling this again adds nothing)."""
    targets: list[logging.Filterer] = [*handlers, *(logging.getLogger(n) for n in THIRD_PARTY_LOGGERS)]
    for target in targets:
        if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
            target.addFilter(RedactingFilter())

"""The Slack seam: the only module that talks to Slack (slack-sdk underneath).

Callers own the clients: build one per task with :func:`make_web_client` (bot token,
``chat.postMessage``) or :func:`make_webhook_client` (incoming webhook), or let
:func:`slack_target` pick from the settings, and pass it in.

Delivery is built for an outbox that puts each digest part in the channel exactly once:

* :func:`post_messages` posts ``messages[already_sent:]``, threading follow-ups under the
  parent's ``ts``. ``on_posting(index, at)`` runs before a part's first try (the outbox
  records that a post is in flight) and ``on_sent(index, ts)`` after Slack confirmed it
  (the outbox commits it). A retried task passes the stored ``already_sent``,
  ``thread_ts`` and ``unconfirmed_since`` and never posts a confirmed part again.
* Every part carries message metadata (event type ``summitwatch_digest``; digest key,
  destination, part number), so a part can be recognised in the channel.
* When the answer to a post is lost (a 5xx from a gateway, a timeout, a connection closed
  after the request went out), Slack may or may not have the message. It is never posted
  again blindly: with ``read_back`` the part is first looked for in the channel
  (``conversations.history`` for the parent, ``conversations.replies`` for a follow-up,
  bounded by ``oldest`` = the first try minus a margin, page by page) and only posted
  again if it is not there. The same happens when a previous run ended between a post
  and its confirmation (``unconfirmed_since``).
* Reading needs the ``channels:history`` (public channel) or ``groups:history`` (private
  channel) scope. :meth:`SlackTarget.delivery_guarantee` checks the token's scopes once
  (the ``x-oauth-scopes`` header of ``auth.test``) and says which are missing. Without
  them, and always with incoming webhooks (which cannot read), a part whose answer was
  lost is posted again: delivery is at-least-once in that window, and each such case is
  logged with the digest key and part.
* History is read by channel ID (``conversations.history`` does not take names): a
  channel set by name (``#news``) is looked up once with ``conversations.list``
  (``channels:read`` for a public channel, ``groups:read`` for a private one); when it
  cannot be, delivery is at-least-once as above, and the warning says so.
* slack-sdk's retry handlers retry 429 (nothing was posted) after ``Retry-After``, and
  connection failures only when the request cannot have reached Slack. Server errors
  are retried by slack-sdk only for methods that read; a post's server error is handled
  here as described above.
* Errors are :class:`SlackDeliveryError`: ``permanent`` when Slack answered with an error
  code that retrying cannot change (bad token, unknown channel, invalid blocks),
  transient otherwise (rate limits, server errors, connection failures, and any answer
  that is not Slack's JSON: a proxy's page, a redirect, a wrong ``SLACK_API_URL``);
  ``refused_content`` only when Slack refused the message itself (:data:`CONTENT_ERRORS`),
  the one case in which the digest, not the settings, is at fault; ``in_doubt`` when
  the part being delivered may already be in the channel.

Secrets never reach logs or exception messages: slack-sdk logs through a logger that
redacts the token and webhook URL, and every message raised here is redacted too.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import ipaddress
import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from typing import Any, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import (
    HTTPHandler,
    HTTPRedirectHandler,
    HTTPSHandler,
    OpenerDirector,
    ProxyHandler,
    Request,
    build_opener,
)

from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient, WebhookResponse

from pipeline.digest import SlackMessage
from pipeline.errors import ConfigError, SummitwatchError
from pipeline.settings import SLACK_ENV, SlackSettings

logger = logging.getLogger(__name__)

METADATA_EVENT_TYPE = "summitwatch_digest"
REDACTED = "[redacted]"
# slack-sdk's own error lines for what summitwatch handles and logs itself (an answer that
# is not Slack's JSON, a request that failed on the way): lowered to DEBUG, so that the
# log shows one line per case, summitwatch's, at the level it deserves.
HANDLED_SDK_ERRORS = ("Failed to decode Slack API response", "Failed to send a request to Slack API server")
HISTORY_SCOPES = ("channels:history", "groups:history")
# Slack's own signals that a request may succeed later.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Errors after which, in Slack's words, "some aspect of the operation" may have succeeded.
IN_DOUBT_ERRORS = frozenset({"internal_error", "fatal_error"})
# A server's own answer (no Slack error code) that says it does not serve a method: not
# found, method not allowed, not implemented. Other 4xx (a proxy's 401, 403 or 407, a 408)
# may pass: they stop the run, to be tried again.
NOT_SERVED_STATUSES = frozenset({404, 405, 501})
# Errors that mean the Slack settings are wrong (not the digest): fix the configuration,
# the digests wait.
CONFIGURATION_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "team_access_not_granted",
        "ekm_access_denied",
        "org_login_required",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "restricted_action",
        "posting_to_general_channel_denied",
        "invalid_token",
        "no_service",
        "no_service_id",
        "no_team",
        "team_disabled",
        "action_prohibited",
    }
)
# Slack's documented chat.postMessage and incoming-webhook errors about the message itself
# (or its own thread): the same digest is refused again however the settings change, so
# it is quarantined. Every other answer leaves the digest pending for the next run: the
# other documented errors are about the token, the channel or the workspace (an operator
# fixes them: CONFIGURATION_ERRORS), about load (TRANSIENT_ERRORS), or about how the
# request was encoded (invalid_arguments, invalid_form_data, invalid_charset, ...: a proxy
# or the client, not this digest); an unknown code, or an answer that is not Slack's JSON,
# says nothing about the digest at all.
CONTENT_ERRORS = frozenset(
    {
        "msg_too_long",  # the text is over Slack's 40,000 characters
        "msg_blocks_too_long",  # the blocks together are over Slack's total
        "no_text",  # neither text nor blocks
        "invalid_blocks",  # Block Kit refused a block (Slack's `errors` says which)
        "invalid_blocks_format",  # the blocks are not a JSON array of blocks
        "invalid_attachments",
        "too_many_attachments",
        "attachment_payload_limit_exceeded",
        "invalid_metadata_format",  # the part's metadata (digest key, part number)
        "invalid_metadata_schema",
        "metadata_too_large",
        "invalid_payload",  # incoming webhooks: the body is not a message
        # The digest's own thread: its parent was deleted, or cannot have replies.
        "thread_not_found",
        "cannot_reply_to_message",
    }
)
# What a server answers when it will not take a part's message metadata (well formed and
# small, so a Slack-like server without metadata, not the digest): the part is posted
# again without it, and looked for by its text if its answer is lost.
METADATA_REFUSALS = frozenset({"invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large"})
# The requests that carry a digest part (only their refusals can be the digest's fault).
POSTING = frozenset({"chat.postMessage", "incoming webhook"})
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
# Methods without side effects: slack-sdk may repeat them after a server error.
READ_ONLY_METHODS = frozenset(
    {"auth.test", "conversations.history", "conversations.replies", "conversations.list"}
)
# The channel is searched from the first try minus this margin (clocks disagree a little).
READ_BACK_MARGIN = timedelta(minutes=5)
READ_BACK_PAGE_SIZE = 200
# A digest that Slack rate-limited is deferred by its Retry-After, but never by more than
# this: a Retry-After of days or years (a misbehaving server or proxy) must not stop the
# digests for that long. Slack's own limits reset within a minute.
LONGEST_DEFERRAL = timedelta(hours=1)
# The seconds taken for a 429 whose Retry-After is missing or unreadable (not a number of
# seconds or an HTTP date, or not a finite number).
DEFAULT_RETRY_AFTER = 1.0
# Runs that may each post a part again after its answer was lost when the channel cannot be
# looked at (an incoming webhook, a bot token without the history scope): at the next, the
# digest is quarantined for the operator instead.
UNCONFIRMED_RUNS = 3
READ_BACK_PAGES = 25
# A channel name is looked up among at most this many channels (pages of 1,000).
CHANNEL_LIST_PAGE_SIZE = 1000
CHANNEL_LIST_PAGES = 25
# The scope conversations.list needs for each kind of channel.
LIST_SCOPES = {"public_channel": "channels:read", "private_channel": "groups:read"}
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]*")
# slack-sdk's stand-in for the error code of an answer that is not JSON.
_NOT_JSON = "Received a response in a non-JSON format:"
UNCONFIRMED = "a previous attempt posted it and never got Slack's answer"
WEBHOOK_CANNOT_READ = "an incoming webhook cannot read the channel"


class SlackDeliveryError(SummitwatchError):
    """Slack did not take a message.

    ``permanent``: Slack answered with an error code that retrying the same request cannot
    change (bad token, unknown channel, invalid blocks); otherwise the failure is
    transient (rate limit or server errors that outlasted the retries, connection
    failures, an answer that is not Slack's). ``refused_content``: Slack refused the
    posted message itself (:data:`CONTENT_ERRORS`): only then is the digest at fault and
    quarantined; after any other failure it stays pending. ``error_code`` is Slack's
    error string when there is one; ``delivered`` counts the messages of the digest
    delivered before the failure. ``in_doubt``: the part being delivered may be in the
    channel already (its answer was lost and it could not be looked up), so the next
    attempt must look before posting it. ``retry_after``: the seconds to wait before the
    next try (a 429's ``Retry-After``, at most :data:`LONGEST_DEFERRAL`). ``given_up``: a
    part that could not be looked for in the channel (a webhook's, or one posted with a
    token that cannot read the history) stayed unconfirmed through
    :data:`UNCONFIRMED_RUNS` runs and is not posted again; the digest is quarantined for
    the operator to check the channel.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        error_code: str | None = None,
        delivered: int = 0,
        thread_ts: str | None = None,
        in_doubt: bool = False,
        refused_content: bool = False,
        retry_after: float | None = None,
        given_up: bool = False,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.error_code = error_code
        self.delivered = delivered
        self.thread_ts = thread_ts
        self.in_doubt = in_doubt
        self.refused_content = refused_content
        self.retry_after = None if retry_after is None else _deferral(retry_after)
        self.given_up = given_up
        # The HTTP status of the answer, when there was one.
        self.http_status = http_status
        # A part that this run posted and may be in the channel (its answer lost), where it
        # cannot be looked for (an incoming webhook, a token without the history scope):
        # the runs that did so are counted (``digests.unconfirmed_runs``).
        self.posted_in_doubt = False

    @property
    def bad_configuration(self) -> bool:
        """True when the Slack settings (token, channel, webhook) are at fault, not the digest."""
        return self.error_code in CONFIGURATION_ERRORS

    @property
    def not_served(self) -> bool:
        """True when the method is not served where it was asked: an answer of the server's
        own (no Slack error code) of 404, 405 or 501 (a Slack-like server without the
        method), or Slack's own ``unknown_method``; not a failure for now."""
        if self.error_code == "unknown_method":
            return True
        return self.error_code is None and self.http_status in NOT_SERVED_STATUSES


@dataclass(frozen=True)
class DeliveryResult:
    """What a delivery achieved: ``sent`` messages of the digest are now in Slack.

    ``thread_ts`` is the parent's ``ts`` (``None`` for webhooks, which cannot thread);
    ``timestamps`` are the ``ts`` of the messages this call posted or found;
    ``recovered`` are the parts found in the channel instead of being posted again.
    """

    sent: int
    thread_ts: str | None
    timestamps: tuple[str, ...] = ()
    recovered: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReadBack:
    """Whether delivery can look in the channel for a part whose answer was lost.

    Without it delivery is at-least-once in that window; ``missing`` names the scopes
    that would make it exactly once and ``reason`` says why it is unavailable.
    ``channel_id`` is the channel's ID, which the history is read by.
    """

    available: bool
    missing: tuple[str, ...] = ()
    reason: str = ""
    channel_id: str | None = None
    # What would make it exactly once, when neither a scope nor the channel's ID would.
    fix: str = ""


OnSent = Callable[[int, str], None]
OnPosting = Callable[[int, datetime], None]


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


class _RefusedRedirect(HTTPRedirectHandler):
    """Never follow a redirect: the 3xx is the answer.

    urllib carries the request's headers, the bot token's ``Authorization`` among them, to
    wherever a redirect points (another host, a sign-in page), and turns a redirected POST
    into a GET without its body. Slack's API does not redirect; a redirect comes from a
    proxy or a wrong ``SLACK_API_URL``, and is reported as not Slack's answer.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Deadline:
    """Shuts a request's connections down once ``seconds`` have passed since it began.

    urllib's timeout bounds each read of the socket, not the answer: one that arrives a
    byte at a time, each within the timeout, would hold a run (and the delivery lock) as
    long as the server likes. Cut, the request fails like any answer lost on the way (the
    part is looked for in the channel before it is posted again).
    """

    def __init__(self, seconds: float) -> None:
        self._sockets: list[socket.socket] = []
        self._expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self._expired
        if expired:
            _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # (closed already)
        sock.shutdown(socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], deadline: _Deadline) -> Any:
    """``base``, its socket watched by ``deadline`` once connected."""

    class Connection(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Connection


class _HTTPHandler(HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: Request) -> Any:
        return self.do_open(_watched(http.client.HTTPConnection, self._deadline), req)


class _HTTPSHandler(HTTPSHandler):
    def __init__(self, deadline: _Deadline, context: Any) -> None:
        super().__init__(context=context)
        self._deadline = deadline

    def https_open(self, req: Request) -> Any:
        return self.do_open(
            _watched(http.client.HTTPSConnection, self._deadline),
            req,
            context=self._context,  # type: ignore[attr-defined]
        )


def _opener(proxy: str | None, ssl: Any, deadline: _Deadline) -> OpenerDirector:
    handlers: list[Any] = [_RefusedRedirect(), _HTTPHandler(deadline), _HTTPSHandler(deadline, ssl)]
    if proxy:
        handlers.append(ProxyHandler({"http": proxy, "https": proxy}))
    return build_opener(*handlers)


def _answer(client: WebClient | WebhookClient, url: str, req: Request) -> tuple[int, Any, str]:
    """Status, headers and body of ``req`` sent by ``client`` (its proxy, TLS context and
    timeout), all of it within twice the timeout, no redirect followed."""
    # urllib also opens file:// and ftp:// URLs; only HTTP reaches Slack.
    if not url.lower().startswith(("http://", "https://")):
        raise SlackClientError(f"not an http(s) URL: {url.split(':', 1)[0]}:…")
    deadline = _Deadline(2 * client.timeout)
    try:
        with _opener(client.proxy, client.ssl, deadline).open(req, timeout=client.timeout) as response:
            charset = response.headers.get_content_charset() or "utf-8"
            body = response.read().decode(charset, errors="replace")
            return response.status, response.headers, body
    except HTTPError as error:
        # An answer that is not a 2xx (a 429, a 5xx, a redirect refused) comes as an
        # error whose body slack-sdk reads afterwards: read here, within the deadline.
        with error:
            held = error.read()
        raise HTTPError(error.url, error.code, error.msg, error.headers, io.BytesIO(held)) from None
    finally:
        deadline.cancel()


class _WebClient(WebClient):
    """slack-sdk's client, sending each request through :func:`_answer`."""

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        status, headers, body = _answer(self, url, req)
        return {"status": status, "headers": headers, "body": body}


class _WebhookClient(WebhookClient):
    """slack-sdk's webhook client, sending each request through :func:`_answer`."""

    def _perform_http_request_internal(self, url: str, req: Request) -> WebhookResponse:
        status, headers, body = _answer(self, url, req)
        return WebhookResponse(url=url, status_code=status, body=body, headers=headers)


def make_web_client(
    token: str | SecretStr,
    api_url: str | None = None,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
    names: SettingNames | None = None,
) -> WebClient:
    """A Web API client with bounded retries for 429, pre-send connection errors and
    (for methods that only read) 5xx.

    ``api_url`` overrides ``https://slack.com/api/`` (``SLACK_API_URL``: GovSlack, tests).
    A ``Retry-After`` longer than ``max_retry_after`` seconds is not waited for: the call
    fails as transient and the digest waits for the next run instead of blocking a worker.
    ``names``: where the settings came from, for the errors (:func:`setting_name`).
    """
    secret = _reveal(token)
    if not secret:
        raise ConfigError(f"{setting_name('bot_token', names)} is empty")
    base_url = _api_base(api_url, names)
    return _WebClient(
        token=secret,
        base_url=base_url,
        timeout=int(max(1, round(timeout))),
        logger=_RedactingLogger([secret]),
        retry_handlers=_retry_handlers(max_retries, backoff_factor, max_retry_after),
    )


def make_webhook_client(
    url: str | SecretStr,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
    names: SettingNames | None = None,
) -> WebhookClient:
    """An incoming-webhook client with the same retry policy as :func:`make_web_client`."""
    secret = _reveal(url)
    parts = urlsplit(secret)
    # Plain http only to this machine (a local relay, tests): elsewhere the path, which is
    # the credential, and the digest would cross the network in clear.
    if not parts.netloc or not (
        parts.scheme == "https" or (parts.scheme == "http" and _on_this_machine(parts))
    ):
        # Never echo the URL: the path is the credential.
        raise ConfigError(
            f"{setting_name('webhook_url', names)} must be an https:// URL "
            "(http:// only to this machine: localhost, 127.0.0.1, ::1)"
        )
    return _WebhookClient(
        url=secret,
        timeout=int(max(1, round(timeout))),
        logger=_RedactingLogger([secret, parts.path]),
        retry_handlers=_retry_handlers(max_retries, backoff_factor, max_retry_after),
    )


def check_auth(client: WebClient) -> dict[str, str]:
    """``auth.test``: who the token belongs to. Raises :class:`SlackDeliveryError`."""
    try:
        response = client.auth_test()
    except Exception as exc:
        raise _delivery_error(exc, client, "auth.test", delivered=0, thread_ts=None) from None
    return {k: str(response.get(k, "")) for k in ("team", "team_id", "user", "user_id", "bot_id", "url")}


def check_read_back(client: WebClient, channel: str) -> ReadBack:
    """Can this token read ``channel``'s history? From the scopes ``auth.test`` reports in
    its ``x-oauth-scopes`` header; when only one history scope is granted (which one is
    needed depends on the channel being public or private) or the header is absent, one
    ``conversations.history`` call settles it. A channel given by name is read by its ID,
    looked up with :func:`find_channel_id`. Raises :class:`SlackDeliveryError` when
    Slack cannot be asked (down, bad token)."""
    try:
        granted = _granted_scopes(client.auth_test().headers)
    except Exception as exc:
        error = _delivery_error(exc, client, "auth.test", delivered=0, thread_ts=None)
        if not error.not_served:
            raise error from None
        # A Slack-like server without auth.test: the token's scopes are not known, so one
        # history call tells whether the channel can be read, and a bad token is told by
        # the post itself (rather than no digest ever going out).
        logger.info("%s: the token's scopes are not checked", _not_served("auth.test", error))
        granted = None
    have = [scope for scope in HISTORY_SCOPES if granted is None or scope in granted]
    if granted is not None and not have:
        listed = ", ".join(sorted(granted)) or "none"
        return ReadBack(False, HISTORY_SCOPES, f"the bot token's scopes ({listed}) include no history scope")
    try:
        channel_id = find_channel_id(client, channel, scopes=granted)
    except SlackDeliveryError as exc:
        if not (exc.permanent or exc.not_served):
            raise
        return ReadBack(
            False,
            tuple(LIST_SCOPES.values()) if exc.error_code == "missing_scope" else (),
            f"SLACK_CHANNEL names {channel}, the history is read by channel ID, and the bot token "
            f"cannot look the ID up ({_not_served('conversations.list', exc) if exc.not_served else exc})",
            fix=_SERVE_HISTORY if exc.not_served else "",
        )
    if channel_id is None:
        return ReadBack(False, (), f"no channel the bot token can list is named {channel}")
    if len(have) == len(HISTORY_SCOPES) and granted is not None:
        return ReadBack(True, channel_id=channel_id)
    try:
        client.conversations_history(channel=channel_id, limit=1)
    except SlackApiError as exc:
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        code = str(data.get("error") or "")
        if code == "missing_scope":
            needed = str(data.get("needed") or "channels:history or groups:history")
            return ReadBack(False, tuple(needed.split(",")), f"the bot token lacks {needed} for {channel}")
        error = _delivery_error(exc, client, "conversations.history", delivered=0, thread_ts=None)
        if error.not_served:
            # (A Slack-like server without the method, or a wrong SLACK_API_URL, which the
            # post then tells. The history cannot be read, which is no reason to post nothing.)
            return ReadBack(False, (), _not_served("conversations.history", error), fix=_SERVE_HISTORY)
        if error.permanent:
            return ReadBack(False, (), f"conversations.history on {channel} is refused ({code or error})")
        raise error from None
    except Exception as exc:
        raise _delivery_error(exc, client, "conversations.history", delivered=0, thread_ts=None) from None
    return ReadBack(True, channel_id=channel_id)


def find_channel_id(client: WebClient, channel: str, *, scopes: frozenset[str] | None = None) -> str | None:
    """The ID of ``channel``: itself when it is one, else the channel of that name (with or
    without "#") among those ``conversations.list`` shows the token, page by page; ``None``
    when none is. ``scopes`` (the token's, when known) choose which kinds of channel to
    list. Raises :class:`SlackDeliveryError` when the list cannot be read (``missing_scope``
    without ``channels:read`` or ``groups:read``)."""
    if _CHANNEL_ID.fullmatch(channel):
        return channel
    name = channel.removeprefix("#")
    types = [kind for kind, scope in LIST_SCOPES.items() if scopes is None or scope in scopes]
    if not types:
        raise SlackDeliveryError(
            "conversations.list needs channels:read or groups:read",
            permanent=True,
            error_code="missing_scope",
        )
    arguments: dict[str, Any] = {
        "types": ",".join(types),
        "exclude_archived": True,
        "limit": CHANNEL_LIST_PAGE_SIZE,
    }
    try:
        for _ in range(CHANNEL_LIST_PAGES):
            page = client.conversations_list(**arguments)
            for conversation in page.get("channels") or []:
                if name in (conversation.get("name"), conversation.get("name_normalized")):
                    return str(conversation["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
            arguments["cursor"] = cursor
    except Exception as exc:
        raise _delivery_error(exc, client, "conversations.list", delivered=0, thread_ts=None) from None
    return None


@dataclass
class SlackTarget:
    """Where digests go: the Web API (token + channel, threads) or an incoming webhook.

    ``max_retries`` and ``retry_delay`` bound the tries of a part whose answer is lost;
    ``read_back_delay`` is how long to give Slack before looking for such a part.
    """

    kind: Literal["web_api", "webhook"]
    channel: str | None = None
    web_client: WebClient | None = field(default=None, repr=False)
    webhook_client: WebhookClient | None = field(default=None, repr=False)
    max_retries: int = 3
    retry_delay: float = 0.5
    read_back_delay: float = 2.0
    _read_back: ReadBack | None = field(default=None, init=False, repr=False)
    _channel_ids: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    @property
    def can_thread(self) -> bool:
        """Webhooks cannot thread or report a ``ts``; follow-ups become separate messages."""
        return self.kind == "web_api"

    def delivery_guarantee(self) -> ReadBack:
        """Whether a part whose answer was lost can be looked up before posting it again.

        Checked once per target (the first call asks Slack for the token's scopes) and
        said once in the log: exactly once, or at-least-once and what is missing.
        """
        if self._read_back is None:
            if self.web_client is not None and self.channel:
                read_back = check_read_back(self.web_client, self.channel)
            else:
                read_back = ReadBack(False, (), "incoming webhooks cannot read the channel")
            if read_back.available:
                logger.info(
                    "Slack delivery to %s: a part whose answer is lost is looked up in the channel "
                    "before it is posted again (exactly once)",
                    self.channel,
                )
            else:
                if read_back.fix:
                    fix = read_back.fix
                elif read_back.missing == tuple(LIST_SCOPES.values()):
                    fix = (
                        "grant the bot token channels:read (public channel) or groups:read (private), "
                        "or set SLACK_CHANNEL to the channel's ID"
                    )
                elif read_back.missing:
                    fix = f"grant the bot token {' and '.join(read_back.missing)}"
                elif self.channel and not _CHANNEL_ID.fullmatch(self.channel):
                    fix = "set SLACK_CHANNEL to the channel's ID (C…)"
                else:
                    fix = "use a bot token with channels:history (public) or groups:history (private)"
                logger.warning(
                    "Slack delivery is at-least-once when Slack's answer to a post is lost (a timeout, "
                    "a gateway error): %s, so such a part is posted again and may appear twice; each "
                    "case is logged. For exactly once, %s.",
                    read_back.reason,
                    fix,
                )
            self._read_back = read_back
        return self._read_back

    def channel_id(self, channel: str) -> str | None:
        """The ID of ``channel`` (an ID or a name; :func:`find_channel_id`), asked once."""
        if self.web_client is None:
            raise SlackDeliveryError(f"an incoming webhook cannot look up {channel}", permanent=True)
        if channel not in self._channel_ids:
            self._channel_ids[channel] = find_channel_id(self.web_client, channel)
        return self._channel_ids[channel]

    def same_channel(self, channel: str) -> bool:
        """Whether ``channel`` (an ID or a name) is this target's channel, spelled another way.
        Raises :class:`SlackDeliveryError` when a name cannot be looked up."""
        if not self.channel:
            return False
        if channel == self.channel:
            return True
        mine = self.channel_id(self.channel)
        return mine is not None and mine == self.channel_id(channel)

    def find_part(
        self,
        channel: str,
        digest_key: str,
        part: int,
        *,
        since: datetime,
        destination: str,
        thread_ts: str | None = None,
        text: str | None = None,
    ) -> str | None:
        """The ``ts`` of digest ``part`` in ``channel`` (an ID or a name), posted under
        ``destination`` from ``since`` on, or ``None``; ``text``: the part's, which tells it
        where the server keeps no metadata (:func:`find_posted_part`). Raises
        :class:`SlackDeliveryError` when the channel cannot be read."""
        read_back = self.delivery_guarantee()
        if self.web_client is None or not read_back.available:
            raise SlackDeliveryError(f"the channel cannot be read: {read_back.reason}", permanent=True)
        channel_id = self.channel_id(channel)
        if channel_id is None:
            raise SlackDeliveryError(f"no channel the bot token can list is named {channel}", permanent=True)
        return find_posted_part(
            self.web_client,
            channel_id,
            digest_key,
            part,
            oldest=since - READ_BACK_MARGIN,
            thread_ts=thread_ts if part > 0 else None,
            destination=destination,
            text=text,
        )

    def post(
        self,
        messages: Sequence[SlackMessage],
        *,
        already_sent: int = 0,
        thread_ts: str | None = None,
        on_sent: OnSent,
        on_posting: OnPosting | None = None,
        digest_key: str | None = None,
        destination: str | None = None,
        unconfirmed_since: datetime | None = None,
        unconfirmed_runs: int = 0,
    ) -> DeliveryResult:
        """Deliver ``messages[already_sent:]`` through whichever client this target has.

        ``unconfirmed_runs``: how many earlier runs posted part ``already_sent`` without
        its confirmation (needed only where the channel cannot be looked at: a webhook, a
        token without the history scope).
        """
        try:
            read_back = self.delivery_guarantee()
        except SlackDeliveryError as exc:
            exc.delivered = already_sent
            exc.in_doubt = unconfirmed_since is not None
            raise
        if self.web_client is not None and self.channel:
            return post_messages(
                self.web_client,
                self.channel,
                messages,
                already_sent=already_sent,
                thread_ts=thread_ts,
                on_sent=on_sent,
                on_posting=on_posting,
                digest_key=digest_key,
                destination=destination,
                read_back=read_back.available,
                read_channel=read_back.channel_id,
                unconfirmed_since=unconfirmed_since,
                unconfirmed_runs=unconfirmed_runs,
                max_retries=self.max_retries,
                retry_delay=self.retry_delay,
                read_back_delay=self.read_back_delay,
            )
        if self.webhook_client is not None:
            return post_webhook_messages(
                self.webhook_client,
                messages,
                already_sent=already_sent,
                on_sent=on_sent,
                on_posting=on_posting,
                digest_key=digest_key,
                unconfirmed_since=unconfirmed_since,
                unconfirmed_runs=unconfirmed_runs,
                max_retries=self.max_retries,
                retry_delay=self.retry_delay,
            )
        raise ConfigError("Slack target has no client")


# Where each Slack setting came from, when not from the environment: "bot_token" ->
# "password of the Airflow connection summitwatch_slack", ...
SettingNames = Mapping[str, str]


def setting_source(key: str, names: SettingNames | None = None) -> str:
    """Where the Slack setting ``key`` is set: its environment variable unless ``names``
    says otherwise."""
    if names and key in names:
        return names[key]
    return next(variable for variable, setting in SLACK_ENV.items() if setting == key)


def setting_name(key: str, names: SettingNames | None = None) -> str:
    """The Slack setting ``key`` as an error names it: ``setting 'slack.channel'
    (SLACK_CHANNEL)``, or the Airflow connection's field it came from."""
    if names and key in names:
        return names[key]
    return f"setting 'slack.{key}' ({setting_source(key)})"


def slack_target(
    settings: SlackSettings,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
    read_back_delay: float = 2.0,
    names: SettingNames | None = None,
) -> SlackTarget | None:
    """The Slack destination configured in ``settings``, or ``None`` (digests go to stdout).

    A bot token needs a channel, and a channel a bot token or a webhook: a channel set
    with neither is a configuration to fix (a token left out, or put where it is not read),
    not a wish for files. (Beside a webhook, which posts to its own channel, a channel is
    left unused, as it was: a deployment setting both keeps delivering.) With both a token
    and a webhook, the Web API wins because it can thread follow-ups and look for parts
    whose answer was lost. ``names``: where each setting
    came from, for the errors (the environment's variables unless named otherwise: an
    Airflow connection's fields).
    """
    if settings.bot_token is None and settings.channel and settings.webhook_url is None:
        raise ConfigError(
            f"{setting_name('channel', names)} is set without a bot token "
            f"({setting_source('bot_token', names)}): a channel is posted to with a bot token only "
            "(an incoming webhook posts to its own), so no digest is delivered until the token is "
            "set or the channel unset"
        )
    if settings.bot_token is not None:
        if not settings.channel:
            raise ConfigError(
                f"{setting_name('channel', names)} is required with a bot token "
                f"({setting_source('bot_token', names)})"
            )
        client = make_web_client(
            settings.bot_token,
            settings.api_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_retry_after=max_retry_after,
            names=names,
        )
        return SlackTarget(
            kind="web_api",
            channel=settings.channel,
            web_client=client,
            max_retries=max_retries,
            retry_delay=backoff_factor,
            read_back_delay=read_back_delay,
        )
    if settings.webhook_url is not None:
        webhook = make_webhook_client(
            settings.webhook_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_retry_after=max_retry_after,
            names=names,
        )
        return SlackTarget(
            kind="webhook", webhook_client=webhook, max_retries=max_retries, retry_delay=backoff_factor
        )
    return None


# ---------------------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------------------


def post_messages(
    client: WebClient,
    channel: str,
    messages: Sequence[SlackMessage],
    *,
    already_sent: int = 0,
    thread_ts: str | None = None,
    on_sent: OnSent,
    on_posting: OnPosting | None = None,
    digest_key: str | None = None,
    destination: str | None = None,
    read_back: bool = False,
    read_channel: str | None = None,
    unconfirmed_since: datetime | None = None,
    unconfirmed_runs: int = 0,
    max_retries: int = 3,
    retry_delay: float = 0.5,
    read_back_delay: float = 2.0,
) -> DeliveryResult:
    """Post ``messages[already_sent:]`` with ``chat.postMessage``; follow-ups in the thread.

    ``messages[0]`` is the parent; every later message is posted with ``thread_ts`` (the
    parent's ts: the one passed in, the one Slack returns, or the one found in the
    channel). ``on_posting(index, at)`` runs before a part's first try, ``on_sent(index,
    ts)`` after it is confirmed; if either raises, delivery stops and the exception
    propagates. With ``digest_key`` every part carries metadata naming it.

    A part whose answer is lost is looked for in the channel (by its ID, ``read_channel``,
    when ``channel`` is a name) when ``read_back`` (the token can read the history) and
    ``digest_key`` are given, and posted again only if it is not there; otherwise it is
    posted again with a warning (at-least-once). At most ``max_retries`` more tries,
    ``retry_delay`` seconds apart and doubling.
    ``unconfirmed_since``: a previous attempt began posting part ``already_sent`` at that
    time and never saw the answer; it is looked for first. Where it cannot be looked for,
    a part that ``unconfirmed_runs`` earlier runs posted without its confirmation, as many
    as :data:`UNCONFIRMED_RUNS`, is not posted again: the error is ``given_up``.

    Raises :class:`SlackDeliveryError` (``permanent`` or transient, ``in_doubt``) with
    ``delivered``.
    """
    if not 0 <= already_sent <= len(messages):
        raise ValueError(f"already_sent={already_sent} is outside 0..{len(messages)}")
    if already_sent > 0 and thread_ts is None and already_sent < len(messages):
        raise ValueError("resuming after the parent needs its thread_ts")
    delivery = _WebDelivery(
        client=client,
        channel=channel,
        messages=messages,
        thread_ts=thread_ts,
        on_sent=on_sent,
        on_posting=on_posting,
        digest_key=digest_key,
        destination=destination,
        read_back=read_back,
        read_channel=read_channel or channel,
        max_retries=max_retries,
        retry_delay=retry_delay,
        read_back_delay=read_back_delay,
        unconfirmed_runs=unconfirmed_runs,
    )
    return delivery.run(already_sent, unconfirmed_since)


def post_webhook_messages(
    client: WebhookClient,
    messages: Sequence[SlackMessage],
    *,
    already_sent: int = 0,
    on_sent: OnSent,
    on_posting: OnPosting | None = None,
    digest_key: str | None = None,
    unconfirmed_since: datetime | None = None,
    unconfirmed_runs: int = 0,
    max_retries: int = 3,
    retry_delay: float = 0.5,
) -> DeliveryResult:
    """Post ``messages[already_sent:]`` to an incoming webhook, one after another.

    Webhooks cannot thread and return no ``ts``: follow-ups arrive as separate messages
    and ``on_sent`` receives ``""`` as the ts. Nor can a webhook read the channel: a part
    whose answer is lost (or left unconfirmed by a previous attempt) is posted again, and
    each such case is logged with the digest key and part (at-least-once in that window).
    A part left unconfirmed by ``unconfirmed_runs`` earlier runs, as many as
    :data:`UNCONFIRMED_RUNS`, is not posted again: the error is ``given_up``.
    """
    if not 0 <= already_sent <= len(messages):
        raise ValueError(f"already_sent={already_sent} is outside 0..{len(messages)}")
    label = digest_key or "(no key)"
    total = len(messages)
    for index in range(already_sent, total):
        in_doubt = index == already_sent and unconfirmed_since is not None
        if in_doubt and unconfirmed_runs >= UNCONFIRMED_RUNS:
            raise SlackDeliveryError(
                f"incoming webhook: {unconfirmed_runs} runs posted part {index + 1} of {total} and "
                f"never got an answer that confirms it ({WEBHOOK_CANNOT_READ}), so it is not posted "
                f"again: check the channel for it (and for copies of it), and that SLACK_WEBHOOK_URL "
                f'answers as Slack does ("ok"); the digest is quarantined, its parts from '
                f"{index + 1} on not sent by summitwatch",
                permanent=True,
                delivered=index,
                in_doubt=True,
                given_up=True,
            )
        if in_doubt:
            _log_reposting(label, index, total, UNCONFIRMED, WEBHOOK_CANNOT_READ)
        try:
            _send_webhook_part(
                client, messages[index], index, total, label, max_retries, retry_delay, on_posting
            )
        except SlackDeliveryError as exc:
            exc.delivered = index
            exc.posted_in_doubt = exc.in_doubt  # (this run's post; an earlier run's is below)
            exc.in_doubt = exc.in_doubt or in_doubt
            raise
        logger.info("digest part %d of %d sent to the incoming webhook", index + 1, total)
        on_sent(index, "")
    return DeliveryResult(sent=total, thread_ts=None, timestamps=())


def _send_webhook_part(
    client: WebhookClient,
    message: SlackMessage,
    index: int,
    total: int,
    label: str,
    max_retries: int,
    retry_delay: float,
    on_posting: OnPosting | None,
) -> None:
    """Send one part; a lost answer is logged and the part sent again (no read-back)."""
    doubt = ""
    for attempt in range(max_retries + 1):
        if attempt:
            _log_reposting(label, index, total, doubt, WEBHOOK_CANNOT_READ)
            _pause(retry_delay, attempt)
        elif on_posting is not None:
            on_posting(index, datetime.now(UTC))
        try:
            # (Not unfurled, as the Web API's posts are not: a digest links many articles,
            # and a preview of each would bury it.)
            response = client.send(
                text=message.text, blocks=message.blocks or None, unfurl_links=False, unfurl_media=False
            )
        except Exception as exc:
            if not _may_have_posted(exc):
                error = _delivery_error(exc, client, "incoming webhook", delivered=index, thread_ts=None)
                error.in_doubt = attempt > 0
                raise error from None
            doubt = _describe_loss(exc)
            continue
        status = response.status_code
        # An incoming webhook answers "ok", or its error code, as plain text; servers that
        # take Slack's webhooks (Rocket.Chat, ...) may answer JSON saying so instead, their
        # refusals included. A web page with a 2xx came from something else (a sign-in
        # page, where a redirect led): not posted. Any other 2xx (empty, cut short, a
        # relay's 202) is an answer lost on the way.
        body = (response.body or "").strip()
        if 200 <= status < 300 and _webhook_accepted(body):
            return
        if status in SERVER_ERROR_STATUSES:
            doubt = f"Slack answered HTTP {status}"
            continue
        refusal = _webhook_json_refusal(body)
        if refusal in IN_DOUBT_ERRORS:
            # (Slack's own failure after taking the request: the message may be posted.)
            doubt = f"Slack answered HTTP {status}: {refusal}"
            continue
        if 200 <= status < 300 and refusal is None and not _is_web_page(body, response.headers):
            doubt = f'Slack answered HTTP {status} without "ok" ({" ".join(body.split())[:40]!r})'
            continue
        code = refusal or (body if status != 200 and _ERROR_CODE.fullmatch(body) else None)
        transient = status == 429 or status >= 500 or code is None or code in TRANSIENT_ERRORS
        retry_after = _retry_after_header(response.headers or {}) if status == 429 else None
        if retry_after is not None:
            problem = _rate_limited("the incoming webhook", retry_after, _longest_wait(client), posting=True)
        elif code is not None:
            problem = f"Slack incoming webhook answered HTTP {status}: {code}"
        else:
            problem = _not_slack_answer("incoming webhook", status, body, response.headers or {})
        raise SlackDeliveryError(
            _redact(problem, client),
            permanent=not transient,
            error_code=None if transient else code,
            delivered=index,
            in_doubt=attempt > 0,
            refused_content=code in CONTENT_ERRORS,
            retry_after=retry_after,
        ) from None
    _log_reposting(label, index, total, doubt, WEBHOOK_CANNOT_READ, final=True)
    raise SlackDeliveryError(
        f"incoming webhook: the answer to part {index + 1} of {total} was lost "
        f"{max_retries + 1} times ({doubt})",
        permanent=False,
        delivered=index,
        in_doubt=True,
    )


def find_posted_part(
    client: WebClient,
    channel: str,
    digest_key: str,
    part: int,
    *,
    oldest: datetime,
    thread_ts: str | None = None,
    destination: str | None = None,
    text: str | None = None,
) -> str | None:
    """The ``ts`` of digest ``part`` if it is in ``channel`` (an ID: the history methods
    take no names; posted after ``oldest``), else None.

    Reads the message metadata that :func:`post_messages` attaches: the parent (part 0)
    from ``conversations.history``, a follow-up from ``conversations.replies`` of the
    thread ``thread_ts``; page by page (at most ``READ_BACK_PAGES`` of
    ``READ_BACK_PAGE_SIZE``), 429s waited out by the client's rate-limit handler. Raises
    :class:`SlackDeliveryError` when the history cannot be read. ``text``: the part's
    text, which a message without any metadata is told by (a Slack-like server that drops
    metadata, or refused it and got the part without).
    """
    arguments: dict[str, Any] = {
        "channel": channel,
        "limit": READ_BACK_PAGE_SIZE,
        "include_all_metadata": True,
        "oldest": f"{oldest.timestamp():.6f}",
    }
    if part > 0 and thread_ts is None:
        raise ValueError("looking for a follow-up needs the parent's thread_ts")
    # (A parent posted without a ts to thread under: its follow-ups are in the history.)
    threaded = part > 0 and bool(thread_ts)
    if threaded:
        arguments["ts"] = thread_ts
    method = "conversations.replies" if threaded else "conversations.history"
    read = 0
    try:
        for _ in range(READ_BACK_PAGES):
            if threaded:
                page = client.conversations_replies(**arguments)
            else:
                page = client.conversations_history(**arguments)
            for message in page.get("messages") or []:
                read += 1
                if _is_part(message, digest_key, part, destination, text):
                    return str(message["ts"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
            arguments["cursor"] = cursor
    except Exception as exc:
        raise _delivery_error(exc, client, method, delivered=part, thread_ts=thread_ts) from None
    logger.warning(
        "digest %s part %d: %d messages read in %s since %s without reaching the end; taken as not posted",
        digest_key,
        part + 1,
        read,
        channel,
        f"{oldest:%Y-%m-%d %H:%M:%S} UTC",
    )
    return None


class _InDoubt(Exception):
    """The answer to a post was lost: the message may or may not be in the channel."""


@dataclass
class _WebDelivery:
    """One call of :func:`post_messages`: the parts in order, each confirmed or found."""

    client: WebClient
    channel: str
    messages: Sequence[SlackMessage]
    thread_ts: str | None
    on_sent: OnSent
    on_posting: OnPosting | None
    digest_key: str | None
    destination: str | None
    read_back: bool
    read_channel: str
    max_retries: int
    retry_delay: float
    read_back_delay: float
    unconfirmed_runs: int = 0
    # Why the channel cannot be looked at after all, when a look found the history not served.
    cannot_look: str = ""
    # Whether parts carry their metadata (until the server refuses it: METADATA_REFUSALS).
    with_metadata: bool = True

    @property
    def can_look(self) -> bool:
        """Whether a part whose answer was lost can be looked for in the channel."""
        return self.read_back and bool(self.digest_key)

    def run(self, already_sent: int, unconfirmed_since: datetime | None) -> DeliveryResult:
        timestamps: list[str] = []
        recovered: list[int] = []
        for index in range(already_sent, len(self.messages)):
            since = unconfirmed_since if index == already_sent else None
            ts, found = self._deliver(index, since)
            if index == 0:
                self.thread_ts = ts
            timestamps.append(ts)
            if found:
                recovered.append(index)
            self.on_sent(index, ts)
        return DeliveryResult(
            sent=len(self.messages),
            thread_ts=self.thread_ts,
            timestamps=tuple(timestamps),
            recovered=tuple(recovered),
        )

    def _deliver(self, index: int, unconfirmed_since: datetime | None) -> tuple[str, bool]:
        """Post part ``index`` or find it in the channel: ``(ts, found)``."""
        first_try = unconfirmed_since
        in_doubt = unconfirmed_since is not None
        # Whether this run posted the part and lost the answer (it may be in the channel).
        posted_lost = False
        reason = ""
        if in_doubt and not self.can_look:
            self._give_up_if_counted(index)
        try:
            if unconfirmed_since is not None:
                found = self._look_for(index, unconfirmed_since, UNCONFIRMED, final=False)
                if found:
                    return found, True
            for attempt in range(self.max_retries + 1):
                if attempt:
                    _pause(self.retry_delay, attempt)
                now = datetime.now(UTC)
                if first_try is None:
                    first_try = now
                    if self.on_posting is not None:
                        self.on_posting(index, now)
                try:
                    return self._post(index), False
                except _InDoubt as doubt:
                    in_doubt = posted_lost = True
                    final = attempt == self.max_retries
                    found = self._look_for(index, first_try, str(doubt), final=final)
                    if found:
                        return found, True
                    reason = str(doubt)
            raise SlackDeliveryError(
                f"chat.postMessage: the answer to part {index + 1} of {len(self.messages)} was lost "
                f"{self.max_retries + 1} times ({reason})",
                permanent=False,
                delivered=index,
                thread_ts=self.thread_ts,
                in_doubt=True,
            )
        except SlackDeliveryError as exc:
            exc.in_doubt = exc.in_doubt or in_doubt
            # Counted toward giving the part up only where it cannot be looked for: where it
            # can, a part posted again was not in the channel.
            exc.posted_in_doubt = posted_lost and not self.can_look
            raise

    def _post(self, index: int) -> str:
        message = self.messages[index]
        arguments: dict[str, Any] = {
            "channel": self.channel,
            "text": message.text,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if message.blocks:
            arguments["blocks"] = message.blocks
        if index > 0 and self.thread_ts:
            arguments["thread_ts"] = self.thread_ts
        if self.digest_key and self.with_metadata:
            payload: dict[str, Any] = {
                "digest_key": self.digest_key,
                "part": index,
                "parts": len(self.messages),
            }
            if self.destination:
                payload["destination"] = self.destination
            arguments["metadata"] = {"event_type": METADATA_EVENT_TYPE, "event_payload": payload}
        try:
            response = self.client.chat_postMessage(**arguments)
        except Exception as exc:
            if _may_have_posted(exc):
                raise _InDoubt(_describe_loss(exc)) from None
            error = _delivery_error(
                exc, self.client, "chat.postMessage", delivered=index, thread_ts=self.thread_ts
            )
            if "metadata" in arguments and error.error_code in METADATA_REFUSALS:
                logger.warning(
                    "the server at SLACK_API_URL refused the digest's message metadata (%s): its parts "
                    "are posted without it, and one whose answer is lost is looked for by its text",
                    error.error_code,
                )
                self.with_metadata = False
                return self._post(index)
            raise error from None
        ts = str(response.get("ts") or "")
        if not ts:
            # Slack's answer says the part is posted, without its ts (a Slack-like server
            # that leaves it out): posting it again would put it in the channel twice. The
            # parts after it are posted as messages of their own (no thread to put them in).
            logger.warning(
                "digest part %d of %d: chat.postMessage answered ok without the message's ts: taken "
                "as posted%s",
                index + 1,
                len(self.messages),
                "; the parts after it are not threaded under it" if index == 0 else "",
            )
            return ""
        logger.info(
            "digest part %d of %d posted to %s (ts %s)", index + 1, len(self.messages), self.channel, ts
        )
        return ts

    def _give_up_if_counted(self, index: int) -> None:
        """Raise ``given_up`` when :data:`UNCONFIRMED_RUNS` earlier runs posted part
        ``index`` without its confirmation and it cannot be looked for in the channel."""
        if self.unconfirmed_runs < UNCONFIRMED_RUNS:
            return
        why = self.cannot_look or (
            "the channel history cannot be read" if self.digest_key else "it carries no digest key"
        )
        raise SlackDeliveryError(
            f"chat.postMessage: {self.unconfirmed_runs} runs posted part {index + 1} of "
            f"{len(self.messages)} and never got Slack's answer confirming it ({why}), so it is not "
            "posted again: check the channel for it (and for copies of it), and that SLACK_API_URL "
            "answers as Slack does; the digest is quarantined, its parts from "
            f"{index + 1} on not sent by summitwatch",
            permanent=True,
            delivered=index,
            thread_ts=self.thread_ts,
            in_doubt=True,
            given_up=True,
        )

    def _look_for(self, index: int, since: datetime, doubt: str, *, final: bool) -> str | None:
        """The part's ts if it is in the channel; ``None`` otherwise (it is posted again,
        unless this was the ``final`` try: then the next attempt decides)."""
        label = self.digest_key or "(no key)"
        total = len(self.messages)
        if not (self.read_back and self.digest_key):
            why = self.cannot_look or (
                "the channel history cannot be read" if self.digest_key else "it carries no digest key"
            )
            _log_reposting(label, index, total, doubt, why, final=final)
            return None
        # Give Slack a moment: a gateway may answer before Slack has stored the message.
        time.sleep(self.read_back_delay)
        method = "conversations.replies" if index > 0 else "conversations.history"
        try:
            found = find_posted_part(
                self.client,
                self.read_channel,
                self.digest_key,
                index,
                oldest=since - READ_BACK_MARGIN,
                thread_ts=self.thread_ts if index > 0 else None,
                destination=self.destination,
                text=self.messages[index].text,
            )
        except SlackDeliveryError as exc:
            if not exc.not_served:
                raise
            # The scopes allow it, but the server at SLACK_API_URL does not serve the history
            # (a Slack-like server without it): at-least-once from here, as without the scope,
            # rather than the digest waiting for ever for a look that never answers.
            self.read_back = False
            self.cannot_look = f"the channel history cannot be read: {_not_served(method, exc)}"
            if doubt == UNCONFIRMED:
                self._give_up_if_counted(index)
            _log_reposting(label, index, total, doubt, self.cannot_look, final=final)
            return None
        if found:
            logger.info(
                "digest %s part %d of %d: %s, but it is in %s (ts %s): not posted again",
                label,
                index + 1,
                total,
                doubt,
                self.channel,
                found,
            )
        else:
            logger.info(
                "digest %s part %d of %d: %s and it is not in %s: %s",
                label,
                index + 1,
                total,
                doubt,
                self.channel,
                "left for the next attempt" if final else "posting it again",
            )
        return found


def _log_reposting(label: str, index: int, total: int, doubt: str, why: str, *, final: bool = False) -> None:
    """Each part that may reach the channel twice is logged: digest key, part, why."""
    logger.warning(
        "digest %s part %d of %d: %s; it may already be in the channel, but %s, so it %s "
        "and may appear twice (at-least-once)",
        label,
        index + 1,
        total,
        doubt,
        why,
        "will be posted again by the next attempt" if final else "is posted again",
    )


def _pause(delay: float, attempt: int) -> None:
    time.sleep(delay * 2 ** (attempt - 1) * (1.0 + 0.5 * random.random()))  # noqa: S311 - jitter


def _may_have_posted(exc: Exception) -> bool:
    """Whether Slack may have acted on a request that failed with ``exc``.

    Only a clear answer says no: a Slack error code (other than the ones Slack says may
    have done part of the work) or a 4xx. urllib raises ``URLError`` only while connecting
    or sending, before Slack could act; anything after the request went out (a timeout,
    a reset, a closed connection, an unreadable answer) leaves it in doubt.
    """
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = getattr(response, "data", None)
        code = str(data.get("error") or "") if isinstance(data, dict) else ""
        if status >= 500 or code in IN_DOUBT_ERRORS:
            return True
        if not 200 <= status < 300:
            return False
        if _is_web_page(code.removeprefix(_NOT_JSON), getattr(response, "headers", None)):
            # A sign-in or proxy page (also where a redirect led): Slack was not reached.
            return False
        # Any other 2xx without Slack's error code (cut short, empty, a relay's 202 that
        # queued the request) is no answer either: the message may have been posted.
        return not _ERROR_CODE.fullmatch(code)
    return not isinstance(exc, URLError | SlackClientError)


def _webhook_accepted(body: str) -> bool:
    """Whether a webhook's 2xx answer says the message was posted: Slack's ``ok``, or a
    JSON object with ``"ok": true`` or ``"success": true`` (servers that take Slack's
    webhooks, such as Rocket.Chat)."""
    if body == "ok":
        return True
    answer = _json_object(body)
    return answer.get("ok") is True or answer.get("success") is True


def _webhook_json_refusal(body: str) -> str | None:
    """The error code of a webhook's JSON refusal, ``{"ok": false, "error": "no_service"}``
    (or ``"success": false``), as Slack-compatible servers answer; ``None`` otherwise."""
    answer = _json_object(body)
    if not (answer.get("ok") is False or answer.get("success") is False):
        return None
    code = answer.get("error")
    return code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None


def _json_object(body: str) -> dict[str, Any]:
    """``body`` read as a JSON object, or an empty one when it is none."""
    if not body.startswith("{"):
        return {}
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):  # (not JSON, or nested deeper than Python reads)
        return {}
    return answer if isinstance(answer, dict) else {}


def _is_web_page(body: str, headers: Mapping[str, Any] | None) -> bool:
    """Whether an answer is a web page (HTML) rather than anything Slack sends."""
    kind = next((str(v) for k, v in (headers or {}).items() if k.lower() == "content-type"), "")
    return "html" in kind.lower() or body.lstrip().startswith("<")


def _describe_loss(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        status = int(getattr(exc.response, "status_code", 0) or 0)
        data = getattr(exc.response, "data", None)
        code = data.get("error") if isinstance(data, dict) else None
        return f"Slack answered HTTP {status}" + (
            f" ({code})" if code and _ERROR_CODE.fullmatch(str(code)) else ""
        )
    if isinstance(exc, TimeoutError):
        return "no answer before the timeout"
    if isinstance(exc, HTTPException | ConnectionError):
        return f"the connection closed before the answer ({type(exc).__name__})"
    return f"the answer was lost ({type(exc).__name__})"


def _is_part(
    message: Mapping[str, Any], digest_key: str, part: int, destination: str | None, text: str | None = None
) -> bool:
    metadata = message.get("metadata") or {}
    if not metadata:  # (Slack returns every message's metadata when asked: none was kept)
        return text is not None and message.get("text") == text
    if metadata.get("event_type") != METADATA_EVENT_TYPE:
        return False
    payload = metadata.get("event_payload") or {}
    if payload.get("digest_key") != digest_key or payload.get("part") != part:
        return False
    return destination is None or payload.get("destination") in (None, destination)


def _granted_scopes(headers: Mapping[str, Any] | None) -> frozenset[str] | None:
    for name, value in (headers or {}).items():
        if name.lower() == "x-oauth-scopes":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            return frozenset(scope.strip() for scope in str(raw).split(",") if scope.strip())
    return None


def _delivery_error(
    exc: Exception, client: WebClient | WebhookClient, what: str, *, delivered: int, thread_ts: str | None
) -> SlackDeliveryError:
    """Classify a failure; the message is redacted and never holds the token."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = getattr(response, "data", None)
        raw = str(data.get("error") or "") if isinstance(data, dict) else ""
        # Only Slack's own error codes count: slack-sdk puts a sentence there when the
        # answer was not JSON at all.
        code = raw if _ERROR_CODE.fullmatch(raw) else None
        details = ""
        if isinstance(data, dict) and data.get("errors"):
            details = f" ({'; '.join(str(e) for e in list(data['errors'])[:3])})"
        if isinstance(data, dict) and code == "missing_scope" and data.get("needed"):
            details = f" (needs {data['needed']})"
        transient = status == 429 or status >= 500 or code is None or code in TRANSIENT_ERRORS
        headers = getattr(response, "headers", None) or {}
        retry_after = _retry_after_header(headers) if status == 429 else None
        if retry_after is not None:
            message = _rate_limited(what, retry_after, _longest_wait(client), posting=what in POSTING)
        elif status >= 500:
            message = f"Slack answered {what} with HTTP {status} after the retries"
        elif code is None:
            message = _not_slack_answer(what, status, raw.removeprefix(_NOT_JSON), headers)
        else:
            http = f" (HTTP {status})" if status not in (0, 200) else ""
            message = f"Slack refused {what}: {code}{details}{http}"
        return SlackDeliveryError(
            _redact(message, client),
            permanent=not transient,
            error_code=code,
            delivered=delivered,
            thread_ts=thread_ts,
            refused_content=what in POSTING and code in CONTENT_ERRORS,
            retry_after=retry_after,
            http_status=status or None,
        )
    if isinstance(exc, URLError | OSError | HTTPException | SlackClientError):
        reason = getattr(exc, "reason", None) or exc
        return SlackDeliveryError(
            _redact(f"cannot reach Slack for {what}: {type(exc).__name__}: {reason}", client),
            permanent=False,
            delivered=delivered,
            thread_ts=thread_ts,
        )
    return SlackDeliveryError(
        _redact(f"unexpected failure in {what}: {type(exc).__name__}: {exc}", client),
        permanent=False,
        delivered=delivered,
        thread_ts=thread_ts,
    )


_SERVE_HISTORY = (
    "set SLACK_API_URL to a server that answers conversations.history and conversations.replies "
    "(and conversations.list for a channel set by name) as Slack does"
)


def _not_served(method: str, error: SlackDeliveryError) -> str:
    """Why the channel cannot be read when the server does not serve ``method``."""
    if error.error_code == "unknown_method":
        return f"{method} is not served at SLACK_API_URL (unknown_method)"
    return f"{method} is not served at SLACK_API_URL (HTTP {error.http_status}, not Slack's answer)"


def _rate_limited(what: str, wait: float, longest: float | None, *, posting: bool) -> str:
    """A 429 that the client did not wait out: how long Slack asked for, and when the
    next try may be (at most :data:`LONGEST_DEFERRAL` from now). Only a posting call's 429
    says anything about the message (that part was not posted); a look-up's says nothing
    about what an earlier attempt posted."""
    deferral = _deferral(wait)
    after = f"{datetime.now(UTC) + timedelta(seconds=deferral):%Y-%m-%d %H:%M:%S} UTC"
    if deferral < wait:
        after += (
            f" (Slack asked for longer, but a digest is deferred by at most "
            f"{LONGEST_DEFERRAL.total_seconds() / 60:g} minutes)"
        )
    if longest is not None and wait > longest:
        why = f"longer than the {longest:g} s a run waits"
    else:
        why = "again after every wait a run allows"
    return (
        f"Slack rate-limited {what} and asked to wait {wait:g} s (Retry-After), {why}: "
        + ("that part was not posted, and " if posting else "")
        + f"the digest is not tried again before {after}"
    )


def _longest_wait(client: WebClient | WebhookClient) -> float | None:
    """The longest Retry-After ``client`` waits out (its rate-limit retry handler's)."""
    for handler in getattr(client, "retry_handlers", None) or []:
        if isinstance(handler, _RateLimitHandler):
            return handler.max_wait
    return None


def _retry_after_header(headers: Mapping[str, Any]) -> float:
    """A 429's ``Retry-After`` in seconds from now: a number of seconds or an HTTP date
    (RFC 9110), never negative. :data:`DEFAULT_RETRY_AFTER` when it is missing,
    unreadable or not a finite number (``inf``, ``nan``), as Slack's limits are per minute
    at most. What a digest is deferred by is bounded apart (:func:`_deferral`)."""
    for name, value in headers.items():
        if name.lower() != "retry-after":
            continue
        raw = str(value[0] if isinstance(value, list | tuple) and value else value).strip()
        try:
            seconds = float(raw)
        except ValueError:
            from pipeline.http import seconds_until_http_date  # (httpx: only for a date)

            seconds = seconds_until_http_date(raw)
        return max(0.0, seconds) if math.isfinite(seconds) else DEFAULT_RETRY_AFTER
    return DEFAULT_RETRY_AFTER


def _deferral(seconds: float) -> float:
    """The seconds a digest is deferred by when Slack asked for ``seconds``: never more
    than :data:`LONGEST_DEFERRAL`."""
    return min(max(0.0, seconds), LONGEST_DEFERRAL.total_seconds())


def _not_slack_answer(what: str, status: int, body: str, headers: Mapping[str, Any]) -> str:
    """Why an answer that is not Slack's JSON is no verdict on the digest, and what to check."""
    location = next((str(v) for k, v in headers.items() if k.lower() == "location"), "")
    seen = " ".join(body.split())[:80]
    shown = f"a redirect to {location}" if location else (repr(seen) if seen else "no body")
    setting = "SLACK_WEBHOOK_URL" if what == "incoming webhook" else "SLACK_API_URL"
    return (
        f"the answer to {what} is not Slack's (HTTP {status}, {shown}): check {setting} and any proxy "
        "in between; nothing was posted and the digest waits"
    )


# ---------------------------------------------------------------------------------------
# Retry policy
# ---------------------------------------------------------------------------------------


class _ProportionalJitter(Jitter):
    """Up to +50 % of the interval (slack-sdk's default adds up to a whole second)."""

    def recalculate(self, duration: float) -> float:
        return duration * (1.0 + 0.5 * random.random())  # noqa: S311 - jitter, not security


class _RateLimitHandler(RateLimitErrorRetryHandler):
    """Retry 429 after ``Retry-After`` seconds, unless Slack asks for a longer wait than we allow."""

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        return _retry_after(response) <= self.max_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        # Never longer than _can_retry allowed (the header is read again here).
        wait = min(_retry_after(response), self.max_wait) if response is not None else DEFAULT_RETRY_AFTER
        logger.info("Slack rate limit: waiting %.1f s (Retry-After) before retrying", wait)
        time.sleep(wait + 0.1 * random.random())  # noqa: S311 - jitter, not security
        state.next_attempt_requested = True
        state.increment_current_attempt()


class _ServerErrorHandler(ServerErrorRetryHandler):
    """Retry 500, 502, 503 and 504 of the methods that only read.

    A server error may come from a gateway after Slack took the request: repeating a
    post (``chat.postMessage``, an incoming webhook) could put it in the channel twice,
    so posts are never repeated here; the delivery code looks in the channel first.
    """

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code not in SERVER_ERROR_STATUSES:
            return False
        return urlsplit(request.url).path.rsplit("/", 1)[-1] in READ_ONLY_METHODS


def _retry_after(response: HttpResponse) -> float:
    return _retry_after_header(response.headers)


def _retry_handlers(max_retries: int, backoff_factor: float, max_retry_after: float) -> list[RetryHandler]:
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor, jitter=_ProportionalJitter())
    return [
        _RateLimitHandler(max_retry_count=max_retries, max_wait=max_retry_after),
        _ServerErrorHandler(max_retry_count=max_retries, interval_calculator=backoff),
        # urllib raises URLError only while connecting or sending (refused, DNS, connect
        # timeout, reset mid-send): Slack cannot have processed the request, so a retry
        # cannot duplicate a post. A drop after sending surfaces as a different error.
        ConnectionErrorRetryHandler(
            max_retry_count=max_retries, interval_calculator=backoff, error_types=[URLError]
        ),
    ]


# ---------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------


class _RedactingLogger(logging.Logger):
    """A logger for slack-sdk that forwards to ``pipeline.slack`` with secrets replaced.

    slack-sdk logs request URLs (for webhooks, the credential) and, at DEBUG, request
    details; redacting at the source keeps them out of every handler the app configures.
    Its errors for cases handled here (:data:`HANDLED_SDK_ERRORS`) are lowered to DEBUG.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(f"{__name__}.sdk")
        self.parent = logging.getLogger(__name__)
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def isEnabledFor(self, level: int) -> bool:
        parent = self.parent
        return parent.isEnabledFor(level) if parent is not None else False

    def handle(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR and message.startswith(HANDLED_SDK_ERRORS):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            if not self.isEnabledFor(logging.DEBUG):
                return
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        for secret in self._secrets:
            message = message.replace(secret, REDACTED)
        record.msg = message
        record.args = None
        super().handle(record)


def _redact(text: str, client: WebClient | WebhookClient) -> str:
    secrets = [getattr(client, "token", None), getattr(client, "url", None)]
    url = getattr(client, "url", None)
    if isinstance(url, str):
        secrets.append(urlsplit(url).path)
    for secret in sorted((s for s in secrets if isinstance(s, str) and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _reveal(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _on_this_machine(parts: Any) -> bool:
    try:
        host = (parts.hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_base(api_url: str | None, names: SettingNames | None = None) -> str:
    base = (api_url or WebClient.BASE_URL).strip()
    parts = urlsplit(base)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(
            f"{setting_name('api_url', names)} must be an http(s) URL like https://slack.com/api/"
        )
    # slack-sdk joins method names onto the base, so it must end with a slash.
    return base if base.endswith("/") else base + "/"

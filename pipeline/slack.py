"""The Slack seam: the only module that talks to Slack (slack-sdk underneath).

Callers own the clients: build one per task with :func:`make_web_client` (bot token,
``chat.postMessage``) or :func:`make_webhook_client` (incoming webhook), or let
:func:`slack_target` pick from the settings, and pass it in.

Delivery is built for an outbox that sends each digest exactly once:

* :func:`post_messages` posts ``messages[already_sent:]``, threading follow-ups under the
  parent's ``ts``, and calls ``on_sent(index, ts)`` after each message Slack accepted, so
  the caller commits progress part by part. A retried task passes the stored
  ``already_sent`` and ``thread_ts`` and never posts a committed part again.
* The one window left, a crash (or a lost response) after Slack accepted a message but
  before ``on_sent`` was committed, is closed by message metadata: with ``digest_key``
  every message carries ``{digest_key, part}`` metadata, and ``reconcile=True`` first
  looks for parts already in the channel (``conversations.history``/``replies``, which
  need the ``channels:history`` or ``groups:history`` scope; without it delivery goes
  on, at least once).
* Rate limits (429) are retried after ``Retry-After``; 500/502/503/504 with exponential
  backoff; connection failures only when the request cannot have reached Slack (a
  connection that drops after the request was sent raises instead, since retrying a
  post blindly could duplicate it). When retries run out the error is transient and the
  digest stays pending.
* Errors are :class:`SlackDeliveryError`: ``permanent`` when retrying cannot help (bad
  token, unknown channel, invalid blocks), transient otherwise.

Secrets never reach logs or exception messages: slack-sdk logs through a logger that
redacts the token and webhook URL, and every message raised here is redacted too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.client import HTTPException
from typing import Any, Literal
from urllib.error import URLError
from urllib.parse import urlsplit

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
from slack_sdk.webhook import WebhookClient

from pipeline.digest import SlackMessage
from pipeline.errors import ConfigError, SummitwatchError
from pipeline.settings import SlackSettings

logger = logging.getLogger(__name__)

METADATA_EVENT_TYPE = "summitwatch_digest"
REDACTED = "[redacted]"
# Slack's own signals that a request may succeed later.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
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
SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})
HISTORY_PAGES = 5


class SlackDeliveryError(SummitwatchError):
    """Slack did not take a message.

    ``permanent``: retrying the same request cannot help (bad token, unknown channel,
    invalid blocks); otherwise the failure is transient (rate limit or server errors that
    outlasted the retries, connection failures) and the digest should stay pending.
    ``error_code`` is Slack's error string when there is one; ``delivered`` counts the
    messages of the digest delivered before the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        error_code: str | None = None,
        delivered: int = 0,
        thread_ts: str | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.error_code = error_code
        self.delivered = delivered
        self.thread_ts = thread_ts

    @property
    def bad_configuration(self) -> bool:
        """True when the Slack settings (token, channel, webhook) are at fault, not the digest."""
        return self.error_code in CONFIGURATION_ERRORS


@dataclass(frozen=True)
class DeliveryResult:
    """What a delivery achieved: ``sent`` messages of the digest are now in Slack.

    ``thread_ts`` is the parent's ``ts`` (``None`` for webhooks, which cannot thread);
    ``timestamps`` are the ``ts`` of the messages this call posted or found.
    """

    sent: int
    thread_ts: str | None
    timestamps: tuple[str, ...] = ()


OnSent = Callable[[int, str], None]


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


def make_web_client(
    token: str | SecretStr,
    api_url: str | None = None,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
) -> WebClient:
    """A Web API client with bounded retries for 429, 5xx and pre-send connection errors.

    ``api_url`` overrides ``https://slack.com/api/`` (``SLACK_API_URL``: GovSlack, tests).
    A ``Retry-After`` longer than ``max_retry_after`` seconds is not waited for: the call
    fails as transient and the digest waits for the next run instead of blocking a worker.
    """
    secret = _reveal(token)
    if not secret:
        raise ConfigError("setting 'slack.bot_token' (SLACK_BOT_TOKEN) is empty")
    base_url = _api_base(api_url)
    return WebClient(
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
) -> WebhookClient:
    """An incoming-webhook client with the same retry policy as :func:`make_web_client`."""
    secret = _reveal(url)
    parts = urlsplit(secret)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        # Never echo the URL: the path is the credential.
        raise ConfigError("setting 'slack.webhook_url' (SLACK_WEBHOOK_URL) must be an https:// URL")
    return WebhookClient(
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


@dataclass
class SlackTarget:
    """Where digests go: the Web API (token + channel, threads) or an incoming webhook."""

    kind: Literal["web_api", "webhook"]
    channel: str | None = None
    web_client: WebClient | None = field(default=None, repr=False)
    webhook_client: WebhookClient | None = field(default=None, repr=False)

    @property
    def can_thread(self) -> bool:
        """Webhooks cannot thread or report a ``ts``; follow-ups become separate messages."""
        return self.kind == "web_api"

    def post(
        self,
        messages: Sequence[SlackMessage],
        *,
        already_sent: int = 0,
        thread_ts: str | None = None,
        on_sent: OnSent,
        digest_key: str | None = None,
        reconcile: bool = False,
    ) -> DeliveryResult:
        """Deliver ``messages[already_sent:]`` through whichever client this target has."""
        if self.web_client is not None and self.channel:
            return post_messages(
                self.web_client,
                self.channel,
                messages,
                already_sent=already_sent,
                thread_ts=thread_ts,
                on_sent=on_sent,
                digest_key=digest_key,
                reconcile=reconcile,
            )
        if self.webhook_client is not None:
            return post_webhook_messages(
                self.webhook_client, messages, already_sent=already_sent, on_sent=on_sent
            )
        raise ConfigError("Slack target has no client")


def slack_target(
    settings: SlackSettings,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff_factor: float = 0.5,
    max_retry_after: float = 60.0,
) -> SlackTarget | None:
    """The Slack destination configured in ``settings``, or ``None`` (digests go to stdout).

    A bot token needs a channel. With both a token and a webhook, the Web API wins
    because it can thread follow-ups and reconcile after a crash.
    """
    if settings.bot_token is not None:
        if not settings.channel:
            raise ConfigError("setting 'slack.channel' (SLACK_CHANNEL) is required with SLACK_BOT_TOKEN")
        client = make_web_client(
            settings.bot_token,
            settings.api_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_retry_after=max_retry_after,
        )
        return SlackTarget(kind="web_api", channel=settings.channel, web_client=client)
    if settings.webhook_url is not None:
        webhook = make_webhook_client(
            settings.webhook_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            max_retry_after=max_retry_after,
        )
        return SlackTarget(kind="webhook", webhook_client=webhook)
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
    digest_key: str | None = None,
    reconcile: bool = False,
    oldest: datetime | None = None,
) -> DeliveryResult:
    """Post ``messages[already_sent:]`` with ``chat.postMessage``; follow-ups in the thread.

    ``messages[0]`` is the parent; every later message is posted with ``thread_ts`` (the
    parent's ts: the one passed in, or the one Slack returns for the parent).
    ``on_sent(index, ts)`` runs after each accepted message; if it raises, delivery stops
    and the exception propagates (the message is in Slack; with ``digest_key`` and
    ``reconcile`` the next attempt finds it). ``oldest`` bounds the history search of
    ``reconcile`` (default: the last 200 messages).

    Raises :class:`SlackDeliveryError` (``permanent`` or transient) with ``delivered``.
    """
    if not 0 <= already_sent <= len(messages):
        raise ValueError(f"already_sent={already_sent} is outside 0..{len(messages)}")
    if already_sent > 0 and thread_ts is None and already_sent < len(messages):
        raise ValueError("resuming after the parent needs its thread_ts")
    found: dict[int, str] = {}
    if reconcile and digest_key and already_sent < len(messages):
        found = _find_delivered_quietly(client, channel, digest_key, thread_ts=thread_ts, oldest=oldest)
        if thread_ts is None and 0 in found:
            thread_ts = found[0]
    posted: list[str] = []
    sent = already_sent
    for index in range(already_sent, len(messages)):
        if index in found:
            ts = found[index]
            logger.info("digest part %d of %d was already in Slack (ts %s)", index + 1, len(messages), ts)
        else:
            ts = _post_one(
                client, channel, messages[index], index, len(messages), thread_ts, digest_key, sent
            )
        if index == 0:
            thread_ts = ts
        posted.append(ts)
        on_sent(index, ts)
        sent = index + 1
    return DeliveryResult(sent=sent, thread_ts=thread_ts, timestamps=tuple(posted))


def post_webhook_messages(
    client: WebhookClient,
    messages: Sequence[SlackMessage],
    *,
    already_sent: int = 0,
    on_sent: OnSent,
) -> DeliveryResult:
    """Post ``messages[already_sent:]`` to an incoming webhook, one after another.

    Webhooks cannot thread and return no ``ts``: follow-ups arrive as separate messages
    and ``on_sent`` receives ``""`` as the ts. A crash between Slack's "ok" and the
    caller's commit can repeat one message (no history to reconcile against).
    """
    if not 0 <= already_sent <= len(messages):
        raise ValueError(f"already_sent={already_sent} is outside 0..{len(messages)}")
    sent = already_sent
    for index in range(already_sent, len(messages)):
        message = messages[index]
        try:
            response = client.send(text=message.text, blocks=message.blocks or None)
        except Exception as exc:
            raise _delivery_error(exc, client, "incoming webhook", delivered=sent, thread_ts=None) from None
        if response.status_code != 200:
            body = (response.body or "").strip()[:100]
            status = response.status_code
            transient = status == 429 or status >= 500
            code = None if transient else body or None
            raise SlackDeliveryError(
                _redact(f"Slack incoming webhook answered HTTP {status}: {body or 'no body'}", client),
                permanent=not transient,
                error_code=code,
                delivered=sent,
            ) from None
        logger.info("digest part %d of %d sent to the incoming webhook", index + 1, len(messages))
        on_sent(index, "")
        sent = index + 1
    return DeliveryResult(sent=sent, thread_ts=None, timestamps=())


def find_delivered_parts(
    client: WebClient,
    channel: str,
    digest_key: str,
    *,
    thread_ts: str | None = None,
    oldest: datetime | None = None,
) -> dict[int, str]:
    """``{part index: ts}`` of the parts of ``digest_key`` already in ``channel``.

    Reads the message metadata that :func:`post_messages` attaches: the parent from
    ``conversations.history`` (unless ``thread_ts`` is known), follow-ups from
    ``conversations.replies``. Raises :class:`SlackDeliveryError`.
    """
    found: dict[int, str] = {}
    try:
        if thread_ts is None:
            cursor: str | None = None
            for _ in range(HISTORY_PAGES):
                arguments: dict[str, Any] = {"channel": channel, "limit": 200, "include_all_metadata": True}
                if oldest is not None:
                    arguments["oldest"] = f"{oldest.timestamp():.6f}"
                if cursor:
                    arguments["cursor"] = cursor
                page = client.conversations_history(**arguments)
                for message in page.get("messages") or []:
                    part = _part_of(message, digest_key)
                    if part == 0:
                        found[0] = str(message["ts"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if 0 in found or not cursor:
                    break
            thread_ts = found.get(0)
        if thread_ts is not None:
            found.setdefault(0, thread_ts)
            cursor = None
            for _ in range(HISTORY_PAGES):
                arguments = {"channel": channel, "ts": thread_ts, "limit": 200, "include_all_metadata": True}
                if cursor:
                    arguments["cursor"] = cursor
                page = client.conversations_replies(**arguments)
                for message in page.get("messages") or []:
                    part = _part_of(message, digest_key)
                    if part is not None and part > 0:
                        found[part] = str(message["ts"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
    except Exception as exc:
        raise _delivery_error(
            exc, client, "conversations history", delivered=0, thread_ts=thread_ts
        ) from None
    return found


def _find_delivered_quietly(
    client: WebClient, channel: str, digest_key: str, *, thread_ts: str | None, oldest: datetime | None
) -> dict[int, str]:
    try:
        return find_delivered_parts(client, channel, digest_key, thread_ts=thread_ts, oldest=oldest)
    except SlackDeliveryError as exc:
        if not exc.permanent:
            raise
        # Most often a missing history scope: deliver anyway (at least once) rather than
        # hold every digest back.
        logger.warning("cannot check Slack for already-delivered parts (%s); sending without the check", exc)
        return {}


def _post_one(
    client: WebClient,
    channel: str,
    message: SlackMessage,
    index: int,
    total: int,
    thread_ts: str | None,
    digest_key: str | None,
    delivered: int,
) -> str:
    arguments: dict[str, Any] = {"channel": channel, "text": message.text, "unfurl_links": False}
    if message.blocks:
        arguments["blocks"] = message.blocks
    if index > 0:
        arguments["thread_ts"] = thread_ts
    if digest_key:
        arguments["metadata"] = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"digest_key": digest_key, "part": index, "parts": total},
        }
    try:
        response = client.chat_postMessage(**arguments)
    except Exception as exc:
        raise _delivery_error(
            exc, client, "chat.postMessage", delivered=delivered, thread_ts=thread_ts
        ) from None
    ts = str(response.get("ts") or "")
    if not ts:
        raise SlackDeliveryError("chat.postMessage returned no ts", permanent=False, delivered=delivered)
    logger.info("digest part %d of %d posted to %s (ts %s)", index + 1, total, channel, ts)
    return ts


def _part_of(message: dict[str, Any], digest_key: str) -> int | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT_TYPE:
        return None
    payload = metadata.get("event_payload") or {}
    if payload.get("digest_key") != digest_key:
        return None
    part = payload.get("part")
    return part if isinstance(part, int) else None


def _delivery_error(
    exc: Exception, client: WebClient | WebhookClient, what: str, *, delivered: int, thread_ts: str | None
) -> SlackDeliveryError:
    """Classify a failure; the message is redacted and never holds the token."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = getattr(response, "data", None)
        code = str(data.get("error")) if isinstance(data, dict) and data.get("error") else None
        details = ""
        if isinstance(data, dict) and data.get("errors"):
            details = f" ({'; '.join(str(e) for e in list(data['errors'])[:3])})"
        transient = status == 429 or status >= 500 or code in TRANSIENT_ERRORS
        if status == 429:
            message = f"Slack kept rate-limiting {what} (HTTP 429) after the retries"
        elif status >= 500:
            message = f"Slack answered {what} with HTTP {status} after the retries"
        else:
            message = f"Slack refused {what}: {code or f'HTTP {status}'}{details}"
        return SlackDeliveryError(
            _redact(message, client),
            permanent=not transient,
            error_code=code,
            delivered=delivered,
            thread_ts=thread_ts,
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
        wait = _retry_after(response) if response is not None else 1.0
        logger.info("Slack rate limit: waiting %.1f s (Retry-After) before retrying", wait)
        time.sleep(wait + 0.1 * random.random())  # noqa: S311 - jitter, not security
        state.next_attempt_requested = True
        state.increment_current_attempt()


class _ServerErrorHandler(ServerErrorRetryHandler):
    """Retry 500, 502, 503 and 504 (slack-sdk's own handler only knows 500 and 503)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in SERVER_ERROR_STATUSES


def _retry_after(response: HttpResponse) -> float:
    for name, value in response.headers.items():
        if name.lower() != "retry-after":
            continue
        raw = value[0] if isinstance(value, list | tuple) and value else value
        try:
            return max(0.0, float(str(raw).strip()))
        except ValueError:
            return 1.0
    return 1.0


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


def _api_base(api_url: str | None) -> str:
    base = (api_url or WebClient.BASE_URL).strip()
    parts = urlsplit(base)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigError(
            "setting 'slack.api_url' (SLACK_API_URL) must be an http(s) URL like https://slack.com/api/"
        )
    # slack-sdk joins method names onto the base, so it must end with a slash.
    return base if base.endswith("/") else base + "/"

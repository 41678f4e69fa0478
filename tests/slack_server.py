"""A local fake of Slack's Web API and incoming webhooks, for tests through slack-sdk.

``with FakeSlack() as slack: WebClient(token=slack.token, base_url=slack.api_url)``.

It behaves like Slack where the digest code depends on it:

* Bearer-token auth (``not_authed``/``invalid_auth``), and the token's scopes: every
  answer to an authenticated call carries ``x-oauth-scopes`` (what the token has) and
  ``x-accepted-oauth-scopes`` (what the method needs); a method whose scope is missing
  answers ``missing_scope`` with ``needed`` and ``provided``. Reading a public channel
  needs ``channels:history``, a private one ``groups:history``.
* Channels (``channel_not_found``, ``not_in_channel``), ``text`` or ``blocks`` required
  (``no_text``), Block Kit limits (more than 50 blocks, section text over 3000 characters,
  header text over 150, ...: ``invalid_blocks`` with Slack's ``errors`` list), ``thread_ts``
  that must name a message, message ``metadata`` (``event_type`` + ``event_payload``).
* Every accepted message is stored with its ``ts``, ``thread_ts`` and metadata.
  ``conversations.history`` (top-level messages, newest first) and
  ``conversations.replies`` (a thread, parent first) serve them with ``oldest``/``latest``
  (exclusive unless ``inclusive``), ``limit`` and ``cursor`` pagination (``has_more``,
  ``response_metadata.next_cursor``) and metadata only with ``include_all_metadata``.
  Like Slack, they take a channel ID only (a name is ``channel_not_found``), while
  ``chat.postMessage`` takes a name too.
* ``conversations.list``: the public channels and the private ones the bot is in, by
  ``types``, each needing its scope (``channels:read``, ``groups:read``), paginated.
* Answers have Slack's JSON shape (``{"ok": false, "error": "..."}``); webhooks answer
  plain text.

Fault injection:

* :meth:`FakeSlack.fail_next`: the next N requests (to one method) answer 429 with
  ``Retry-After`` (seconds, or any text: an HTTP date, ``inf``, ``nan``), or 503 (or any status), without doing anything: with Slack's JSON and
  an error code (``error``: any code, ``unknown_method``, ``invalid_blocks``, ...), or
  with what is not Slack answering (``page``: an HTML page from a proxy, a sign-in
  page, a wrong URL's 404; ``location``: a redirect).
* :meth:`FakeSlack.rate_limit`: at most N calls of a method per window; past that, 429
  with the ``Retry-After`` that ends the window (history methods are rate-limited).
* :meth:`FakeSlack.lose_answer`: the next post (or the post of a given digest part) is
  delivered and stored, and then the answer is lost: ``"503"`` (a gateway error page),
  ``"drop"`` (the connection closes without an answer) or ``"timeout"`` (the answer comes
  after the client stopped waiting), or ``"accepted"`` (an HTTP 202 with an empty body,
  as a relay that queues the message answers). The fake cannot be told apart from a
  Slack that took the message: only reading the channel shows it.
* ``webhook_answer`` (and ``webhook_content_type``): what the webhook answers a message
  it took, ``ok`` as Slack does by default; a Slack-compatible server's JSON
  (``{"success": true}``) or anything else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT = 40_000
MAX_PAGE = 999
BLOCK_TYPES = {"section", "header", "divider", "context", "actions", "image", "rich_text", "markdown"}
HISTORY_SCOPES = {"channels:history", "groups:history"}
ALL_SCOPES = frozenset({"chat:write", "channels:history", "groups:history", "channels:read", "groups:read"})
# The scope each method needs; for history, which one depends on the channel.
METHOD_SCOPES = {"auth.test": None, "chat.postMessage": "chat:write"}
LIST_SCOPES = {"public_channel": "channels:read", "private_channel": "groups:read"}
LossMode = Literal["503", "drop", "timeout", "drip", "accepted"]
GATEWAY_PAGE = "<html><body><h1>503 Service Unavailable</h1>upstream timed out</body></html>"


@dataclass
class Fault:
    status: int
    retry_after: float | str | None = None
    method: str | None = None  # only requests to this API method (or "webhook")
    error: str | None = None  # Slack's error code in the answer
    page: str | None = None  # an answer that is not Slack's: this HTML page
    location: str | None = None  # a redirect's target


@dataclass
class LostAnswer:
    mode: LossMode
    part: int | None = None  # only the post whose metadata names this digest part
    delay: float = 0.0  # "timeout": how long the answer takes; "drip": between its bytes


@dataclass
class RateLimit:
    calls: int
    window: float
    seen: deque[float] = field(default_factory=deque)


@dataclass
class Posted:
    """A message the fake accepted."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    via: str = "chat.postMessage"

    @property
    def part(self) -> int | None:
        """The digest part named in the metadata, if any."""
        payload = (self.metadata or {}).get("event_payload") or {}
        part = payload.get("part")
        return part if isinstance(part, int) else None


@dataclass
class Call:
    """One request the fake received: the API method, its parameters, the status answered
    (0 when the connection was dropped)."""

    method: str
    params: dict[str, Any]
    status: int = 0


@dataclass
class FakeSlack:
    """The fake server. Mutate ``tokens``/``channels``/``scopes`` before use; read ``messages``."""

    token: str = "xoxb-test-0000000000-fake-token-AbCdEf"
    tokens: set[str] = field(default_factory=set)
    # Channel id -> name; the bot is a member of these.
    channels: dict[str, str] = field(
        default_factory=lambda: {"C0DIGEST": "summitwatch", "C0CLOSED": "summit-analysts"}
    )
    # Private channels (reading them needs groups:history); the others are public.
    private_channels: set[str] = field(default_factory=lambda: {"C0CLOSED"})
    # Channels that exist but the bot has not joined.
    other_channels: dict[str, str] = field(default_factory=lambda: {"C0PRIVATE": "analysts-private"})
    webhook_path: str = "/services/T0000/B0000/webhooksecretXYZ123"
    scopes: set[str] = field(default_factory=lambda: set(ALL_SCOPES))
    # What the webhook answers a message it took (Slack: "ok", labelled text/html).
    webhook_answer: str = "ok"
    webhook_content_type: str = "text/html"
    # What becomes of a message's metadata: kept (Slack), dropped (taken, never shown in
    # the history) or refused (invalid_metadata_format): Slack-like servers without it.
    message_metadata: Literal["keep", "drop", "refuse"] = "keep"
    # A Slack-like server whose chat.postMessage answers {"ok": true} without the ts.
    answers_ts: bool = True

    def __post_init__(self) -> None:
        self.tokens.add(self.token)
        self.messages: list[Posted] = []
        self.requests: list[tuple[str, int]] = []  # (method, status answered)
        self.log: list[Call] = []
        self._faults: deque[Fault] = deque()
        self._losses: list[LostAnswer] = []
        self._limits: dict[str, RateLimit] = {}
        self._last_ts = 0.0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                owner._handle(self)

            def do_GET(self) -> None:
                owner._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A late answer ("timeout") must not hold up shutdown.
        self._server.daemon_threads = True
        self._server.block_on_close = False
        # A short poll interval: shutdown() waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # --- lifecycle and addresses -------------------------------------------------------

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What ``SLACK_API_URL`` would be: the Web API base, ending in ``/api/``."""
        return f"{self.base}/api/"

    @property
    def webhook_url(self) -> str:
        return self.base + self.webhook_path

    @property
    def history_scope(self) -> bool:
        """Whether the token can read channel history (both history scopes)."""
        return self.scopes >= HISTORY_SCOPES

    @history_scope.setter
    def history_scope(self, granted: bool) -> None:
        if granted:
            self.scopes |= HISTORY_SCOPES
        else:
            self.scopes -= HISTORY_SCOPES

    # --- fault injection ---------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        retry_after: float | str | None = None,
        method: str | None = None,
        error: str | None = None,
        page: str | None = None,
        location: str | None = None,
    ) -> None:
        """The next ``count`` requests (to ``method`` if given) answer ``status``, doing
        nothing: Slack's ``{"ok": false, "error": error}`` (by default ``ratelimited`` for
        a 429, ``service_unavailable`` otherwise; for a webhook the code as plain text),
        or, with ``page``, that HTML page instead (a proxy, a wrong URL), and with
        ``location`` a redirect there."""
        with self._lock:
            for _ in range(count):
                self._faults.append(Fault(status, retry_after, method, error, page, location))

    def recover(self) -> None:
        """Forget pending faults, losses and rate limits: Slack is back."""
        with self._lock:
            self._faults.clear()
            self._losses.clear()
            self._limits.clear()

    def rate_limit(self, method: str, calls: int, per_seconds: float) -> None:
        """At most ``calls`` requests to ``method`` per ``per_seconds``; beyond, 429 + Retry-After."""
        with self._lock:
            self._limits[method] = RateLimit(calls, per_seconds)

    def lose_answer(self, mode: LossMode = "503", *, part: int | None = None, delay: float = 0.0) -> None:
        """Deliver the next ``chat.postMessage`` (or the one carrying digest ``part``) and
        lose its answer: ``"503"``, ``"drop"``, ``"timeout"`` (answer after ``delay`` s) or
        ``"accepted"`` (a 202 with an empty body). A webhook post takes the next loss too."""
        with self._lock:
            self._losses.append(LostAnswer(mode, part, delay))

    def drop_after_accept(self) -> None:
        """Accept and record the next ``chat.postMessage`` but close without answering."""
        self.lose_answer("drop")

    def calls(self, method: str) -> int:
        """How many requests reached ``method`` (faults included)."""
        return sum(1 for call in self.log if call.method == method)

    def calls_to(self, method: str) -> list[Call]:
        """The requests that reached ``method``, in order, with their parameters."""
        return [call for call in self.log if call.method == method]

    def posted_to(self, channel: str) -> list[Posted]:
        return [m for m in self.messages if m.channel == channel]

    def parts_posted(self, channel: str, digest_key: str) -> list[int]:
        """The digest parts in ``channel`` for ``digest_key``, in posting order (duplicates kept)."""
        return [
            m.part
            for m in self.posted_to(channel)
            if m.part is not None
            and ((m.metadata or {}).get("event_payload") or {}).get("digest_key") == digest_key
        ]

    # --- request handling --------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        method = "webhook" if path.path.startswith("/services/") else path.path.removeprefix("/api/")
        params = {} if method == "webhook" else self._params(request, path.query, raw)
        call = Call(method, params)
        with self._lock:
            self.log.append(call)
        fault = self._take_fault(method)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            if fault.location is not None:
                headers["Location"] = fault.location
            error = fault.error or ("ratelimited" if fault.status == 429 else "service_unavailable")
            if fault.page is not None:
                self._reply(request, call, fault.status, fault.page, headers)
            elif method == "webhook":
                self._reply(request, call, fault.status, error, headers, content_type="text/plain")
            else:
                self._reply(request, call, fault.status, {"ok": False, "error": error}, headers)
            return
        wait = self._over_limit(method)
        if wait is not None:
            self._reply(request, call, 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)})
            return
        if method == "webhook":
            self._webhook(request, call, path.path, raw)
            return
        handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }
        handler = handlers.get(method)
        if handler is None:
            self._reply(request, call, 404, {"ok": False, "error": "unknown_method"})
            return
        auth_error = self._check_auth(request)
        if auth_error:
            self._reply(request, call, 200, {"ok": False, "error": auth_error})
            return
        needed = self._needed_scope(method, params)
        headers = {"x-oauth-scopes": ",".join(sorted(self.scopes)), "x-accepted-oauth-scopes": needed or ""}
        missing = [scope for scope in (needed or "").split(",") if scope and scope not in self.scopes]
        if missing:
            body = {
                "ok": False,
                "error": "missing_scope",
                "needed": ",".join(missing),
                "provided": ",".join(sorted(self.scopes)),
            }
            self._reply(request, call, 200, body, headers)
            return
        status, body = handler(params)
        loss = self._take_loss(params) if method == "chat.postMessage" and body.get("ok") else None
        if loss is None:
            self._reply(request, call, status, body, headers)
        elif loss.mode == "503":
            self._reply(request, call, 503, GATEWAY_PAGE)
        elif loss.mode == "drop":
            self._record(call, 0)
            request.close_connection = True
        elif loss.mode == "accepted":
            self._reply(request, call, 202, "", content_type="text/plain")
        elif loss.mode == "drip":
            # Each byte of the answer ``delay`` seconds after the last: every read is within
            # a client's timeout, the whole answer long past it.
            self._record(call, status)
            payload = json.dumps(body).encode("utf-8")
            with contextlib.suppress(OSError):  # the client gave up
                request.send_response(status)
                request.send_header("Content-Type", "application/json; charset=utf-8")
                request.send_header("Content-Length", str(len(payload)))
                request.end_headers()
                request.wfile.flush()
                for index in range(len(payload)):
                    time.sleep(loss.delay)
                    request.wfile.write(payload[index : index + 1])
                    request.wfile.flush()
        else:
            time.sleep(loss.delay)
            with contextlib.suppress(OSError):  # the client gave up long ago
                self._reply(request, call, status, body, headers)

    def _next_ts(self) -> str:
        # Real Slack ts values are epoch seconds with microseconds, unique per channel.
        self._last_ts = max(time.time(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.method is None or fault.method == method:
                    del self._faults[index]
                    return fault
        return None

    def _take_loss(self, params: dict[str, Any]) -> LostAnswer | None:
        metadata = params.get("metadata") if isinstance(params.get("metadata"), dict) else {}
        part = (metadata.get("event_payload") or {}).get("part")
        with self._lock:
            for index, loss in enumerate(self._losses):
                if loss.part is None or loss.part == part:
                    del self._losses[index]
                    return loss
        return None

    def _over_limit(self, method: str) -> int | None:
        """Seconds to wait when ``method`` is over its rate limit, else ``None`` (and counted)."""
        with self._lock:
            limit = self._limits.get(method)
            if limit is None:
                return None
            now = time.monotonic()
            while limit.seen and now - limit.seen[0] >= limit.window:
                limit.seen.popleft()
            if len(limit.seen) >= limit.calls:
                return max(1, math.ceil(limit.window - (now - limit.seen[0])))
            limit.seen.append(now)
            return None

    def _needed_scope(self, method: str, params: dict[str, Any]) -> str | None:
        if method in ("conversations.history", "conversations.replies"):
            channel, _ = self._channel_id(params.get("channel"))
            return "groups:history" if channel in self.private_channels else "channels:history"
        if method == "conversations.list":
            types = str(params.get("types") or "public_channel").split(",")
            return ",".join(LIST_SCOPES[kind] for kind in types if kind in LIST_SCOPES)
        return METHOD_SCOPES.get(method)

    @staticmethod
    def _params(request: BaseHTTPRequestHandler, query: str, raw: bytes) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(query))
        content_type = request.headers.get("Content-Type", "")
        if raw and "json" in content_type:
            params.update(json.loads(raw.decode("utf-8")))
        elif raw:
            params.update(dict(parse_qsl(raw.decode("utf-8"))))
        # Form-encoded calls send structured arguments as JSON strings, as Slack accepts.
        for key in ("blocks", "metadata"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except json.JSONDecodeError:
                    params[key] = "invalid"
        return params

    def _check_auth(self, request: BaseHTTPRequestHandler) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            return "not_authed"
        if header[7:].strip() not in self.tokens:
            return "invalid_auth"
        return None

    def _record(self, call: Call, status: int) -> None:
        with self._lock:
            call.status = status
            self.requests.append((call.method, status))

    def _reply(
        self,
        request: BaseHTTPRequestHandler,
        call: Call,
        status: int,
        body: dict[str, Any] | str,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "text/html",
    ) -> None:
        self._record(call, status)
        is_text = isinstance(body, str)
        payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", content_type if is_text else "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    # --- methods -----------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {
            "ok": True,
            "url": "https://summitwatch-test.slack.com/",
            "team": "summitwatch-test",
            "user": "summitwatch",
            "team_id": "T0000",
            "user_id": "U0000",
            "bot_id": "B0000",
        }

    def _channel_id(self, value: Any, *, by_name: bool = True) -> tuple[str | None, str | None]:
        """(channel id, error) for an id or, ``by_name``, a (#)name."""
        if not isinstance(value, str) or not value:
            return None, "channel_not_found"
        name = value.removeprefix("#") if by_name else None
        for mapping, error in ((self.channels, None), (self.other_channels, "not_in_channel")):
            for channel_id, channel_name in mapping.items():
                if value == channel_id or name == channel_name:
                    return (channel_id if error is None else None), error
        return None, "channel_not_found"

    def _post_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        channel, error = self._channel_id(params.get("channel"))
        if error or channel is None:
            return 200, {"ok": False, "error": error or "channel_not_found"}
        text = params.get("text")
        blocks = params.get("blocks")
        if not text and not blocks:
            return 200, {"ok": False, "error": "no_text"}
        if isinstance(text, str) and utf16_length(text) > MAX_MESSAGE_TEXT:
            return 200, {"ok": False, "error": "msg_too_long"}
        if blocks is not None:
            problems = block_kit_problems(blocks)
            if problems:
                return 200, {"ok": False, "error": "invalid_blocks", "errors": problems}
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None and not any(
            m.ts == thread_ts and m.channel == channel and m.thread_ts is None for m in self.messages
        ):
            return 200, {"ok": False, "error": "thread_not_found"}
        metadata = params.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return 200, {"ok": False, "error": "invalid_metadata_format"}
        if metadata is not None and self.message_metadata == "refuse":
            return 200, {"ok": False, "error": "invalid_metadata_format"}
        if self.message_metadata == "drop":
            metadata = None
        with self._lock:
            ts = self._next_ts()
            posted = Posted(channel, ts, text, blocks, thread_ts, metadata)
            self.messages.append(posted)
        message = {"type": "message", "text": text, "ts": ts, "bot_id": "B0000"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        if not self.answers_ts:
            return 200, {"ok": True}
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _history(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        channel, error = self._channel_id(params.get("channel"), by_name=False)
        if error or channel is None:
            return 200, {"ok": False, "error": error or "channel_not_found"}
        top_level = [m for m in self.messages if m.channel == channel and m.thread_ts is None]
        newest_first = sorted(self._in_range(top_level, params), key=lambda m: float(m.ts), reverse=True)
        return self._page(newest_first, params)

    def _replies(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        channel, error = self._channel_id(params.get("channel"), by_name=False)
        if error or channel is None:
            return 200, {"ok": False, "error": error or "channel_not_found"}
        parent_ts = params.get("ts")
        parent = [
            m for m in self.messages if m.channel == channel and m.ts == parent_ts and m.thread_ts is None
        ]
        if not parent:
            return 200, {"ok": False, "error": "thread_not_found"}
        replies = [m for m in self.messages if m.channel == channel and m.thread_ts == parent_ts]
        # The parent comes first, then the replies in the range, oldest first.
        in_range = sorted(self._in_range(replies, params), key=lambda m: float(m.ts))
        return self._page(parent + in_range, params)

    def _list(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        types = str(params.get("types") or "public_channel").split(",")
        listed = []
        for mapping, member in ((self.channels, True), (self.other_channels, False)):
            for channel_id, name in mapping.items():
                private = channel_id in self.private_channels
                if ("private_channel" if private else "public_channel") not in types or (
                    private and not member
                ):
                    continue
                listed.append(
                    {
                        "id": channel_id,
                        "name": name,
                        "name_normalized": name,
                        "is_channel": True,
                        "is_private": private,
                        "is_member": member,
                        "is_archived": False,
                    }
                )
        window = self._window(params)
        if window is None:
            return 200, {"ok": False, "error": "invalid_cursor"}
        start, limit = window
        more = start + limit < len(listed)
        cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return 200, {
            "ok": True,
            "channels": listed[start : start + limit],
            "response_metadata": {"next_cursor": cursor},
        }

    @staticmethod
    def _window(params: dict[str, Any]) -> tuple[int, int] | None:
        """A page's first item and size from ``cursor`` and ``limit``; None for a bad cursor."""
        try:
            limit = min(MAX_PAGE, max(1, int(params.get("limit") or 100)))
            start = (
                int(base64.b64decode(params["cursor"]).decode().removeprefix("offset:"))
                if params.get("cursor")
                else 0
            )
        except (ValueError, UnicodeDecodeError):
            return None
        return start, limit

    @staticmethod
    def _in_range(messages: list[Posted], params: dict[str, Any]) -> list[Posted]:
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        return [
            m
            for m in messages
            if (oldest <= float(m.ts) if inclusive else oldest < float(m.ts))
            and (float(m.ts) <= latest if inclusive else float(m.ts) < latest)
        ]

    def _page(self, messages: list[Posted], params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        window = self._window(params)
        if window is None:
            return 200, {"ok": False, "error": "invalid_cursor"}
        start, limit = window
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        body: dict[str, Any] = {
            "ok": True,
            "messages": [self._as_history(m, with_metadata) for m in page],
            "has_more": has_more,
        }
        if has_more:
            cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode()
            body["response_metadata"] = {"next_cursor": cursor}
        return 200, body

    @staticmethod
    def _as_history(message: Posted, with_metadata: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text or ""}
        if message.thread_ts:
            item["thread_ts"] = message.thread_ts
        if with_metadata and message.metadata:
            item["metadata"] = message.metadata
        return item

    def _webhook(self, request: BaseHTTPRequestHandler, call: Call, path: str, raw: bytes) -> None:
        # Incoming webhooks answer in plain text: "ok" or the error string.
        if path != self.webhook_path:
            self._reply(request, call, 404, "no_service")
            return
        try:
            body = json.loads(raw.decode("utf-8") or "{}")
        except json.JSONDecodeError:
            self._reply(request, call, 400, "invalid_payload")
            return
        if isinstance(body, dict):
            call.params.update(body)  # (what the message asked for, unfurling included)
        text, blocks = body.get("text"), body.get("blocks")
        if not text and not blocks:
            self._reply(request, call, 400, "no_text")
            return
        if blocks is not None and block_kit_problems(blocks):
            self._reply(request, call, 400, "invalid_blocks")
            return
        with self._lock:
            ts = self._next_ts()
            self.messages.append(Posted("webhook", ts, text, blocks, via="webhook"))
        loss = self._take_loss({})
        if loss is not None and loss.mode == "503":
            self._reply(request, call, 503, GATEWAY_PAGE)
            return
        if loss is not None and loss.mode == "drop":
            self._record(call, 0)
            request.close_connection = True
            return
        if loss is not None and loss.mode == "accepted":
            self._reply(request, call, 202, "", content_type="text/plain")
            return
        if loss is not None:
            time.sleep(loss.delay)
        with contextlib.suppress(OSError):
            self._reply(request, call, 200, self.webhook_answer, content_type=self.webhook_content_type)


def block_kit_problems(blocks: Any) -> list[str]:
    """The Block Kit rules the fake enforces, as Slack words them in ``errors``."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    problems = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"must be less than {MAX_BLOCKS + 1} items [json-pointer:/blocks]")
    for index, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{index}"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            problems.append(f"unsupported type {where}/type]")
            continue
        kind = block["type"]
        if kind == "section":
            text = block.get("text")
            fields = block.get("fields")
            if text is None and not fields:
                problems.append(f"must provide text or fields {where}]")
            if text is not None:
                problems += _text_problems(text, MAX_SECTION_TEXT, f"{where}/text")
            if fields is not None:
                if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                    problems.append(f"must be less than {MAX_SECTION_FIELDS + 1} items {where}/fields]")
                else:
                    for number, item in enumerate(fields):
                        problems += _text_problems(item, MAX_FIELD_TEXT, f"{where}/fields/{number}")
        elif kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                problems.append(f"must be a plain_text object {where}/text]")
            else:
                problems += _text_problems(text, MAX_HEADER_TEXT, f"{where}/text")
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"must have 1 to {MAX_CONTEXT_ELEMENTS} items {where}/elements]")
            else:
                for number, item in enumerate(elements):
                    problems += _text_problems(item, MAX_SECTION_TEXT, f"{where}/elements/{number}")
    return problems


def utf16_length(text: str) -> int:
    """Characters as Slack counts them for its limits: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def _text_problems(text: Any, limit: int, where: str) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in ("mrkdwn", "plain_text"):
        return [f"must be a text object {where}]"]
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return [f"must be more than 0 characters {where}/text]"]
    if utf16_length(value) > limit:
        return [f"must be less than {limit + 1} characters {where}/text]"]
    return []

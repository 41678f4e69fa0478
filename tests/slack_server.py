"""A local fake of Slack's Web API and incoming webhooks, for tests through slack-sdk.

``with FakeSlack() as slack: WebClient(token=slack.token, base_url=slack.api_url)``.

It behaves like Slack where the digest code depends on it: Bearer-token auth
(``not_authed``/``invalid_auth``), channel checks (``channel_not_found``,
``not_in_channel``), ``text`` or ``blocks`` required (``no_text``), Block Kit limits
(more than 50 blocks, section text over 3000 characters, header text over 150, ...:
``invalid_blocks`` with Slack's ``errors`` list), ``thread_ts`` that must name a message,
message metadata (kept, and returned by ``conversations.history``/``replies`` with
``include_all_metadata``). Every accepted message is recorded with its ``ts`` and
``thread_ts``. Answers have Slack's JSON shape (``{"ok": false, "error": "..."}``).

Fault injection: :meth:`FakeSlack.fail_next` makes the next N requests answer 429 with a
``Retry-After`` header, or 503 (or any status); ``drop_after_accept`` makes the next
``chat.postMessage`` be accepted and recorded but the connection closed without an
answer, the way a response lost on the network looks to the client.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT = 40_000
BLOCK_TYPES = {"section", "header", "divider", "context", "actions", "image", "rich_text", "markdown"}


@dataclass
class Fault:
    status: int
    retry_after: int | None = None
    method: str | None = None  # only requests to this API method (or "webhook")


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


@dataclass
class FakeSlack:
    """The fake server. Mutate ``tokens``/``channels`` before use; read ``messages``."""

    token: str = "xoxb-test-0000000000-fake-token-AbCdEf"
    tokens: set[str] = field(default_factory=set)
    # Channel id -> name; the bot is a member of these.
    channels: dict[str, str] = field(default_factory=lambda: {"C0DIGEST": "summitwatch"})
    # Channels that exist but the bot has not joined.
    other_channels: dict[str, str] = field(default_factory=lambda: {"C0PRIVATE": "analysts-private"})
    webhook_path: str = "/services/T0000/B0000/webhooksecretXYZ123"
    history_scope: bool = True

    def __post_init__(self) -> None:
        self.tokens.add(self.token)
        self.messages: list[Posted] = []
        self.requests: list[tuple[str, int]] = []  # (method, status answered)
        self._faults: deque[Fault] = deque()
        self._drop_next_post = False
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

    # --- fault injection ---------------------------------------------------------------

    def fail_next(
        self, count: int, status: int = 503, *, retry_after: int | None = None, method: str | None = None
    ) -> None:
        """The next ``count`` requests (to ``method`` if given) answer ``status``."""
        with self._lock:
            for _ in range(count):
                self._faults.append(Fault(status, retry_after, method))

    def recover(self) -> None:
        """Forget pending faults: Slack is back."""
        with self._lock:
            self._faults.clear()

    def drop_after_accept(self) -> None:
        """Accept and record the next ``chat.postMessage`` but close without answering."""
        self._drop_next_post = True

    def calls(self, method: str) -> int:
        """How many requests reached ``method`` (faults included)."""
        return sum(1 for name, _ in self.requests if name == method)

    def posted_to(self, channel: str) -> list[Posted]:
        return [m for m in self.messages if m.channel == channel]

    # --- request handling --------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        method = "webhook" if path.path.startswith("/services/") else path.path.removeprefix("/api/")
        fault = self._take_fault(method)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            error = "ratelimited" if fault.status == 429 else "service_unavailable"
            self._reply(request, method, fault.status, {"ok": False, "error": error}, headers)
            return
        if method == "webhook":
            self._webhook(request, path.path, raw)
            return
        params = self._params(request, path.query, raw)
        handlers = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
        }
        handler = handlers.get(method)
        if handler is None:
            self._reply(request, method, 404, {"ok": False, "error": "unknown_method"})
            return
        auth_error = self._check_auth(request)
        if auth_error:
            self._reply(request, method, 200, {"ok": False, "error": auth_error})
            return
        status, body = handler(params)
        if method == "chat.postMessage" and body.get("ok") and self._drop_next_post:
            self._drop_next_post = False
            self.requests.append((method, 0))
            request.close_connection = True
            return
        self._reply(request, method, status, body)

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

    def _reply(
        self,
        request: BaseHTTPRequestHandler,
        method: str,
        status: int,
        body: dict[str, Any] | str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.requests.append((method, status))
        is_text = isinstance(body, str)
        payload = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "text/html" if is_text else "application/json; charset=utf-8")
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

    def _channel_id(self, value: Any) -> tuple[str | None, str | None]:
        """(channel id, error) for an id or a (#)name."""
        if not isinstance(value, str) or not value:
            return None, "channel_not_found"
        name = value.removeprefix("#")
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
        if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
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
        with self._lock:
            ts = self._next_ts()
            posted = Posted(channel, ts, text, blocks, thread_ts, metadata)
            self.messages.append(posted)
        message = {"type": "message", "text": text, "ts": ts, "bot_id": "B0000"}
        if thread_ts:
            message["thread_ts"] = thread_ts
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _history(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self.history_scope:
            return 200, {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        channel, error = self._channel_id(params.get("channel"))
        if error or channel is None:
            return 200, {"ok": False, "error": error or "channel_not_found"}
        oldest = float(params.get("oldest") or 0)
        top_level = [
            m for m in self.messages if m.channel == channel and m.thread_ts is None and float(m.ts) >= oldest
        ]
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        messages = [self._as_history(m, with_metadata) for m in reversed(top_level)]
        return 200, {"ok": True, "messages": messages[: int(params.get("limit") or 100)], "has_more": False}

    def _replies(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self.history_scope:
            return 200, {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        channel, error = self._channel_id(params.get("channel"))
        if error or channel is None:
            return 200, {"ok": False, "error": error or "channel_not_found"}
        parent_ts = params.get("ts")
        thread = [
            m
            for m in self.messages
            if m.channel == channel and (m.ts == parent_ts or m.thread_ts == parent_ts)
        ]
        if not thread:
            return 200, {"ok": False, "error": "thread_not_found"}
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        return 200, {
            "ok": True,
            "messages": [self._as_history(m, with_metadata) for m in thread],
            "has_more": False,
        }

    @staticmethod
    def _as_history(message: Posted, with_metadata: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text or ""}
        if message.thread_ts:
            item["thread_ts"] = message.thread_ts
        if with_metadata and message.metadata:
            item["metadata"] = message.metadata
        return item

    def _webhook(self, request: BaseHTTPRequestHandler, path: str, raw: bytes) -> None:
        # Incoming webhooks answer in plain text: "ok" or the error string.
        if path != self.webhook_path:
            self._reply(request, "webhook", 404, "no_service")
            return
        try:
            body = json.loads(raw.decode("utf-8") or "{}")
        except json.JSONDecodeError:
            self._reply(request, "webhook", 400, "invalid_payload")
            return
        text, blocks = body.get("text"), body.get("blocks")
        if not text and not blocks:
            self._reply(request, "webhook", 400, "no_text")
            return
        if blocks is not None and block_kit_problems(blocks):
            self._reply(request, "webhook", 400, "invalid_blocks")
            return
        with self._lock:
            ts = self._next_ts()
            self.messages.append(Posted("webhook", ts, text, blocks, via="webhook"))
        self._reply(request, "webhook", 200, "ok")


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


def _text_problems(text: Any, limit: int, where: str) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in ("mrkdwn", "plain_text"):
        return [f"must be a text object {where}]"]
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return [f"must be more than 0 characters {where}/text]"]
    if len(value) > limit:
        return [f"must be less than {limit + 1} characters {where}/text]"]
    return []

"""The Slack seam through slack-sdk against a local fake of Slack's Web API and webhooks."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from pipeline.digest import DigestArticle, DigestChange, SlackMessage, build_change_digest
from pipeline.errors import ConfigError
from pipeline.settings import SlackSettings
from pipeline.slack import (
    METADATA_EVENT_TYPE,
    READ_BACK_MARGIN,
    SlackDeliveryError,
    SlackTarget,
    check_auth,
    check_read_back,
    find_posted_part,
    make_web_client,
    make_webhook_client,
    post_messages,
    post_webhook_messages,
    slack_target,
)
from tests.slack_server import ALL_SCOPES, GATEWAY_PAGE, FakeSlack, Posted

CHANNEL = "C0DIGEST"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def client_for(slack: FakeSlack, token: str | None = None, **options: float) -> WebClient:
    settings: dict[str, float] = {"backoff_factor": 0.01, "max_retries": 3, "timeout": 5.0}
    settings.update(options)
    return make_web_client(token or slack.token, slack.api_url, **settings)  # type: ignore[arg-type]


def messages(count: int) -> list[SlackMessage]:
    return [
        SlackMessage(
            text=f"part {n}",
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": f"*part {n}*"}}],
        )
        for n in range(count)
    ]


class Progress:
    """What an outbox row would hold: parts committed, the parent's ts, and since when the
    next part's post is in flight without an answer."""

    def __init__(self) -> None:
        self.sent = 0
        self.thread_ts: str | None = None
        self.unconfirmed_since: datetime | None = None
        self.calls: list[tuple[int, str]] = []
        self.postings: list[int] = []

    def __call__(self, index: int, ts: str) -> None:
        self.calls.append((index, ts))
        self.sent = index + 1
        self.unconfirmed_since = None
        if index == 0:
            self.thread_ts = ts

    def posting(self, index: int, at: datetime) -> None:
        self.postings.append(index)
        self.unconfirmed_since = self.unconfirmed_since or at

    def resume(self) -> dict[str, Any]:
        """The arguments a retried delivery gets from the outbox."""
        return {
            "already_sent": self.sent,
            "thread_ts": self.thread_ts,
            "unconfirmed_since": self.unconfirmed_since,
            "on_sent": self,
            "on_posting": self.posting,
        }


def target_for(slack: FakeSlack, channel: str = CHANNEL, **options: float) -> SlackTarget:
    """The target the outbox uses, from settings, with fast retries and a 1 s timeout."""
    settings: dict[str, Any] = {"backoff_factor": 0.01, "timeout": 1.0, "read_back_delay": 0.05}
    settings.update(options)
    target = slack_target(
        SlackSettings(bot_token=SecretStr(slack.token), channel=channel, api_url=slack.api_url), **settings
    )
    assert target is not None
    return target


def digest_parts(slack: FakeSlack, key: str, channel: str = CHANNEL) -> list[int]:
    return slack.parts_posted(channel, key)


# --- happy path -------------------------------------------------------------------------


def test_parent_then_threaded_follow_ups(slack: FakeSlack) -> None:
    progress = Progress()
    result = post_messages(client_for(slack), CHANNEL, messages(3), on_sent=progress)
    assert result.sent == 3
    parent, *replies = slack.posted_to(CHANNEL)
    assert parent.thread_ts is None
    assert parent.text == "part 0"
    assert [r.thread_ts for r in replies] == [parent.ts, parent.ts]
    assert result.thread_ts == parent.ts
    assert progress.calls == [(0, parent.ts), (1, replies[0].ts), (2, replies[1].ts)]
    assert result.timestamps == (parent.ts, replies[0].ts, replies[1].ts)


def test_channel_by_name_and_api_url_without_trailing_slash(slack: FakeSlack) -> None:
    client = make_web_client(SecretStr(slack.token), slack.api_url.rstrip("/"), backoff_factor=0.01)
    post_messages(client, "#summitwatch", messages(1), on_sent=Progress())
    assert len(slack.posted_to(CHANNEL)) == 1


def test_auth_test(slack: FakeSlack) -> None:
    identity = check_auth(client_for(slack))
    assert identity["team"] == "summitwatch-test"
    assert identity["bot_id"] == "B0000"
    with pytest.raises(SlackDeliveryError) as failure:
        check_auth(client_for(slack, token="xoxb-wrong-token-123"))
    assert failure.value.permanent
    assert failure.value.bad_configuration


def test_a_real_digest_is_accepted_by_the_block_kit_checks(slack: FakeSlack) -> None:
    now = datetime(2025, 5, 8, 7, tzinfo=UTC)

    class Change:
        series, at, direction, count, baseline = "topic:energy", now, "up", 40, 9.0
        explanation = "40 articles in the last 24 h against 9.0/day over the previous 28 days"

    changes = [
        DigestChange(
            Change(),
            [(now - timedelta(days=14 - d), d) for d in range(14)],
            [
                DigestArticle(k, "Газ & <нефть> " * 30, f"https://e.com/{k}", "TASS", "ru", "x & y " * 60, k)
                for k in range(5)
            ],
        )
        for _ in range(40)
    ]
    digest = build_change_digest(changes, web_base_url="https://sw.example.org", generated_at=now)
    assert len(digest.messages) > 1
    result = post_messages(
        client_for(slack), CHANNEL, digest.messages, on_sent=Progress(), digest_key=digest.digest_key
    )
    assert result.sent == len(digest.messages) == len(slack.posted_to(CHANNEL))


# --- retries ----------------------------------------------------------------------------


def test_rate_limit_is_retried_after_retry_after(slack: FakeSlack) -> None:
    slack.fail_next(1, 429, retry_after=1, method="chat.postMessage")
    started = time.monotonic()
    result = post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    assert time.monotonic() - started >= 1.0
    assert result.sent == 1
    assert slack.calls("chat.postMessage") == 2
    assert len(slack.messages) == 1


def test_a_retry_after_longer_than_allowed_is_not_waited_for(slack: FakeSlack) -> None:
    slack.fail_next(1, 429, retry_after=120, method="chat.postMessage")
    started = time.monotonic()
    with pytest.raises(SlackDeliveryError, match="rate-limited") as failure:
        post_messages(client_for(slack, max_retry_after=5), CHANNEL, messages(1), on_sent=Progress())
    assert time.monotonic() - started < 5
    assert not failure.value.permanent  # the digest stays pending...
    assert failure.value.retry_after == 120  # ...for as long as Slack asked
    assert "asked to wait 120 s (Retry-After), longer than the 5 s a run waits" in str(failure.value)
    assert "not tried again before" in str(failure.value)
    assert "that part was not posted" in str(failure.value)
    assert "after the retries" not in str(failure.value)


def test_a_retry_after_given_as_an_http_date_is_read_as_the_time_until_then(slack: FakeSlack) -> None:
    """RFC 9110 allows a date: two minutes from now is a two-minute wait, not one second."""
    then = datetime.now(UTC) + timedelta(seconds=120)
    slack.fail_next(1, 429, retry_after=format_datetime(then, usegmt=True), method="chat.postMessage")
    with pytest.raises(SlackDeliveryError, match="longer than the 5 s a run waits") as failure:
        post_messages(client_for(slack, max_retry_after=5), CHANNEL, messages(1), on_sent=Progress())
    assert failure.value.retry_after is not None and 115 < failure.value.retry_after <= 120
    assert slack.messages == []


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_retry_after_that_is_not_a_finite_number_counts_as_a_missing_one(
    slack: FakeSlack, value: str
) -> None:
    """Taken as Retry-After missing (1 s): never an endless wait, a crash, or no wait at all."""
    slack.fail_next(1, 429, retry_after=value, method="chat.postMessage")
    with pytest.raises(SlackDeliveryError, match="asked to wait 1 s") as failure:
        post_messages(client_for(slack, max_retry_after=0.5), CHANNEL, messages(1), on_sent=Progress())
    assert failure.value.retry_after == 1.0 and not failure.value.permanent
    assert slack.messages == []
    # Within what a run waits, it is waited out like any Retry-After of 1 s.
    slack.fail_next(1, 429, retry_after=value, method="chat.postMessage")
    started = time.monotonic()
    assert post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress()).sent == 1
    assert 1.0 <= time.monotonic() - started < 5


@pytest.mark.parametrize("value", ["1000000000", "2.5e11", "1e300"])
def test_a_retry_after_of_years_defers_the_digest_an_hour_at_most(slack: FakeSlack, value: str) -> None:
    slack.fail_next(1, 429, retry_after=value, method="chat.postMessage")
    started = datetime.now(UTC).replace(microsecond=0)
    with pytest.raises(SlackDeliveryError) as failure:
        post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    assert failure.value.retry_after == 3600
    message = str(failure.value)
    assert f"asked to wait {float(value):g} s (Retry-After)" in message
    found = re.search(r"not tried again before (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", message)
    assert found is not None
    after = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert started + timedelta(hours=1) <= after <= datetime.now(UTC) + timedelta(hours=1)
    assert "Slack asked for longer, but a digest is deferred by at most 60 minutes" in message


def test_slack_sdk_s_errors_for_answers_handled_here_are_debug_lines(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer that is not Slack's JSON, or a connection dropped after the post, is
    handled (and logged) by summitwatch: slack-sdk's own ERROR lines for them would say
    that something failed which the run then recovers from."""
    caplog.set_level(logging.DEBUG)
    for method in ("auth.test", "conversations.history", "chat.postMessage"):  # (a wrong URL)
        slack.fail_next(1, 404, page="<html>404 Not Found</html>", method=method)
    with pytest.raises(SlackDeliveryError):
        target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k")
    slack.lose_answer("drop")
    target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k")
    sdk = [
        r for r in caplog.records if r.name == "pipeline.slack.sdk" and r.getMessage().startswith("Failed")
    ]
    assert {r.getMessage().split(":")[0] for r in sdk} == {
        "Failed to decode Slack API response",
        "Failed to send a request to Slack API server",
    }
    assert all(r.levelno == logging.DEBUG for r in sdk)
    caplog.clear()
    caplog.set_level(logging.INFO)
    slack.lose_answer("drop")
    target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k2")
    assert not [r for r in caplog.records if r.name == "pipeline.slack.sdk"]


def test_a_server_error_on_a_post_is_looked_up_before_posting_again(slack: FakeSlack) -> None:
    # The 503s come before Slack stored anything: the look-ups find nothing, the part is
    # posted again, and it is in the channel once.
    slack.fail_next(2, 503, method="chat.postMessage")
    result = post_messages(
        client_for(slack),
        CHANNEL,
        messages(1),
        on_sent=Progress(),
        digest_key="k",
        read_back=True,
        read_back_delay=0,
    )
    assert result.sent == 1
    assert result.recovered == ()
    assert slack.calls("chat.postMessage") == 3
    assert slack.calls("conversations.history") == 2
    assert digest_parts(slack, "k") == [0]


@pytest.mark.parametrize("metadata", ["drop", "refuse"])
def test_a_server_without_message_metadata_gets_each_part_once(
    slack: FakeSlack, metadata: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Slack-like server that drops message metadata (the history never shows it) or
    refuses it: the parts are posted (without it, after a refusal), and a part whose
    answer was lost after the server stored it is found by its text, not posted twice."""
    slack.message_metadata = metadata  # type: ignore[assignment]
    slack.lose_answer("503")  # (the first part the server takes)
    progress = Progress()
    result = target_for(slack).post(messages(3), on_sent=progress, digest_key="changes:k")
    assert (result.sent, result.recovered) == (3, (0,))
    posted = slack.posted_to(CHANNEL)
    assert [m.text for m in posted] == ["part 0", "part 1", "part 2"]
    assert [m.thread_ts for m in posted] == [None, posted[0].ts, posted[0].ts]
    assert all(m.metadata is None for m in posted)
    refused = [r for r in caplog.records if "refused the digest's message metadata" in r.getMessage()]
    assert len(refused) == (1 if metadata == "refuse" else 0)


def test_a_message_of_the_same_text_with_another_digest_s_metadata_is_not_the_part(slack: FakeSlack) -> None:
    """Only a message without metadata is told by its text: another digest's part of the
    same text (its key in its metadata) is not taken for this one's lost part."""
    target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k")
    slack.fail_next(1, 503, method="chat.postMessage")  # (before the server stored it)
    result = target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k2")
    assert (result.sent, result.recovered) == (1, ())
    assert digest_parts(slack, "changes:k2") == [0]


def test_lost_answers_that_outlast_the_retries_leave_the_part_in_doubt(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail_next(10, 502, method="chat.postMessage")
    progress = Progress()
    with pytest.raises(SlackDeliveryError, match="was lost 3 times") as failure:
        post_messages(
            client_for(slack),
            CHANNEL,
            messages(2),
            on_sent=progress,
            digest_key="k",
            max_retries=2,
            retry_delay=0,
        )
    assert not failure.value.permanent
    assert failure.value.in_doubt  # the next attempt must look before posting
    assert failure.value.delivered == 0
    assert slack.calls("chat.postMessage") == 3
    assert progress.calls == []
    assert slack.messages == []
    # Without read-back each lost answer is logged as possibly doubling the part.
    assert caplog.text.count("digest k part 1 of 2: Slack answered HTTP 502") == 3
    assert caplog.text.count("will be posted again by the next attempt") == 1


def test_unreachable_slack_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_web_client(
        "xoxb-unreachable-token", f"http://127.0.0.1:{port}/api/", max_retries=1, backoff_factor=0.01
    )
    with pytest.raises(SlackDeliveryError, match="cannot reach Slack") as failure:
        post_messages(client, CHANNEL, messages(1), on_sent=Progress())
    assert not failure.value.permanent


# --- permanent errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "channel", "blocks", "error", "bad_configuration"),
    [
        ("xoxb-not-the-right-token", CHANNEL, 1, "invalid_auth", True),
        (None, "C0NOSUCH", 1, "channel_not_found", True),
        (None, "C0PRIVATE", 1, "not_in_channel", True),
        (None, CHANNEL, 51, "invalid_blocks", False),
    ],
)
def test_permanent_errors(
    slack: FakeSlack, token: str | None, channel: str, blocks: int, error: str, bad_configuration: bool
) -> None:
    message = SlackMessage(
        text="digest", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}] * blocks
    )
    with pytest.raises(SlackDeliveryError, match=error) as failure:
        post_messages(client_for(slack, token=token), channel, [message], on_sent=Progress())
    assert failure.value.permanent
    assert failure.value.error_code == error
    assert failure.value.bad_configuration is bad_configuration
    # Only a refusal of the message itself is the digest's fault (it is quarantined).
    assert failure.value.refused_content is (error == "invalid_blocks")
    assert slack.calls("chat.postMessage") == 1  # permanent errors are not retried


def test_an_answer_that_is_not_slack_s_is_no_verdict_on_the_message(slack: FakeSlack) -> None:
    """A proxy's page, a wrong URL's 404 or a redirect is not Slack refusing anything:
    transient, no error code, and the message says what to check."""
    page = "<html><body><h1>404 Not Found</h1></body></html>"
    # (A wrong URL: every method answers that page. auth.test alone could be a server
    # without it: the post tells.)
    for method in ("auth.test", "conversations.history", "chat.postMessage"):
        slack.fail_next(1, 404, page=page, method=method)
    with pytest.raises(SlackDeliveryError) as preflight:
        target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k")
    slack.fail_next(1, 307, page="", location="/elsewhere/", method="chat.postMessage")
    with pytest.raises(SlackDeliveryError) as redirected:
        post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    slack.fail_next(1, 404, page=page, method="webhook")
    with pytest.raises(SlackDeliveryError) as hook:
        post_webhook_messages(make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress())
    for failure, setting in (
        (preflight, "SLACK_API_URL"),
        (redirected, "SLACK_API_URL"),
        (hook, "SLACK_WEBHOOK_URL"),
    ):
        error = failure.value
        assert not (error.permanent or error.refused_content or error.in_doubt)
        assert error.error_code is None
        assert f"is not Slack's (HTTP {404 if error is not redirected.value else 307}" in str(error)
        assert f"check {setting}" in str(error)
    assert "a redirect to /elsewhere/" in str(redirected.value)
    assert "404 Not Found" in str(preflight.value)
    assert slack.messages == []


@pytest.mark.parametrize(
    ("status", "method"), [(302, "auth.test"), (301, "chat.postMessage"), (303, "webhook")]
)
def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(
    slack: FakeSlack, status: int, method: str
) -> None:
    """urllib carries a request's headers (the bot token's Authorization) and, on a 301 to
    303, a GET in place of the POST to wherever a redirect points: the 3xx is the answer,
    not Slack's, and the other host hears nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    heard: list[tuple[str, str | None]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            heard.append((self.path, self.headers.get("Authorization")))
            body = b'{"ok": true, "channel": "C0DIGEST", "ts": "1.1", "user_id": "U1"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}/login?next=/api"
    try:
        slack.fail_next(1, status, page="", location=target, method=method)
        if method == "webhook":
            send = lambda: post_webhook_messages(  # noqa: E731
                make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress()
            )
        elif method == "auth.test":
            send = lambda: target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:k")  # noqa: E731
        else:
            send = lambda: post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())  # noqa: E731
        with pytest.raises(SlackDeliveryError) as failure:
            send()
    finally:
        server.shutdown()
        server.server_close()
    assert heard == []
    error = failure.value
    assert f"is not Slack's (HTTP {status}, a redirect to {target})" in str(error)
    assert not (error.permanent or error.refused_content or error.in_doubt)
    assert slack.messages == []


SIGN_IN_PAGE = "<!doctype html><html><body><form>Sign in to continue</form></body></html>"


def test_a_sign_in_page_answered_with_200_is_not_slack_s_answer(slack: FakeSlack) -> None:
    """A proxy's sign-in page, or where a redirect led, answers 200: nothing was posted,
    no post is repeated, and the digest waits (a webhook's 200 must say "ok")."""
    slack.fail_next(1, 200, page=SIGN_IN_PAGE, method="chat.postMessage")
    with pytest.raises(SlackDeliveryError) as api:
        post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    assert slack.calls("chat.postMessage") == 1
    slack.fail_next(1, 200, page=SIGN_IN_PAGE, method="webhook")
    with pytest.raises(SlackDeliveryError) as hook:
        post_webhook_messages(make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress())
    assert slack.calls("webhook") == 1
    for failure, setting in ((api, "SLACK_API_URL"), (hook, "SLACK_WEBHOOK_URL")):
        error = failure.value
        assert not (error.permanent or error.refused_content or error.in_doubt)
        assert "is not Slack's (HTTP 200" in str(error) and "Sign in to continue" in str(error)
        assert f"check {setting}" in str(error)
    assert slack.messages == []
    # A webhook's own "ok" is delivery.
    assert (
        post_webhook_messages(make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress()).sent
        == 1
    )


def test_a_webhook_200_in_plain_text_without_ok_is_an_answer_lost_on_the_way(slack: FakeSlack) -> None:
    """Not a web page, not "ok": Slack may have posted (a cut answer), so it is sent again
    as for any lost answer."""
    slack.fail_next(1, 200, method="webhook", error="accepted")
    result = post_webhook_messages(
        make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress(), retry_delay=0
    )
    assert result.sent == 1
    assert slack.calls("webhook") == 2
    assert len(slack.messages) == 1


def test_a_2xx_other_than_slack_s_confirmation_is_an_answer_lost_on_the_way(slack: FakeSlack) -> None:
    """A 202 with an empty body (a relay that queued the message), like any 2xx that is
    neither Slack's confirmation nor a web page, may have posted the part: the Web API
    looks for it in the channel, a webhook counts it as in doubt. Neither takes it for a
    part certainly not posted, which the next run would post again unseen, at every run."""
    slack.lose_answer("accepted", part=0)
    progress = Progress()
    result = target_for(slack).post(messages(2), on_sent=progress, digest_key="changes:relay")
    assert result.recovered == (0,) and progress.sent == 2
    assert digest_parts(slack, "changes:relay") == [0, 1]

    slack.messages.clear()
    slack.lose_answer("accepted")
    error = _one_webhook_failure(slack)
    assert error.in_doubt and error.posted_in_doubt and not error.permanent
    assert "HTTP 202" in str(error) and "nothing was posted" not in str(error)
    assert len(slack.messages) == 1


def _one_webhook_failure(slack: FakeSlack) -> SlackDeliveryError:
    """The error of posting one part through ``slack``'s incoming webhook, tried once."""
    with pytest.raises(SlackDeliveryError) as failure:
        post_webhook_messages(
            make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress(), max_retries=0
        )
    return failure.value


@pytest.mark.parametrize(
    ("answer", "content_type"),
    [('{"success": true}', "application/json"), ('{"ok": true}', "application/json; charset=utf-8")],
    ids=["rocket.chat", "ok-json"],
)
def test_a_slack_compatible_webhook_s_json_answer_is_delivery(
    slack: FakeSlack, answer: str, content_type: str
) -> None:
    """A server that takes Slack's webhooks and says so in JSON: each part is posted once."""
    slack.webhook_answer, slack.webhook_content_type = answer, content_type
    progress = Progress()
    result = post_webhook_messages(
        make_webhook_client(slack.webhook_url), messages(2), on_sent=progress, retry_delay=0
    )
    assert result.sent == 2 and progress.calls == [(0, ""), (1, "")]
    assert [m.text for m in slack.messages] == ["part 0", "part 1"]
    assert slack.calls("webhook") == 2


def test_a_webhook_answer_nested_too_deep_to_read_is_no_answer(slack: FakeSlack) -> None:
    """JSON nested deeper than Python reads (a hostile or broken server's 200) stopped the
    delivery with a RecursionError; it is an answer that says nothing: the part may have
    been posted."""
    slack.webhook_answer = '{"a":' * 100_000 + "1" + "}" * 100_000
    slack.webhook_content_type = "application/json"
    error = _one_webhook_failure(slack)
    assert error.in_doubt and not error.permanent
    assert len(slack.messages) == 1


@pytest.mark.parametrize("code", ["internal_error", "fatal_error"])
def test_a_webhook_s_json_internal_error_may_have_posted(slack: FakeSlack, code: str) -> None:
    """Slack's own failure after taking the request, said in JSON: the part may be in the
    channel, so it counts as posted in doubt (bounded across runs), not as certainly not
    posted (posted again at every run, uncounted)."""
    slack.webhook_answer = f'{{"ok": false, "error": "{code}"}}'
    slack.webhook_content_type = "application/json"
    error = _one_webhook_failure(slack)
    assert error.in_doubt and error.posted_in_doubt and not error.permanent


@pytest.mark.parametrize(
    ("status", "answer", "code"),
    [
        (400, '{"ok": false, "error": "invalid_payload"}', "invalid_payload"),
        (200, '{"ok": false, "error": "channel_not_found"}', "channel_not_found"),
        (404, '{"success": false, "error": "no_service"}', "no_service"),
    ],
    ids=["400-content", "200-configuration", "404-success-false"],
)
def test_a_slack_compatible_webhook_s_json_refusal_is_read_as_its_error_code(
    slack: FakeSlack, status: int, answer: str, code: str
) -> None:
    """A server that says "ok" in JSON says its refusals in JSON too: the error code is
    Slack's, as if answered in plain text (the message refused, or the settings at fault),
    not an unknown answer that may have posted the part (a 200) or is no verdict at all."""
    slack.fail_next(1, status, method="webhook", page=answer)
    with pytest.raises(SlackDeliveryError) as failure:
        post_webhook_messages(
            make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress(), retry_delay=0
        )
    error = failure.value
    assert error.error_code == code and error.permanent and not error.in_doubt
    assert error.refused_content == (code == "invalid_payload")
    assert error.bad_configuration == (code != "invalid_payload")
    assert f"answered HTTP {status}: {code}" in str(error)
    assert slack.calls("webhook") == 1 and slack.messages == []


def test_a_webhook_part_unconfirmed_for_several_runs_is_not_posted_again(slack: FakeSlack) -> None:
    """A webhook cannot look in the channel: after a few runs that each posted the part and
    never got a confirming answer, it is given up, not posted at every run for ever."""
    client = make_webhook_client(slack.webhook_url)
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(SlackDeliveryError, match="check the channel") as failure:
        post_webhook_messages(
            client,
            messages(2),
            on_sent=Progress(),
            digest_key="changes:hook",
            unconfirmed_since=earlier,
            unconfirmed_runs=3,
        )
    assert failure.value.given_up and failure.value.in_doubt and failure.value.delivered == 0
    assert slack.calls("webhook") == 0
    # Fewer runs: posted again (at-least-once), as before.
    post_webhook_messages(
        client, messages(2), on_sent=Progress(), unconfirmed_since=earlier, unconfirmed_runs=2
    )
    assert [m.text for m in slack.messages] == ["part 0", "part 1"]


def test_oversized_section_and_header_are_invalid_blocks(slack: FakeSlack) -> None:
    for block in (
        {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}},
        {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}},
    ):
        with pytest.raises(SlackDeliveryError, match=r"invalid_blocks .*less than"):
            post_messages(client_for(slack), CHANNEL, [SlackMessage("t", [block])], on_sent=Progress())


# --- exactly once -----------------------------------------------------------------------


def test_partial_send_resumes_without_duplicates(slack: FakeSlack) -> None:
    client = client_for(slack, max_retries=1)
    progress = Progress()

    def commit_then_break_slack(index: int, ts: str) -> None:
        progress(index, ts)
        if index == 0:
            slack.fail_next(10, 503)  # posts and look-ups alike

    with pytest.raises(SlackDeliveryError) as failure:
        post_messages(
            client,
            CHANNEL,
            messages(3),
            on_sent=commit_then_break_slack,
            on_posting=progress.posting,
            digest_key="k",
            read_back=True,
            read_back_delay=0,
        )
    assert not failure.value.permanent
    assert failure.value.in_doubt
    assert failure.value.delivered == 1
    assert progress.sent == 1
    assert progress.unconfirmed_since is not None  # part 2 is in flight as far as the outbox knows
    assert len(slack.messages) == 1

    slack.recover()
    result = post_messages(client, CHANNEL, messages(3), digest_key="k", read_back=True, **progress.resume())  # type: ignore[arg-type]
    assert result.sent == 3
    posted = slack.posted_to(CHANNEL)
    assert [m.text for m in posted] == ["part 0", "part 1", "part 2"]
    assert [m.thread_ts for m in posted[1:]] == [posted[0].ts] * 2
    # Nothing left to send: a second retry posts nothing.
    again = post_messages(client, CHANNEL, messages(3), digest_key="k", read_back=True, **progress.resume())  # type: ignore[arg-type]
    assert again.sent == 3
    assert len(slack.messages) == 3


def test_an_answer_dripping_in_is_cut_at_the_deadline_and_the_part_looked_for(slack: FakeSlack) -> None:
    """Each byte of the answer within the client's timeout, the whole of it far past it: the
    call ends at its deadline (twice the timeout) as an answer lost, the part is found in
    the channel, and nothing is posted twice."""
    slack.lose_answer("drip", part=0, delay=0.4)
    started = time.monotonic()
    result = target_for(slack).post(
        messages(2), on_sent=Progress(), digest_key="changes:drip", destination="slack:C0DIGEST"
    )
    elapsed = time.monotonic() - started
    assert elapsed < 12, f"{elapsed:.1f} s: a {len(slack.posted_to(CHANNEL))}-part answer dripped in whole"
    assert result.sent == 2 and result.recovered == (0,)
    assert digest_parts(slack, "changes:drip") == [0, 1]
    assert slack.calls("chat.postMessage") == 2


@pytest.mark.parametrize("status", [503, 400, 302])
def test_an_error_answer_dripping_in_is_cut_at_the_deadline_too(status: int) -> None:
    """An answer that is not a 2xx is read by slack-sdk after the request returns: its body,
    arriving a byte at a time, is read within the call's deadline all the same."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = b'{"ok": false, "error": "service_unavailable", "padding": "' + b"x" * 40 + b'"}'

    class Dripping(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 302:
                self.send_header("Location", "/elsewhere")
            self.end_headers()
            try:
                for index in range(len(body)):
                    time.sleep(0.5)
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
            except OSError:
                pass

        do_GET = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = make_web_client(
        "xoxb-test", f"http://127.0.0.1:{server.server_address[1]}/api/", timeout=1.0, max_retries=0
    )
    started = time.monotonic()
    try:
        with pytest.raises(SlackDeliveryError):
            post_messages(client, CHANNEL, messages(1), on_sent=Progress(), max_retries=0)
    finally:
        server.shutdown()
        server.server_close()
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"{elapsed:.1f} s: the error's body was read without a deadline"


def test_resuming_after_the_parent_needs_its_ts(slack: FakeSlack) -> None:
    with pytest.raises(ValueError, match="thread_ts"):
        post_messages(client_for(slack), CHANNEL, messages(3), already_sent=1, on_sent=Progress())


@pytest.mark.parametrize("mode", ["503", "drop", "timeout"])
@pytest.mark.parametrize("lost", [0, 1, 3], ids=["parent", "middle", "last"])
def test_a_lost_answer_never_puts_a_part_in_the_channel_twice(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture, mode: str, lost: int
) -> None:
    """Slack stores the part, then the answer is lost (a gateway 503, a dropped connection,
    an answer after the client's timeout): the part is found in the channel, not posted
    again, and the follow-ups thread under the parent Slack really has."""
    caplog.set_level(logging.INFO, logger="pipeline.slack")
    slack.lose_answer(mode, part=lost, delay=1.6)  # type: ignore[arg-type]
    target = target_for(slack)
    progress = Progress()
    started = datetime.now(UTC)
    result = target.post(
        messages(4),
        on_sent=progress,
        on_posting=progress.posting,
        digest_key="changes:k1",
        destination="slack:C0DIGEST",
    )

    assert digest_parts(slack, "changes:k1") == [0, 1, 2, 3]  # every part once, in order
    assert slack.calls("chat.postMessage") == 4  # the lost one was not posted again
    assert result.sent == 4
    assert result.recovered == (lost,)
    parent, *follow_ups = slack.posted_to(CHANNEL)
    assert result.thread_ts == parent.ts
    assert [m.thread_ts for m in follow_ups] == [parent.ts] * 3
    assert progress.calls == [(m.part, m.ts) for m in slack.posted_to(CHANNEL)]
    assert progress.unconfirmed_since is None
    # The look-up read the right conversation, with metadata, from just before the first try.
    method = "conversations.history" if lost == 0 else "conversations.replies"
    (lookup,) = slack.calls_to(method)
    assert str(lookup.params["include_all_metadata"]).lower() in ("1", "true")
    oldest = float(lookup.params["oldest"])
    assert (
        (started - READ_BACK_MARGIN).timestamp() - 1
        <= oldest
        <= started.timestamp() - READ_BACK_MARGIN.total_seconds() + 5
    )
    if lost > 0:
        assert lookup.params["ts"] == parent.ts
    assert f"digest changes:k1 part {lost + 1} of 4" in caplog.text
    assert "not posted again" in caplog.text
    metadata = slack.posted_to(CHANNEL)[lost].metadata
    assert metadata == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "digest_key": "changes:k1",
            "part": lost,
            "parts": 4,
            "destination": "slack:C0DIGEST",
        },
    }


def test_a_part_of_another_digest_or_destination_is_not_taken_for_ours(slack: FakeSlack) -> None:
    client = client_for(slack)
    post_messages(
        client,
        CHANNEL,
        messages(1),
        on_sent=Progress(),
        digest_key="changes:other",
        destination="slack:C0DIGEST",
    )
    post_messages(
        client, CHANNEL, messages(1), on_sent=Progress(), digest_key="changes:k2", destination="slack:C0ELSE"
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert (
        find_posted_part(client, CHANNEL, "changes:k2", 0, oldest=since, destination="slack:C0DIGEST") is None
    )
    assert (
        find_posted_part(client, CHANNEL, "changes:k2", 0, oldest=since, destination="slack:C0ELSE")
        == slack.messages[1].ts
    )
    assert (
        find_posted_part(client, CHANNEL, "changes:k2", 0, oldest=datetime.now(UTC) + timedelta(minutes=1))
        is None
    )


def test_a_crash_between_post_and_commit_is_resolved_from_the_channel(slack: FakeSlack) -> None:
    client = client_for(slack)
    progress = Progress()

    def commit_fails_on_part_1(index: int, ts: str) -> None:
        if index == 1:
            raise RuntimeError("database went away")  # Slack has part 1; the outbox doesn't know
        progress(index, ts)

    with pytest.raises(RuntimeError):
        post_messages(
            client,
            CHANNEL,
            messages(3),
            on_sent=commit_fails_on_part_1,
            on_posting=progress.posting,
            digest_key="changes:abc",
        )
    assert progress.sent == 1
    assert progress.unconfirmed_since is not None
    assert len(slack.messages) == 2

    result = post_messages(
        client,
        CHANNEL,
        messages(3),
        digest_key="changes:abc",
        read_back=True,
        read_back_delay=0,
        **progress.resume(),
    )  # type: ignore[arg-type]
    assert result.sent == 3
    assert result.recovered == (1,)
    assert [m.text for m in slack.messages] == ["part 0", "part 1", "part 2"]  # part 1 not posted twice
    assert [index for index, _ in progress.calls] == [0, 1, 2]
    assert slack.calls("conversations.history") == 0  # the parent's ts was known: only its thread was read


def test_a_busy_channel_is_read_page_by_page_through_rate_limits(slack: FakeSlack) -> None:
    """The parent's answer is lost and the process stops; by the next run 450 other
    messages arrived. The look-up pages through them, waiting out the 429s."""
    client = client_for(slack, max_retries=3)
    progress = Progress()
    slack.lose_answer("drop", part=0)
    with pytest.raises(SlackDeliveryError) as failure:
        post_messages(
            client,
            CHANNEL,
            messages(2),
            on_sent=progress,
            on_posting=progress.posting,
            digest_key="changes:busy",
            max_retries=0,
        )
    assert failure.value.in_doubt
    for n in range(450):
        with slack._lock:
            slack.messages.append(Posted(CHANNEL, slack._next_ts(), f"chatter {n}", None))
    slack.rate_limit("conversations.history", calls=2, per_seconds=1.0)

    result = post_messages(
        client,
        CHANNEL,
        messages(2),
        digest_key="changes:busy",
        read_back=True,
        read_back_delay=0,
        **progress.resume(),
    )  # type: ignore[arg-type]
    assert result.recovered == (0,)
    assert digest_parts(slack, "changes:busy") == [0, 1]
    history = slack.calls_to("conversations.history")
    assert [call.status for call in history].count(429) >= 1
    assert [call.status for call in history if call.status == 200] == [200, 200, 200]  # three pages of 200
    assert "cursor" not in history[0].params and all("cursor" in c.params for c in history[1:])
    assert len({c.params["oldest"] for c in history}) == 1


def test_a_429_storm_still_delivers_each_part_once(slack: FakeSlack) -> None:
    target = target_for(slack, max_retries=2, max_retry_after=2)
    progress = Progress()
    # Posts rate-limited: 429 means not posted, slack-sdk waits and posts again.
    slack.fail_next(2, 429, retry_after=1, method="chat.postMessage")
    # Part 2's answer is lost and the thread cannot be read for a while: no blind repost.
    slack.lose_answer("503", part=1)
    slack.fail_next(6, 429, retry_after=1, method="conversations.replies")
    with pytest.raises(SlackDeliveryError, match="rate-limited") as failure:
        target.post(messages(3), on_sent=progress, on_posting=progress.posting, digest_key="changes:storm")
    # The look-up was rate-limited, not a post: nothing is claimed about what was posted.
    assert "rate-limited conversations.replies" in str(failure.value)
    assert "posted" not in str(failure.value)
    assert failure.value.in_doubt
    assert not failure.value.permanent
    assert digest_parts(slack, "changes:storm") == [0, 1]
    # The storm passes; the next run finds part 2 and posts part 3.
    slack.recover()
    target.post(messages(3), digest_key="changes:storm", **progress.resume())  # type: ignore[arg-type]
    assert digest_parts(slack, "changes:storm") == [0, 1, 2]
    assert progress.sent == 3


def test_the_server_error_retry_handler_never_reposts(slack: FakeSlack) -> None:
    """slack-sdk's own retries: a post's 5xx is never repeated by the client, a read's is."""
    client = client_for(slack, max_retries=3)
    slack.lose_answer("503")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="once")
    assert slack.calls("chat.postMessage") == 1
    assert len(slack.messages) == 1
    slack.fail_next(2, 503, method="chat.postMessage")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="not stored")
    assert slack.calls("chat.postMessage") == 2
    slack.fail_next(2, 503, method="conversations.history")
    assert client.conversations_history(channel=CHANNEL)["ok"]
    assert slack.calls("conversations.history") == 3
    webhook = make_webhook_client(slack.webhook_url, backoff_factor=0.01)
    slack.lose_answer("503")
    assert webhook.send(text="once").status_code == 503
    assert slack.calls("webhook") == 1
    assert [m.text for m in slack.messages] == ["once", "once"]


# --- scopes: exactly once or at-least-once, said at start -------------------------------


def test_scopes_come_from_the_token_and_are_checked_once(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.slack")
    target = target_for(slack)
    target.post(messages(1), on_sent=Progress(), digest_key="a")
    target.post(messages(2), on_sent=Progress(), digest_key="b")
    assert slack.calls("auth.test") == 1
    assert slack.calls("conversations.history") == 0  # both history scopes granted: no probe
    assert caplog.text.count("(exactly once)") == 1
    assert "at-least-once" not in caplog.text


@pytest.mark.parametrize(
    ("scopes", "channel", "available", "named"),
    [
        ({"chat:write", "channels:history", "groups:history"}, CHANNEL, True, ()),
        ({"chat:write", "channels:history"}, CHANNEL, True, ()),
        ({"chat:write", "channels:history"}, "C0CLOSED", False, ("groups:history",)),
        ({"chat:write", "groups:history"}, "C0CLOSED", True, ()),
        ({"chat:write"}, CHANNEL, False, ("channels:history", "groups:history")),
    ],
)
def test_which_history_scope_a_channel_needs(
    slack: FakeSlack, scopes: set[str], channel: str, available: bool, named: tuple[str, ...]
) -> None:
    slack.scopes = scopes
    read_back = check_read_back(client_for(slack), channel)
    assert read_back.available is available
    assert read_back.missing == named


@pytest.mark.parametrize(
    ("scopes", "channel", "available", "channel_id", "named"),
    [
        (ALL_SCOPES, "#summitwatch", True, CHANNEL, ()),
        (ALL_SCOPES, "summit-analysts", True, "C0CLOSED", ()),
        (
            {"chat:write", "channels:history", "groups:history", "channels:read"},
            "#summitwatch",
            True,
            CHANNEL,
            (),
        ),
        # History is read by ID: a name the token cannot look up leaves it at-least-once.
        (
            {"chat:write", "channels:history", "groups:history"},
            "#summitwatch",
            False,
            None,
            ("channels:read", "groups:read"),
        ),
        (ALL_SCOPES, "#no-such-channel", False, None, ()),
        (ALL_SCOPES, CHANNEL, True, CHANNEL, ()),
    ],
)
def test_a_channel_name_is_read_back_by_its_id(
    slack: FakeSlack,
    scopes: set[str],
    channel: str,
    available: bool,
    channel_id: str | None,
    named: tuple[str, ...],
) -> None:
    slack.scopes = set(scopes)
    read_back = check_read_back(client_for(slack), channel)
    assert (read_back.available, read_back.channel_id, read_back.missing) == (available, channel_id, named)
    # An ID is not looked up, nor a name without a scope to list channels with.
    listed = channel != CHANNEL and bool(scopes & {"channels:read", "groups:read"})
    assert slack.calls("conversations.list") == int(listed)


def test_without_channels_read_a_name_is_at_least_once_and_says_how_to_fix_it(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.scopes = {"chat:write", "channels:history", "groups:history"}
    caplog.set_level(logging.INFO, logger="pipeline.slack")
    target = target_for(slack, channel="#summitwatch")
    slack.lose_answer("503", part=0)
    target.post(messages(2), on_sent=Progress(), digest_key="changes:named")
    assert "set SLACK_CHANNEL to the channel's ID" in caplog.text
    assert digest_parts(slack, "changes:named") == [0, 0, 1]  # at-least-once, as announced
    assert slack.calls("conversations.history") == 0


@pytest.mark.parametrize(
    ("method", "status", "channel"),
    [
        ("conversations.history", 404, CHANNEL),
        ("conversations.history", 501, CHANNEL),
        ("conversations.list", 404, "#summitwatch"),
    ],
)
def test_a_server_that_does_not_serve_a_reading_method_is_at_least_once_not_a_stop(
    slack: FakeSlack, method: str, status: int, channel: str
) -> None:
    """A Slack-like server that answers the channel's history or list with a page of its
    own (a 404, a 501 Not Implemented) where auth.test worked: the channel cannot be read,
    so delivery is at-least-once, said once, and the digests go out, rather than every
    digest waiting at every run for a method that will never answer."""
    slack.scopes = set(ALL_SCOPES) - {"groups:history"}  # (one history scope: one look tells)
    slack.fail_next(1, status, method=method, page=f"{status} page not found")
    target = target_for(slack, channel=channel)
    result = target.post(messages(2), on_sent=Progress(), digest_key="changes:nohistory")
    assert result.sent == 2 and digest_parts(slack, "changes:nohistory") == [0, 1]
    guarantee = target.delivery_guarantee()
    assert not guarantee.available
    assert f"{method} is not served at SLACK_API_URL (HTTP {status}" in guarantee.reason
    assert "nothing was posted" not in guarantee.reason
    assert "SLACK_API_URL to a server that answers conversations.history" in guarantee.fix


@pytest.mark.parametrize(
    ("status", "answer"), [(404, {"page": "404 page not found"}), (404, {"error": "unknown_method"})]
)
def test_a_server_without_auth_test_still_gets_the_digest_exactly_once(
    slack: FakeSlack, status: int, answer: dict[str, str]
) -> None:
    """A Slack-like server that does not serve auth.test (its own 404 page, or Slack's
    unknown_method): the digest goes out (it waited at every run for a method that never
    answers), and with the history served a part whose answer was lost is still found."""
    slack.fail_next(1, status, method="auth.test", **answer)
    slack.lose_answer("503", part=0)
    target = target_for(slack)
    result = target.post(messages(2), on_sent=Progress(), digest_key="changes:noauth")
    assert (result.sent, result.recovered) == (2, (0,))
    assert digest_parts(slack, "changes:noauth") == [0, 1]
    assert target.delivery_guarantee().available
    # A proxy's refusal of auth.test is no such answer: the run stops, to be tried again.
    slack.fail_next(1, 403, method="auth.test", page="403 from the proxy")
    with pytest.raises(SlackDeliveryError):
        target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:proxy")


@pytest.mark.parametrize("status", [401, 403, 407, 408])
def test_a_proxy_s_refusal_of_the_history_stops_the_run_rather_than_giving_up_exactly_once(
    slack: FakeSlack, status: int
) -> None:
    """A proxy's 401, 403 or 407, or a 408, says nothing of whether the server serves the
    history: the run stops, to be tried again, instead of delivering at-least-once from
    then on."""
    slack.scopes = set(ALL_SCOPES) - {"groups:history"}
    slack.fail_next(1, status, method="conversations.history", page=f"{status} from the proxy")
    target = target_for(slack)
    with pytest.raises(SlackDeliveryError) as failure:
        target.post(messages(2), on_sent=Progress(), digest_key="changes:proxy")
    assert not failure.value.permanent and not failure.value.not_served
    assert slack.calls("chat.postMessage") == 0


def test_a_history_not_served_when_a_part_is_looked_for_is_at_least_once_not_a_stop(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """The token's scopes say the channel can be read, but the server does not serve the
    history (its own 404 page): a part whose answer was lost is posted again, logged as
    possibly twice, rather than the digest (and every one after it) waiting for ever for a
    look that never answers. A part found there is still not posted again."""
    caplog.set_level(logging.INFO, logger="pipeline.slack")
    slack.lose_answer("503", part=0)
    slack.fail_next(1, 404, method="conversations.history", page="404 page not found")
    result = target_for(slack).post(messages(2), on_sent=Progress(), digest_key="changes:nolook")
    assert result.sent == 2
    assert digest_parts(slack, "changes:nolook") == [0, 0, 1]
    assert "conversations.history is not served at SLACK_API_URL (HTTP 404" in caplog.text
    assert "may appear twice" in caplog.text
    # An earlier run's part, unconfirmed, where the history is not served: the same.
    slack.messages.clear()
    slack.fail_next(1, 404, method="conversations.history", page="404 page not found")
    earlier = datetime.now(UTC) - timedelta(minutes=1)
    again = target_for(slack).post(
        messages(1), on_sent=Progress(), digest_key="changes:nolook2", unconfirmed_since=earlier
    )
    assert again.sent == 1 and digest_parts(slack, "changes:nolook2") == [0]
    # ... and after three runs that posted it unconfirmed, it is given up, as for a webhook.
    slack.fail_next(1, 404, method="conversations.history", page="404 page not found")
    with pytest.raises(SlackDeliveryError, match="check the channel") as failure:
        target_for(slack).post(
            messages(1),
            on_sent=Progress(),
            digest_key="changes:nolook3",
            unconfirmed_since=earlier,
            unconfirmed_runs=3,
        )
    assert failure.value.given_up and digest_parts(slack, "changes:nolook3") == []


def test_a_reading_method_that_fails_for_now_still_stops_the_run(slack: FakeSlack) -> None:
    """Slack down (503s outlasting the retries) is no verdict on the channel: the run stops
    and the digests wait, as before."""
    slack.scopes = set(ALL_SCOPES) - {"groups:history"}
    slack.fail_next(10, 503, method="conversations.history")
    with pytest.raises(SlackDeliveryError):
        target_for(slack).post(messages(1), on_sent=Progress(), digest_key="changes:down")
    assert slack.messages == []


def test_without_the_history_scope_it_says_so_once_and_logs_each_doubtful_part(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.scopes = {"chat:write"}
    caplog.set_level(logging.INFO)
    target = target_for(slack)
    slack.lose_answer("503", part=1)
    target.post(messages(3), on_sent=Progress(), digest_key="changes:noscope")
    target.post(messages(1), on_sent=Progress(), digest_key="changes:second")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    start = [w for w in warnings if w.startswith("Slack delivery is at-least-once")]
    assert len(start) == 1
    assert "channels:history and groups:history" in start[0]
    doubtful = [w for w in warnings if w.startswith("digest changes:noscope part 2 of 3")]
    assert len(doubtful) == 1
    assert "may appear twice" in doubtful[0]
    # At-least-once, as announced: the lost part is there twice, nothing is missing.
    assert digest_parts(slack, "changes:noscope") == [0, 1, 1, 2]
    assert slack.calls("conversations.history") + slack.calls("conversations.replies") == 0
    assert slack.token not in caplog.text


def test_without_the_history_scope_a_part_unconfirmed_for_several_runs_is_not_posted_again(
    slack: FakeSlack,
) -> None:
    """A bot token that cannot read the channel is in a webhook's place: a run whose post
    lost its answer counts, and after a few such runs the part is given up rather than
    posted (up to four times) at every run for ever."""
    slack.scopes = {"chat:write"}
    target = target_for(slack, max_retries=0)
    slack.lose_answer("503")
    with pytest.raises(SlackDeliveryError) as lost:
        target.post(messages(2), on_sent=Progress(), digest_key="changes:noscope")
    assert lost.value.in_doubt and lost.value.posted_in_doubt
    earlier = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(SlackDeliveryError, match="check the channel") as failure:
        target.post(
            messages(2),
            on_sent=Progress(),
            digest_key="changes:noscope",
            unconfirmed_since=earlier,
            unconfirmed_runs=3,
        )
    error = failure.value
    assert error.given_up and error.in_doubt and error.permanent and error.delivered == 0
    assert slack.calls("chat.postMessage") == 1
    # Fewer runs: posted again (at-least-once), as before.
    target.post(
        messages(2),
        on_sent=Progress(),
        digest_key="changes:noscope",
        unconfirmed_since=earlier,
        unconfirmed_runs=2,
    )
    assert digest_parts(slack, "changes:noscope") == [0, 0, 1]


def test_with_the_history_scope_a_lost_answer_does_not_count_toward_giving_up(slack: FakeSlack) -> None:
    """The channel is looked at instead: a run whose part was not found there posted it
    again because it was not there, and an earlier run's count does not stop it."""
    target = target_for(slack, max_retries=0)
    slack.fail_next(1, 503, method="chat.postMessage", page=GATEWAY_PAGE)
    with pytest.raises(SlackDeliveryError) as lost:
        target.post(messages(1), on_sent=Progress(), digest_key="changes:scope")
    assert lost.value.in_doubt and not lost.value.posted_in_doubt
    earlier = datetime.now(UTC) - timedelta(hours=1)
    result = target.post(
        messages(1),
        on_sent=Progress(),
        digest_key="changes:scope",
        unconfirmed_since=earlier,
        unconfirmed_runs=5,
    )
    assert result.sent == 1 and result.recovered == ()
    assert digest_parts(slack, "changes:scope") == [0]


def test_a_webhook_says_at_least_once_and_logs_a_lost_answer(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.slack")
    target = slack_target(SlackSettings(webhook_url=SecretStr(slack.webhook_url)), backoff_factor=0.01)
    assert target is not None
    slack.lose_answer("drop")
    target.post(messages(2), on_sent=Progress(), digest_key="changes:hook")
    assert "incoming webhooks cannot read the channel" in caplog.text
    assert "digest changes:hook part 1 of 2: the connection closed before the answer" in caplog.text
    assert [m.text for m in slack.messages] == ["part 0", "part 0", "part 1"]
    assert "webhooksecretXYZ123" not in caplog.text


# --- secrets ----------------------------------------------------------------------------


def test_the_token_never_reaches_logs_or_errors(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(slack)
    slack.fail_next(1, 429, retry_after=1, method="chat.postMessage")
    slack.fail_next(1, 503, method="chat.postMessage")
    post_messages(client, CHANNEL, messages(2), on_sent=Progress(), digest_key="k", read_back=True)
    errors = []
    for channel in ("C0NOSUCH", "C0PRIVATE"):
        with pytest.raises(SlackDeliveryError) as failure:
            post_messages(client, channel, messages(1), on_sent=Progress())
        errors.append(str(failure.value))
    assert "Sending a request" in caplog.text  # slack-sdk did log its requests at DEBUG...
    assert slack.token not in caplog.text  # ...without the token
    assert all(slack.token not in error for error in errors)
    assert slack.token not in repr(
        slack_target(SlackSettings(bot_token=SecretStr(slack.token), channel=CHANNEL))
    )


def test_the_webhook_url_never_reaches_logs_or_errors(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_webhook_client(slack.webhook_url, backoff_factor=0.01)
    slack.fail_next(1, 503, method="webhook")
    post_webhook_messages(client, messages(1), on_sent=Progress())
    bad = make_webhook_client(slack.base + "/services/T0000/B0000/wrongsecret987", backoff_factor=0.01)
    with pytest.raises(SlackDeliveryError) as failure:
        post_webhook_messages(bad, messages(1), on_sent=Progress())
    assert "webhooksecretXYZ123" not in caplog.text
    assert "wrongsecret987" not in caplog.text
    assert "wrongsecret987" not in str(failure.value)
    assert failure.value.permanent
    assert failure.value.bad_configuration


# --- webhooks ---------------------------------------------------------------------------


def test_webhook_posts_follow_ups_as_separate_messages(slack: FakeSlack) -> None:
    progress = Progress()
    result = post_webhook_messages(make_webhook_client(slack.webhook_url), messages(3), on_sent=progress)
    assert result.sent == 3
    assert result.thread_ts is None
    assert [m.text for m in slack.messages] == ["part 0", "part 1", "part 2"]
    assert all(m.via == "webhook" for m in slack.messages)
    assert progress.calls == [(0, ""), (1, ""), (2, "")]
    # Resuming posts only what is left.
    post_webhook_messages(
        make_webhook_client(slack.webhook_url), messages(3), already_sent=3, on_sent=progress
    )
    assert len(slack.messages) == 3


def test_webhook_retries_429_and_reports_invalid_blocks(slack: FakeSlack) -> None:
    client = make_webhook_client(slack.webhook_url, backoff_factor=0.01)
    slack.fail_next(1, 429, retry_after=1, method="webhook")
    started = time.monotonic()
    post_webhook_messages(client, messages(1), on_sent=Progress())
    assert time.monotonic() - started >= 1.0
    assert len(slack.messages) == 1
    too_many = SlackMessage("t", [{"type": "divider"}] * 51)
    with pytest.raises(SlackDeliveryError, match="invalid_blocks") as failure:
        post_webhook_messages(client, [too_many], on_sent=Progress())
    assert failure.value.permanent
    assert failure.value.refused_content
    assert not failure.value.bad_configuration
    slack.fail_next(10, 503, method="webhook")
    with pytest.raises(SlackDeliveryError) as transient:
        post_webhook_messages(
            make_webhook_client(slack.webhook_url, backoff_factor=0.01, max_retries=1),
            messages(1),
            on_sent=Progress(),
        )
    assert not transient.value.permanent


# --- settings ---------------------------------------------------------------------------


def test_target_from_settings(slack: FakeSlack) -> None:
    assert slack_target(SlackSettings()) is None  # digests go to stdout
    with pytest.raises(ConfigError, match="SLACK_CHANNEL"):
        slack_target(SlackSettings(bot_token=SecretStr(slack.token)))
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL") as bad_url:
        slack_target(SlackSettings(webhook_url=SecretStr("ftp://hooks.example/secret-path")))
    assert "secret-path" not in str(bad_url.value)
    # Plain http would carry the secret path and the digest in clear: only to this machine.
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL") as in_clear:
        slack_target(SlackSettings(webhook_url=SecretStr("http://hooks.example/services/T/B/secret-path")))
    assert "secret-path" not in str(in_clear.value)
    for local in ("http://localhost:8080/services/x", "http://[::1]:8080/services/x"):
        assert slack_target(SlackSettings(webhook_url=SecretStr(local))) is not None

    web = slack_target(
        SlackSettings(bot_token=SecretStr(slack.token), channel=CHANNEL, api_url=slack.api_url)
    )
    assert web is not None
    assert web.can_thread
    web.post(messages(2), on_sent=Progress())
    hook = slack_target(SlackSettings(webhook_url=SecretStr(slack.webhook_url)))
    assert hook is not None
    assert not hook.can_thread
    hook.post(messages(1), on_sent=Progress())
    assert [m.via for m in slack.messages] == ["chat.postMessage", "chat.postMessage", "webhook"]


def test_a_channel_without_a_bot_token_is_a_configuration_error() -> None:
    """SLACK_CHANNEL set and the token missing (left out, or put where it is not read):
    the digests were written to files and marked delivered, without a word."""
    with pytest.raises(ConfigError, match=r"SLACK_CHANNEL\) is set without a bot token"):
        slack_target(SlackSettings(channel="C0DIGEST"))
    # Beside a webhook (which posts to its own channel) a channel is unused, as it was.
    beside = slack_target(
        SlackSettings(channel="#news", webhook_url=SecretStr("https://hooks.example/services/x"))
    )
    assert beside is not None and not beside.can_thread


def test_neither_way_of_posting_unfurls_the_digest_s_links(slack: FakeSlack) -> None:
    """A digest links many articles: a preview of each (Slack's unfurling) would bury it.
    Both the Web API's posts and an incoming webhook's ask for none."""
    post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    post_webhook_messages(make_webhook_client(slack.webhook_url), messages(1), on_sent=Progress())
    for method in ("chat.postMessage", "webhook"):
        (call,) = slack.calls_to(method)
        assert call.params.get("unfurl_links") in (False, "false"), (method, call.params)
        assert call.params.get("unfurl_media") in (False, "false"), (method, call.params)


@pytest.mark.parametrize("history", [True, False])
def test_a_server_that_answers_ok_without_the_ts_gets_each_part_once(slack: FakeSlack, history: bool) -> None:
    """A Slack-like server whose chat.postMessage answers {"ok": true} and no ts: the part
    is posted (posted again, it was in the channel up to four times a run), the parts
    after it go out as messages of their own, and one whose answer is lost is still looked
    for in the channel, where the history is served."""
    slack.answers_ts = False
    if not history:
        slack.scopes = set(ALL_SCOPES) - {"channels:history", "groups:history"}
    slack.lose_answer("503", part=1)
    progress = Progress()
    result = target_for(slack).post(messages(3), on_sent=progress, digest_key="changes:nots")
    posted = slack.posted_to(CHANNEL)
    expected = ["part 0", "part 1", "part 2"] if history else ["part 0", "part 1", "part 1", "part 2"]
    assert [m.text for m in posted] == expected
    assert all(m.thread_ts is None for m in posted)
    assert result.sent == 3 and [index for index, _ in progress.calls] == [0, 1, 2]
    assert result.recovered == ((1,) if history else ())

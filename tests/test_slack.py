"""The Slack seam through slack-sdk against a local fake of Slack's Web API and webhooks."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient

from pipeline.digest import DigestArticle, DigestChange, SlackMessage, build_change_digest
from pipeline.errors import ConfigError
from pipeline.settings import SlackSettings
from pipeline.slack import (
    SlackDeliveryError,
    check_auth,
    find_delivered_parts,
    make_web_client,
    make_webhook_client,
    post_messages,
    post_webhook_messages,
    slack_target,
)
from tests.slack_server import FakeSlack

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
    """What an outbox row would hold: parts committed and the parent's ts."""

    def __init__(self) -> None:
        self.sent = 0
        self.thread_ts: str | None = None
        self.calls: list[tuple[int, str]] = []

    def __call__(self, index: int, ts: str) -> None:
        self.calls.append((index, ts))
        self.sent = index + 1
        if index == 0:
            self.thread_ts = ts


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
    with pytest.raises(SlackDeliveryError, match="rate-limiting") as failure:
        post_messages(client_for(slack, max_retry_after=5), CHANNEL, messages(1), on_sent=Progress())
    assert time.monotonic() - started < 5
    assert not failure.value.permanent  # the digest stays pending


def test_server_errors_are_retried_with_backoff(slack: FakeSlack) -> None:
    slack.fail_next(2, 503, method="chat.postMessage")
    result = post_messages(client_for(slack), CHANNEL, messages(1), on_sent=Progress())
    assert result.sent == 1
    assert slack.calls("chat.postMessage") == 3
    assert len(slack.messages) == 1


def test_server_errors_that_outlast_the_retries_are_transient(slack: FakeSlack) -> None:
    slack.fail_next(10, 502, method="chat.postMessage")
    progress = Progress()
    with pytest.raises(SlackDeliveryError, match="HTTP 502") as failure:
        post_messages(client_for(slack, max_retries=2), CHANNEL, messages(2), on_sent=progress)
    assert not failure.value.permanent
    assert failure.value.delivered == 0
    assert slack.calls("chat.postMessage") == 3
    assert progress.calls == []
    assert slack.messages == []


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
    assert slack.calls("chat.postMessage") == 1  # permanent errors are not retried


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
            slack.fail_next(10, 503, method="chat.postMessage")

    with pytest.raises(SlackDeliveryError) as failure:
        post_messages(client, CHANNEL, messages(3), on_sent=commit_then_break_slack)
    assert not failure.value.permanent
    assert failure.value.delivered == 1
    assert progress.sent == 1
    assert len(slack.messages) == 1

    slack.recover()
    result = post_messages(
        client,
        CHANNEL,
        messages(3),
        already_sent=progress.sent,
        thread_ts=progress.thread_ts,
        on_sent=progress,
    )
    assert result.sent == 3
    posted = slack.posted_to(CHANNEL)
    assert [m.text for m in posted] == ["part 0", "part 1", "part 2"]
    assert [m.thread_ts for m in posted[1:]] == [posted[0].ts] * 2
    # Nothing left to send: a second retry posts nothing.
    again = post_messages(
        client, CHANNEL, messages(3), already_sent=3, thread_ts=progress.thread_ts, on_sent=progress
    )
    assert again.sent == 3
    assert len(slack.messages) == 3


def test_resuming_after_the_parent_needs_its_ts(slack: FakeSlack) -> None:
    with pytest.raises(ValueError, match="thread_ts"):
        post_messages(client_for(slack), CHANNEL, messages(3), already_sent=1, on_sent=Progress())


def test_crash_before_commit_is_reconciled_from_message_metadata(slack: FakeSlack) -> None:
    client = client_for(slack)
    progress = Progress()

    def commit_fails_on_part_1(index: int, ts: str) -> None:
        if index == 1:
            raise RuntimeError("database went away")  # Slack has part 1; the outbox doesn't know
        progress(index, ts)

    with pytest.raises(RuntimeError):
        post_messages(client, CHANNEL, messages(3), on_sent=commit_fails_on_part_1, digest_key="changes:abc")
    assert progress.sent == 1
    assert len(slack.messages) == 2

    result = post_messages(
        client,
        CHANNEL,
        messages(3),
        already_sent=progress.sent,
        thread_ts=progress.thread_ts,
        on_sent=progress,
        digest_key="changes:abc",
        reconcile=True,
    )
    assert result.sent == 3
    assert [m.text for m in slack.messages] == ["part 0", "part 1", "part 2"]  # part 1 not posted twice
    assert [index for index, _ in progress.calls] == [0, 1, 2]


def test_lost_response_for_the_parent_is_reconciled(slack: FakeSlack) -> None:
    client = client_for(slack)
    slack.drop_after_accept()  # Slack posts the parent, the answer never arrives
    progress = Progress()
    with pytest.raises(SlackDeliveryError) as failure:
        post_messages(client, CHANNEL, messages(2), on_sent=progress, digest_key="changes:lost")
    assert not failure.value.permanent
    assert progress.sent == 0
    assert len(slack.messages) == 1
    assert slack.calls("chat.postMessage") == 1  # an ambiguous failure is not blindly retried

    oldest = datetime.now(UTC) - timedelta(hours=1)
    assert find_delivered_parts(client, CHANNEL, "changes:lost", oldest=oldest) == {0: slack.messages[0].ts}
    result = post_messages(
        client,
        CHANNEL,
        messages(2),
        on_sent=progress,
        digest_key="changes:lost",
        reconcile=True,
        oldest=oldest,
    )
    assert result.sent == 2
    assert result.thread_ts == slack.messages[0].ts
    assert [m.text for m in slack.messages] == ["part 0", "part 1"]
    assert slack.messages[1].thread_ts == slack.messages[0].ts


def test_without_history_scope_reconcile_degrades_to_at_least_once(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    slack.history_scope = False
    caplog.set_level(logging.WARNING, logger="pipeline.slack")
    result = post_messages(
        client_for(slack), CHANNEL, messages(2), on_sent=Progress(), digest_key="changes:x", reconcile=True
    )
    assert result.sent == 2
    assert "missing_scope" in caplog.text


# --- secrets ----------------------------------------------------------------------------


def test_the_token_never_reaches_logs_or_errors(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for(slack)
    slack.fail_next(1, 429, retry_after=1, method="chat.postMessage")
    slack.fail_next(1, 503, method="chat.postMessage")
    post_messages(client, CHANNEL, messages(2), on_sent=Progress(), digest_key="k", reconcile=True)
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

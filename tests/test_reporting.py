"""Coverage, change detection and digest delivery end to end, through the outbox, against a
fake Slack Web API speaking the real protocol (slack-sdk), on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from pipeline.coverage import coverage_json
from pipeline.db.engine import make_engine, session_factory, upgrade_schema
from pipeline.db.repo import extend_history
from pipeline.db.schema import Article, ArticleTopic, CoverageChange, DigestOutbox, utcnow
from pipeline.ingest import import_lines
from pipeline.reporting import (
    compute_coverage,
    deliver_pending,
    destination_name,
    load_reporting_config,
    prepare_digests,
    store_changes,
    top_articles,
)
from pipeline.settings import Settings
from pipeline.slack import SlackTarget, slack_target
from tests.conftest import make_settings
from tests.slack_server import FakeSlack

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "classify"
CHANNEL = "C0DIGEST"


def pos2_articles() -> list[dict[str, str]]:
    rows = [
        json.loads(line)
        for name in ("eval", "dev")
        for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return [r for r in rows if "power_of_siberia_2" in r["watch"]]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def slack_settings(db_url: str, slack: FakeSlack, tmp_path: Path) -> Settings:
    return make_settings(
        db_url,
        slack={"bot_token": slack.token, "channel": CHANNEL, "api_url": slack.api_url},
        digest_dir=str(tmp_path / "digests"),
    )


def backfill_burst(
    session: Session, settings: Settings, articles: list[dict[str, str]] | None = None
) -> list[int]:
    """30 days of (silent) history, then a burst of Power of Siberia 2 coverage in one day
    (``articles``, by default every labelled Power of Siberia 2 article)."""
    extend_history(session, NOW - timedelta(days=30))
    lines = [
        json.dumps(
            {
                "id": article["id"],
                "url": f"https://news.example/{article['id']}",
                "title": article["title"],
                "text": article["text"],
                "published": (NOW - timedelta(hours=2 + 2 * i)).isoformat(),
            }
        )
        for i, article in enumerate(pos2_articles() if articles is None else articles)
    ]
    results = list(import_lines(session, settings, lines, source="burst", now=NOW))
    return [r.result.article_id or 0 for r in results if r.result.status == "new"]


def test_coverage_json_shape_and_a_detected_burst(session: Session, settings: Settings) -> None:
    stored = backfill_burst(session, settings)
    assert len(stored) >= 8
    report = compute_coverage(session, settings, now=NOW)
    line = coverage_json(
        "watch:power_of_siberia_2",
        report.bins["watch:power_of_siberia_2"],
        report.changes["watch:power_of_siberia_2"],
    )
    assert set(line) == {"series", "bins", "changes"}
    assert sum(count for _, count in line["bins"]) >= 8
    assert all(isinstance(start, str) and isinstance(count, int) for start, count in line["bins"])
    ups = [c for c in line["changes"] if c["direction"] == "up"]
    assert len(ups) == 1, "one burst, one change"
    assert {"at", "direction", "count", "baseline", "explanation"} <= set(ups[0])
    # The change ended a day before NOW: its explanation gives the window's dates.
    assert ups[0]["at"] == "2026-11-19T12:00:00+00:00"
    assert "articles in the 24 h from 2026-11-18 12:00 to 2026-11-19 12:00 UTC" in ups[0]["explanation"]
    assert "in the last" not in ups[0]["explanation"]
    quiet = report.changes["watch:arctic_route"]
    assert quiet == []


def test_changes_are_upserted_on_series_time_and_direction(session: Session, settings: Settings) -> None:
    backfill_burst(session, settings)
    report = compute_coverage(session, settings, now=NOW)
    config = load_reporting_config(settings)[0]
    first = store_changes(session, report, config)
    assert first and len({(c.series, c.at, c.direction) for c in first}) == len(first)
    ids = [row.id for row in first]
    # The next run finds the same changes, one re-measured: the rows are updated, not added.
    change = report.changes[first[0].series][0]
    report.changes[first[0].series][0] = replace(change, count=change.count + 1)
    again = store_changes(session, report, config)
    assert [row.id for row in again] == ids
    assert again[0].count == change.count + 1
    assert session.scalar(select(func.count()).select_from(CoverageChange)) == len(ids)


def test_digest_is_posted_once_and_survives_a_slack_outage(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=2, read_back_delay=0.01)
    destination = destination_name(target)
    assert destination == f"slack:{CHANNEL}"

    # Slack is down for longer than the client retries: the digest stays pending.
    slack.fail_next(50, status=503, method="chat.postMessage")
    digests = prepare_digests(session, slack_settings, destination, now=NOW)
    assert [d.kind for d in digests] == ["changes", "summary"]
    first = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert first.sent == [] and len(first.pending) == 2
    assert slack.posted_to(CHANNEL) == []
    assert (
        session.scalar(
            select(func.count()).select_from(CoverageChange).where(CoverageChange.digest_id.is_(None))
        )
        == 0
    )

    # The next run: Slack is back; the pending digests go out, nothing new is queued.
    slack.recover()
    again = prepare_digests(session, slack_settings, destination, now=NOW + timedelta(minutes=15))
    assert again == []
    second = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert len(second.sent) == 2
    posted = slack.posted_to(CHANNEL)
    parents = [m for m in posted if m.thread_ts is None]
    assert len(parents) == 2
    assert any(
        "Power of Siberia 2" in (m.text or "") or "Power of siberia 2" in (m.text or "") for m in posted
    )
    assert all(m.text for m in posted), "every message has a plain-text fallback"

    # A third run (a retried task, a re-run DAG) posts nothing more.
    prepare_digests(session, slack_settings, destination, now=NOW + timedelta(minutes=30))
    third = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert third.sent == []
    assert len(slack.posted_to(CHANNEL)) == len(posted)
    rows = session.scalars(select(DigestOutbox)).all()
    assert {r.status for r in rows} == {"sent"}
    assert all(r.parts_sent == r.parts_total for r in rows)


def test_a_lost_answer_and_an_unreadable_channel_still_deliver_each_part_once(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    backfill_burst(session, slack_settings)
    target = slack_target(
        slack_settings.slack, backoff_factor=0.01, max_retries=1, timeout=1.0, read_back_delay=0.01
    )
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    first_key = session.scalars(select(DigestOutbox.digest_key).order_by(DigestOutbox.id)).first()

    # Slack takes the first digest's parent but the answer is lost, and the history cannot
    # be read for now: the digest stays pending, marked as possibly posted.
    slack.lose_answer("drop", part=0)
    slack.fail_next(10, status=503, method="conversations.history")
    first = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    # The digest after it waits too: digests arrive in order.
    assert len(first.pending) == 2 and first.sent == []
    row = session.scalars(select(DigestOutbox).where(DigestOutbox.digest_key == first_key)).one()
    assert row.status == "pending"
    assert row.parts_sent == 0
    assert row.unconfirmed_since is not None
    assert slack.parts_posted(CHANNEL, first_key) == [0]

    # The next run looks first, finds the parent, threads the rest under it.
    slack.recover()
    second = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert second.sent == sorted(first.pending) and second.sent[0] == row.id
    session.refresh(row)
    assert (row.status, row.parts_sent, row.unconfirmed_since) == ("sent", row.parts_total, None)
    assert slack.parts_posted(CHANNEL, first_key) == list(range(row.parts_total))
    parent = next(
        m
        for m in slack.posted_to(CHANNEL)
        if m.part == 0 and m.metadata and m.metadata["event_payload"]["digest_key"] == first_key
    )
    assert row.thread_ts == parent.ts
    assert slack.calls("auth.test") == 1  # the scopes were checked once, at start


def test_bad_channel_keeps_the_digest_pending(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    backfill_burst(session, slack_settings)
    wrong = slack_settings.model_copy(
        update={"slack": slack_settings.slack.model_copy(update={"channel": "C0NOPE"})}
    )
    target = slack_target(wrong.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(target)
    prepare_digests(session, wrong, destination, now=NOW)
    report = deliver_pending(session, target, destination, digest_dir=wrong.digest_dir)
    assert report.sent == [] and report.pending
    assert "channel_not_found" in report.errors[0]
    assert slack.token not in " ".join(report.errors)


NOT_FOUND_PAGE = "<html><body><h1>404 Not Found</h1>nginx</body></html>"


@pytest.mark.parametrize(
    "fault",
    [
        # A wrong SLACK_API_URL: every request meets a 404 page.
        {"count": 50, "status": 404, "page": NOT_FOUND_PAGE},
        # A proxy's sign-in page, once, instead of auth.test's answer.
        {"count": 1, "status": 200, "page": "<html><body>Sign in to the proxy</body></html>"},
        {"count": 50, "status": 403, "page": "<html><body>Forbidden</body></html>"},
        {"count": 50, "status": 407, "page": "<html><body>Proxy Authentication Required</body></html>"},
        # Slack's JSON, but a refusal of auth.test, not of the digest. (unknown_method says
        # the server does not serve auth.test: the digests go out, tests/test_slack.py.)
        {"count": 1, "status": 200, "error": "some_code_slack_adds_later", "method": "auth.test"},
        # A redirect instead of chat.postMessage's answer (urllib does not follow a POST's).
        {"count": 1, "status": 307, "page": "", "location": "/elsewhere/", "method": "chat.postMessage"},
    ],
    ids=["404-page", "html-200", "403-page", "407-page", "unknown-code", "307"],
)
def test_an_answer_that_is_no_verdict_on_the_digest_keeps_it_pending(
    session: Session, slack_settings: Settings, slack: FakeSlack, fault: dict[str, object]
) -> None:
    """Only Slack refusing a digest's own content quarantines it. A page that is not Slack's
    answer, a failed auth.test or an unknown error code says nothing about the digest: it
    stays pending, in order, the Airflow task fails (so it is retried and seen), and the
    next run delivers it."""
    from pipeline.reporting import DeliveryFailed
    from pipeline.tasks import deliver_digests

    backfill_burst(session, slack_settings)
    destination = destination_name(slack_target(slack_settings.slack))
    prepare_digests(session, slack_settings, destination, now=NOW)
    slack.fail_next(**fault)  # type: ignore[arg-type]
    with pytest.raises(DeliveryFailed) as failure:
        deliver_digests(settings=slack_settings)
    assert "waits" in str(failure.value) or "refused auth.test" in str(failure.value)
    assert slack.token not in str(failure.value)
    session.expire_all()
    rows = session.scalars(select(DigestOutbox).order_by(DigestOutbox.id)).all()
    assert [row.status for row in rows] == ["pending", "pending"]
    assert slack.posted_to(CHANNEL) == []
    slack.recover()
    delivered = deliver_digests(settings=slack_settings)
    assert delivered == {"sent": 2, "failed": 0}
    session.expire_all()
    for row in session.scalars(select(DigestOutbox)):
        assert row.status == "sent"
        assert slack.parts_posted(CHANNEL, row.digest_key) == list(range(row.parts_total))


def test_a_wrong_webhook_url_s_page_keeps_the_digest_pending(
    session: Session, db_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    settings = make_settings(
        db_url, slack={"webhook_url": slack.webhook_url}, digest_dir=str(tmp_path / "digests")
    )
    backfill_burst(session, settings)
    target = slack_target(settings.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(target)
    prepare_digests(session, settings, destination, now=NOW)
    slack.fail_next(50, 404, page=NOT_FOUND_PAGE, method="webhook")
    report = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
    assert report.failed == [] and len(report.pending) == 2
    assert "check SLACK_WEBHOOK_URL" in report.errors[0]
    slack.recover()
    again = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
    assert sorted(again.sent) == sorted(report.pending)


def test_changes_slack_refuses_twice_are_not_given_back_again(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """Slack refuses the rebuilt digest too (the content that offends it is still there):
    its changes stay with it, so that they are not rebuilt and refused at every run, and
    later digests are not taken down with them."""
    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(target)
    slack.fail_next(1000, 200, error="invalid_blocks", method="chat.postMessage")
    moment = NOW
    keys = []
    for _ in range(4):
        for digest in prepare_digests(session, slack_settings, destination, now=moment):
            keys.append(digest.digest_key)
        deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
        moment += timedelta(minutes=15)
    changes = [key for key in keys if key.startswith("changes")]
    assert len(changes) == 2 and changes[1] == f"{changes[0]}~2"
    unreported = session.scalar(
        select(func.count()).select_from(CoverageChange).where(CoverageChange.digest_id.is_(None))
    )
    assert unreported == 0


def test_a_digest_slack_refuses_gives_its_changes_to_the_next_digest(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """A digest whose content Slack refuses is quarantined; as none of it reached the
    channel, its changes count as unreported (coverage, the web UI) and the next run
    reports them in a digest of their own, once."""
    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    refused = session.scalars(select(DigestOutbox).where(DigestOutbox.kind == "changes")).one()
    changes = session.scalar(
        select(func.count()).select_from(CoverageChange).where(CoverageChange.digest_id == refused.id)
    )
    assert changes
    slack.fail_next(1, 200, error="invalid_blocks", method="chat.postMessage")
    first = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert first.failed == [refused.id] and len(first.sent) == 1  # the summary after it went out
    session.refresh(refused)
    assert refused.status == "failed"
    assert "invalid_blocks" in (refused.last_error or "")
    assert f"its {changes} changes go to the next digest" in (refused.last_error or "")
    later = NOW + timedelta(minutes=15)
    coverage = compute_coverage(session, slack_settings, now=later)
    assert refused.id not in coverage.reported.values()

    (again,) = prepare_digests(session, slack_settings, destination, now=later)
    assert again.kind == "changes" and again.digest_key == f"{refused.digest_key}~2"
    second = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    (new_id,) = second.sent
    assert (
        session.scalar(
            select(func.count()).select_from(CoverageChange).where(CoverageChange.digest_id == new_id)
        )
        == changes
    )
    assert prepare_digests(session, slack_settings, destination, now=later + timedelta(minutes=15)) == []
    new_row = session.get(DigestOutbox, new_id)
    assert new_row is not None
    assert slack.parts_posted(CHANNEL, new_row.digest_key) == list(range(new_row.parts_total))
    assert slack.parts_posted(CHANNEL, refused.digest_key) == []


def test_digests_queued_for_a_wrong_channel_go_to_the_corrected_one_once(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """The channel named wrongly, then corrected (or spelled by name, then by id): what was
    queued and never begun goes to the channel now set, and no digest is built twice."""
    backfill_burst(session, slack_settings)
    wrong = slack_settings.model_copy(
        update={"slack": slack_settings.slack.model_copy(update={"channel": "C0NOPE"})}
    )
    wrong_target = slack_target(wrong.slack, backoff_factor=0.01, max_retries=1)
    prepare_digests(session, wrong, destination_name(wrong_target), now=NOW)
    stuck = deliver_pending(
        session, wrong_target, destination_name(wrong_target), digest_dir=wrong.digest_dir
    )
    assert stuck.sent == [] and len(stuck.pending) == 2
    right_target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(right_target)
    assert prepare_digests(session, slack_settings, destination, now=NOW) == []  # nothing built again
    delivered = deliver_pending(session, right_target, destination, digest_dir=slack_settings.digest_dir)
    assert sorted(delivered.sent) == sorted(stuck.pending) and not delivered.errors
    keys = session.scalars(select(DigestOutbox.digest_key)).all()
    assert len(keys) == len(set(keys)) == 2
    for key in keys:
        row = session.scalars(select(DigestOutbox).where(DigestOutbox.digest_key == key)).one()
        assert slack.parts_posted(CHANNEL, key) == list(range(row.parts_total))


def test_a_long_retry_after_is_kept_until_its_time(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """Slack asks for a wait longer than a run waits (Retry-After: 120): not waited for, by
    design, but kept: the next run leaves the digests alone until then, and says so."""
    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1, max_retry_after=5)
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    slack.fail_next(1, 429, retry_after=120, method="chat.postMessage")
    first = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert first.sent == [] and len(first.pending) == 2
    assert "asked to wait 120 s (Retry-After), longer than the 5 s a run waits" in first.errors[0]
    row = session.get(DigestOutbox, first.pending[0])
    assert row is not None and row.not_before is not None
    assert timedelta(seconds=110) < row.not_before - utcnow() <= timedelta(seconds=120)
    posts = slack.calls("chat.postMessage")
    again = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert again.sent == [] and sorted(again.pending) == sorted(first.pending)
    assert again.errors == [
        f"digest {row.id} waits: Slack asked not to be tried before "
        f"{row.not_before:%Y-%m-%d %H:%M:%S} UTC (rate limited)"
    ]
    assert slack.calls("chat.postMessage") == posts  # Slack was not asked sooner
    row.not_before = utcnow() - timedelta(seconds=1)  # (the two minutes have passed)
    session.commit()
    done = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert sorted(done.sent) == sorted(first.pending)
    session.refresh(row)
    assert row.not_before is None


@pytest.mark.parametrize("value", ["inf", "1e300", "1000000000"])
def test_a_retry_after_beyond_reason_neither_crashes_a_run_nor_blocks_the_digests(
    session: Session, slack_settings: Settings, slack: FakeSlack, value: str
) -> None:
    """Retry-After: inf counts as missing (1 s); one of years defers the digests an hour."""
    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1, max_retry_after=0.5)
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    slack.fail_next(10, 429, retry_after=value, method="chat.postMessage")
    first = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert first.sent == [] and len(first.pending) == 2
    row = session.get(DigestOutbox, first.pending[0])
    assert row is not None and row.not_before is not None and row.unconfirmed_since is None
    assert "rate-limited chat.postMessage" in (row.last_error or "")
    wait = row.not_before - utcnow()
    if value == "inf":
        assert wait <= timedelta(seconds=1)
    else:
        assert timedelta(minutes=59) < wait <= timedelta(hours=1)
        assert "Slack asked for longer" in (row.last_error or "")
    row.not_before = utcnow() - timedelta(seconds=1)  # (the wait is over)
    session.commit()
    slack.recover()
    done = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert sorted(done.sent) == sorted(first.pending)


def _webhook_digests(
    session: Session, db_url: str, slack: FakeSlack, tmp_path: Path
) -> tuple[Settings, SlackTarget, str]:
    """A burst's digests prepared for ``slack``'s incoming webhook, posted once a try."""
    settings = make_settings(
        db_url, slack={"webhook_url": slack.webhook_url}, digest_dir=str(tmp_path / "digests")
    )
    backfill_burst(session, settings)
    target = slack_target(settings.slack, backoff_factor=0.01, max_retries=0)
    destination = destination_name(target)
    prepare_digests(session, settings, destination, now=NOW)
    return settings, target, destination


def test_a_webhook_part_never_confirmed_is_quarantined_after_a_few_runs(
    session: Session, db_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    """A webhook whose server answers 200 with neither "ok" nor a page: each run may have
    posted the part, and nothing can look. After three such runs the part is not posted
    again; the digest is quarantined (its changes stay with it: they may be in the
    channel) and the digests after it go out."""
    settings, target, destination = _webhook_digests(session, db_url, slack, tmp_path)
    slack.webhook_answer, slack.webhook_content_type = "queued", "text/plain"

    def answered_again() -> None:
        slack.webhook_answer, slack.webhook_content_type = "ok", "text/html"

    _quarantined_after_three_runs(session, target, destination, settings, slack, lambda: None, answered_again)
    unreported = session.scalar(
        select(func.count()).select_from(CoverageChange).where(CoverageChange.digest_id.is_(None))
    )
    assert unreported == 0


def test_a_part_never_confirmed_without_the_history_scope_is_quarantined_after_a_few_runs(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """A bot token without channels:history cannot look for a part whose answer was lost,
    as a webhook cannot: a gateway that loses every answer gets the part posted by three
    runs, then the digest is quarantined for the operator and the digests after it go
    out, rather than a copy more (up to four) at every run for ever."""
    backfill_burst(session, slack_settings)
    slack.scopes = {"chat:write"}
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=0)
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    _quarantined_after_three_runs(
        session, target, destination, slack_settings, slack, lambda: slack.lose_answer("503"), lambda: None
    )


def _quarantined_after_three_runs(
    session: Session,
    target: SlackTarget,
    destination: str,
    settings: Settings,
    slack: FakeSlack,
    before_each_run: Callable[[], None],
    before_the_last: Callable[[], None],
) -> None:
    """Three runs each post the first part of the first of two digests and lose the answer
    (``before_each_run`` arranges it); the fourth posts it no more, quarantines that digest
    for the operator and sends the other."""
    for run in range(1, 4):
        before_each_run()
        report = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
        assert report.sent == [] and report.failed == [] and len(report.pending) == 2
        assert len(slack.messages) == run  # the first part once more per run
    before_the_last()
    last = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
    stuck, after = sorted(report.pending)
    assert last.failed == [stuck] and last.sent == [after]
    row = session.get(DigestOutbox, stuck)
    assert row is not None and row.status == "failed"
    assert "check the channel" in (row.last_error or "")
    assert len(slack.messages) == 3 + _parts(session, after)  # no fourth copy


def test_a_run_that_posted_nothing_does_not_count_toward_giving_a_webhook_part_up(
    session: Session, db_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    """Runs rate-limited before posting (a 429: certainly not posted) are no runs that
    posted the part unconfirmed: after one lost answer and three such runs, the part is
    posted again, confirmed, and the digest sent."""
    settings, target, destination = _webhook_digests(session, db_url, slack, tmp_path)
    slack.webhook_answer, slack.webhook_content_type = "queued", "text/plain"
    first = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
    assert first.sent == [] and len(slack.messages) == 1
    slack.webhook_answer, slack.webhook_content_type = "ok", "text/html"
    for _ in range(3):
        slack.fail_next(1, 429, method="webhook", retry_after=0)
        report = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
        assert report.sent == [] and report.failed == []
        for row in session.scalars(select(DigestOutbox)):
            row.not_before = None  # (the wait it asked for, over)
        session.commit()
    last = deliver_pending(session, target, destination, digest_dir=settings.digest_dir)
    assert last.failed == [] and len(last.sent) == 2
    assert all(row.status == "sent" for row in session.scalars(select(DigestOutbox)))


def _parts(session: Session, digest_id: int) -> int:
    row = session.get(DigestOutbox, digest_id)
    assert row is not None
    return row.parts_total


def _by_name(settings: Settings, channel: str = "#summitwatch") -> Settings:
    return settings.model_copy(update={"slack": settings.slack.model_copy(update={"channel": channel})})


def test_a_channel_set_by_name_is_read_back_by_its_id(
    session: Session, slack_settings: Settings, slack: FakeSlack
) -> None:
    """SLACK_CHANNEL=#name with both history scopes: after a lost answer the channel is read
    by its ID (conversations.history takes no names), so nothing wedges or doubles."""
    named = _by_name(slack_settings)
    backfill_burst(session, named)
    target = slack_target(named.slack, backoff_factor=0.01, max_retries=1, read_back_delay=0.01)
    destination = destination_name(target)
    assert destination == "slack:#summitwatch"
    prepare_digests(session, named, destination, now=NOW)
    slack.lose_answer("503", part=0)
    report = deliver_pending(session, target, destination, digest_dir=named.digest_dir)
    assert len(report.sent) == 2 and not report.errors
    assert [call.params["channel"] for call in slack.calls_to("conversations.history")] == [CHANNEL]
    for row in session.scalars(select(DigestOutbox)):
        assert slack.parts_posted(CHANNEL, row.digest_key) == list(range(row.parts_total))


@pytest.mark.parametrize("metadata", ["keep", "drop"])
def test_a_digest_begun_under_the_channel_s_name_is_finished_under_its_id(
    session: Session, slack_settings: Settings, slack: FakeSlack, metadata: str
) -> None:
    """A part posted to "#name" whose answer was lost, the channel unreadable then: once
    SLACK_CHANNEL is the channel's ID, the part is looked for under the name it was posted
    as, counted, and the digest finished in the same thread, each part once. On a
    Slack-like server that keeps no message metadata ("drop") the part is found by its
    text, as delivery finds one (it was taken as never posted, and posted again)."""
    slack.message_metadata = metadata  # type: ignore[assignment]
    named = _by_name(slack_settings)
    backfill_burst(session, named)
    by_name = slack_target(named.slack, backoff_factor=0.01, max_retries=0, read_back_delay=0.01)
    prepare_digests(session, named, destination_name(by_name), now=NOW)
    slack.lose_answer("503", part=0)
    slack.fail_next(10, 503, method="conversations.history")
    stuck = deliver_pending(session, by_name, destination_name(by_name), digest_dir=named.digest_dir)
    assert stuck.sent == [] and len(stuck.pending) == 2
    first = session.scalars(select(DigestOutbox).order_by(DigestOutbox.id)).first()
    assert first is not None and first.unconfirmed_since is not None and first.parts_sent == 0
    slack.recover()

    by_id = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1, read_back_delay=0.01)
    destination = destination_name(by_id)
    delivered = deliver_pending(session, by_id, destination, digest_dir=slack_settings.digest_dir)
    assert sorted(delivered.sent) == sorted(stuck.pending) and not delivered.errors
    rows = list(session.scalars(select(DigestOutbox)))
    assert {(row.destination, row.status) for row in rows} == {(destination, "sent")}
    texts = [m.text for m in slack.posted_to(CHANNEL)]
    assert len(texts) == len(set(texts)) == sum(row.parts_total for row in rows)
    session.refresh(first)
    assert first.thread_ts == slack.posted_to(CHANNEL)[0].ts


def test_one_delivery_at_a_time(session: Session, slack_settings: Settings, slack: FakeSlack) -> None:
    """A second pass while one runs (the command beside the Airflow task) leaves the digests
    to the first instead of posting the same parts again."""
    from pipeline.db.engine import make_engine, session_factory
    from pipeline.reporting import delivery_lock

    backfill_burst(session, slack_settings)
    target = slack_target(slack_settings.slack, backoff_factor=0.01, max_retries=1)
    destination = destination_name(target)
    prepare_digests(session, slack_settings, destination, now=NOW)
    engine = make_engine(slack_settings.db_url)
    with session_factory(engine)() as other, delivery_lock(other) as held:
        assert held
        skipped = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    engine.dispose()
    assert skipped.sent == [] and skipped.errors == [
        "another delivery is running: its digests are left to it"
    ]
    assert slack.posted_to(CHANNEL) == []
    done = deliver_pending(session, target, destination, digest_dir=slack_settings.digest_dir)
    assert len(done.sent) == 2


def test_two_preparations_at_once_store_each_change_once(
    session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `summitwatch digest` runs (or the command beside the Airflow detect task) at
    once, each in its own thread and connection: both reach the storing of the changes
    together (a barrier holds the first until the second arrives, if it can). One run
    prepares the digests, the other waits for it and finds nothing left to report: no
    unique-key failure, no change in two digests."""
    import threading

    from pipeline import reporting
    from pipeline.db.engine import make_engine, session_factory

    backfill_burst(session, settings)
    session.commit()
    session.close()
    barrier = threading.Barrier(2, timeout=3)
    storing = reporting.store_changes

    def together(*args: object, **kwargs: object) -> object:
        # (Broken when the other run waits for this one's preparation: it cannot come.)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return storing(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reporting, "store_changes", together)
    built: list[list[str]] = []
    failures: list[Exception] = []

    def run() -> None:
        engine = make_engine(settings.db_url)
        try:
            with session_factory(engine)() as own:
                built.append([d.kind for d in prepare_digests(own, settings, "file", now=NOW)])
        except Exception as exc:
            failures.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert sorted(built) == [[], ["changes", "summary"]]
    assert session.scalar(select(func.count()).select_from(DigestOutbox)) == 2
    rows = session.execute(select(CoverageChange.series, CoverageChange.at, CoverageChange.digest_id)).all()
    assert len({(series, at) for series, at, _ in rows}) == len(rows)
    assert all(digest_id is not None for _, _, digest_id in rows)


def test_without_slack_digests_go_to_files(session: Session, settings: Settings, tmp_path: Path) -> None:
    backfill_burst(session, settings)
    printed: list[str] = []
    prepare_digests(session, settings, "file", now=NOW)
    report = deliver_pending(session, None, "file", digest_dir=tmp_path / "out", out=printed.append)
    files = sorted((tmp_path / "out").iterdir())
    assert len(report.sent) == len(files) == 2
    # The burst's change ended a day before NOW, so it is told with its dates.
    assert "articles in the 24 h from 2026-11-18 12:00 to 2026-11-19 12:00 UTC" in files[0].read_text()
    # The burst's own paragraph gives its dates. (Other series the same articles moved may
    # have risen within the last 24 h: which ones depends on the classifier's labels.)
    message = next(text for text in printed if "Power of Siberia 2 (watch item), up\n" in text)
    paragraph = message.split("Power of Siberia 2 (watch item), up\n", 1)[1].split("\n", 1)[0]
    assert "articles in the 24 h from" in paragraph
    assert "in the last 24 h" not in paragraph


def test_two_databases_sharing_a_digest_folder_keep_each_others_digests(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "shared-digests"
    backfill_burst(session, settings)
    prepare_digests(session, settings, "file", now=NOW)
    written: list[str] = []
    first = deliver_pending(session, None, "file", digest_dir=folder, out=written.append)
    # A second database, numbering its outbox from 1 as well, with one story fewer.
    other = make_settings(f"sqlite:///{tmp_path / 'other.db'}")
    engine = make_engine(other.db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as other_session:
        backfill_burst(other_session, other, pos2_articles()[1:])
        prepare_digests(other_session, other, "file", now=NOW)
        second = deliver_pending(other_session, None, "file", digest_dir=folder, out=written.append)
    engine.dispose()
    assert len(first.sent) == len(second.sent) == 2
    digests = [text for text in written if not text.startswith("(written to ")]
    assert len(digests) == 4 and len(set(digests)) > 2, "the two databases wrote some different digests"
    # Every digest either database wrote is still there, whole.
    files = {f.name: f.read_text(encoding="utf-8") for f in folder.iterdir()}
    assert all(name.startswith("digest-") and name.endswith(".txt") for name in files), sorted(files)
    assert sorted(set(digests)) == sorted(text.removesuffix("\n") for text in files.values())
    # Delivering again writes nothing new and changes nothing.
    deliver_pending(session, None, "file", digest_dir=folder)
    assert {f.name: f.read_text(encoding="utf-8") for f in folder.iterdir()} == files


def test_a_digest_folder_that_cannot_be_written_keeps_the_digest_pending(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    backfill_burst(session, settings)
    prepare_digests(session, settings, "file", now=NOW)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    report = deliver_pending(session, None, "file", digest_dir=blocked)
    assert not report.sent and len(report.pending) == 2
    assert all(f"cannot write the digest to {blocked}" in error for error in report.errors)
    # Once the folder is usable, the same digests go out, each once.
    again = deliver_pending(session, None, "file", digest_dir=tmp_path / "out")
    assert sorted(again.sent) == sorted(report.pending)
    assert len(list((tmp_path / "out").iterdir())) == 2


def test_dry_run_writes_nothing(session: Session, settings: Settings) -> None:
    backfill_burst(session, settings)
    session.commit()
    digests = prepare_digests(session, settings, "file", now=NOW, dry_run=True)
    session.rollback()
    assert digests and digests[0].kind == "changes"
    assert session.scalar(select(func.count()).select_from(DigestOutbox)) == 0
    assert session.scalar(select(func.count()).select_from(CoverageChange)) == 0


def test_a_burst_that_moves_two_series_lists_each_article_once(session: Session, settings: Settings) -> None:
    stored = backfill_burst(session, settings)
    digests = prepare_digests(session, settings, "file", now=NOW, dry_run=True)
    changes_digest = next(d for d in digests if d.kind == "changes")
    text = changes_digest.text
    # Both series moved, named as config/topics.yaml labels them.
    assert "Power of Siberia 2 (watch item), up" in text and "Energy (topic), up" in text
    assert "behind these changes" in text
    stories = text.split("behind these changes", 1)[1]
    assert stories.count("Moved: Energy ↑") >= 1
    listed = [url for url in (f"https://news.example/{i}" for i in _input_ids()) if url + "\n" in text]
    assert listed, "the burst's articles are shown"
    for url in listed:
        assert text.count(url + "\n") == 1, f"{url} listed more than once"
    assert len(stored) >= 8


def _input_ids() -> list[str]:
    return [article["id"] for article in pos2_articles()]


SILENT_FROM = NOW - timedelta(days=4)


def store_taiwan_silence(session: Session) -> None:
    """Six weeks of coverage: Taiwan & Asia at 2.5 articles a day (2 and 3 on alternate
    days) until four days before NOW, energy at a steady 4 a day throughout."""
    start = NOW - timedelta(days=46)
    extend_history(session, start)
    moments: list[tuple[str, datetime]] = []
    for day in range(46):
        midnight = start.replace(hour=0) + timedelta(days=day)
        hours = (8, 12, 16) if day % 2 else (9, 15)
        moments += [("taiwan_asia", midnight + timedelta(hours=h)) for h in hours]
        moments += [("energy", midnight + timedelta(hours=h)) for h in (3, 9, 15, 21)]
    number = 0
    for topic, moment in moments:
        if (topic == "taiwan_asia" and moment >= SILENT_FROM) or moment >= NOW:
            continue
        number += 1
        article = Article(
            url=f"https://news.example/{topic}/{number}",
            canonical_url=f"https://news.example/{topic}/{number}",
            title=f"{topic} {number}",
            text=f"Article {number} about {topic}.",
            lang="en",
            published_at=moment,
            first_seen_at=moment,
            content_hash=f"{number:064x}",
        )
        session.add(article)
        session.flush()
        session.add(ArticleTopic(article_id=article.id, topic=topic, score=1.0, evidence=[]))
    session.flush()


def test_a_busy_topic_going_silent_is_reported_and_worded_by_date_once_past(
    session: Session, settings: Settings
) -> None:
    store_taiwan_silence(session)
    report = compute_coverage(session, settings, now=NOW)
    assert report.changes["topic:energy"] == []
    changes = report.changes["topic:taiwan_asia"]
    assert [c.direction for c in changes] == ["down"]
    fall = changes[0]
    assert SILENT_FROM < fall.at <= SILENT_FROM + timedelta(days=4)
    assert fall.count == 0

    # Judged when it happened, the digest says "in the last ..." like the analyst reads it.
    current = prepare_digests(session, settings, "file", now=fall.at + timedelta(hours=1), dry_run=True)
    assert current[0].kind == "changes"
    text = current[0].text
    assert "↓ Taiwan & Asia (topic), down" in text
    assert "0 articles in the last " in text
    assert "/day over the previous 28 days" in text

    # A day later (a digest that went out late, a summary), the same change is dated.
    later = prepare_digests(session, settings, "file", now=fall.at + timedelta(days=1), dry_run=True)
    text = later[0].text
    start = fall.at - fall.window
    assert (
        f"0 articles in the {_days(fall.window)} from {start:%Y-%m-%d %H:%M} to {fall.at:%Y-%m-%d %H:%M} UTC"
        in text
    )
    assert "in the last" not in text


def _days(window: timedelta) -> str:
    return f"{round(window / timedelta(days=1), 1):g} days"


def test_summary_counts_articles_by_their_own_time(session: Session, settings: Settings) -> None:
    # The daily summary runs to 07:00 UTC, inside a 6-hour bin (06:00-12:00): an article
    # at 08:00 belongs to the period, one at 06:30 to the period before.
    extend_history(session, NOW - timedelta(days=30))
    period_start = datetime(2026, 11, 19, 7, 0, tzinfo=UTC)
    inside, before = pos2_articles()[:2]
    lines = [
        json.dumps(
            {
                "url": f"https://news.example/{article['id']}",
                "title": article["title"],
                "text": article["text"],
                "published": moment.isoformat(),
            }
        )
        for article, moment in (
            (inside, period_start + timedelta(hours=1)),
            (before, period_start - timedelta(minutes=30)),
        )
    ]
    results = list(import_lines(session, settings, lines, source="summary", now=NOW))
    assert [r.result.status for r in results] == ["new", "new"]
    digests = prepare_digests(session, settings, "file", now=NOW, dry_run=True)
    summary = next(d for d in digests if d.kind == "summary")
    # One article, however many series it moved.
    assert "2026-11-19 07:00 UTC – 2026-11-20 07:00 UTC · 1 new article\n" in summary.text
    assert "Power of Siberia 2 (watch item): 1 (previous period 1)" in summary.text
    silent = next(line for line in summary.text.splitlines() if line.startswith("No new coverage"))
    assert "Power of Siberia 2" not in silent


def test_the_summary_trend_ends_with_the_period(session: Session, settings: Settings) -> None:
    # The period ends at 07:00, inside the 6-hour bin from 06:00: articles after 07:00 in
    # that bin belong to the next period and must not be drawn in this one's trend.
    from pipeline.digest import sparkline

    extend_history(session, NOW - timedelta(days=30))
    period_end = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    articles = pos2_articles()[:4]
    moments = [period_end - timedelta(hours=2)] + [period_end + timedelta(hours=h) for h in (1, 2, 3)]
    lines = [
        json.dumps(
            {
                "url": f"https://news.example/t{i}",
                "title": a["title"],
                "text": a["text"],
                "published": m.isoformat(),
            }
        )
        for i, (a, m) in enumerate(zip(articles, moments, strict=True))
    ]
    results = list(import_lines(session, settings, lines, source="trend", now=NOW))
    assert all(r.result.status == "new" for r in results)
    digests = prepare_digests(session, settings, "file", now=NOW, dry_run=True)
    summary = next(d for d in digests if d.kind == "summary")
    line = next(x for x in summary.text.splitlines() if x.startswith("Power of Siberia 2 (watch item)"))
    # One article in the period, at 05:00: the last bar is the 00:00-06:00 bin's, the
    # highest, after an empty one (the 06:00 bin's three later articles are not drawn).
    assert line.startswith("Power of Siberia 2 (watch item): 1 ")
    assert line.rstrip().endswith(sparkline([0, 1]))


@pytest.mark.parametrize("catch_up", [7, 2])
def test_summaries_missed_while_no_run_are_built_oldest_first_each_once(
    session: Session, settings: Settings, tmp_path: Path, catch_up: int
) -> None:
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    digest_yaml = (config / "digest.yaml").read_text(encoding="utf-8")
    assert "    catch_up: 7\n" in digest_yaml
    (config / "digest.yaml").write_text(
        digest_yaml.replace("    catch_up: 7\n", f"    catch_up: {catch_up}\n"), encoding="utf-8"
    )
    settings = settings.model_copy(update={"config_dir": config})
    backfill_burst(session, settings)

    def summaries(now: datetime) -> dict[str, str]:
        built = prepare_digests(session, settings, "file", now=now)
        return {d.digest_key: d.text for d in built if d.kind == "summary"}

    def period(end_day: int) -> str:
        end = datetime(2026, 11, end_day, 7, 0, tzinfo=UTC)
        return f"summary:{(end - timedelta(days=1)).isoformat()}/{end.isoformat()}"

    # The first summary a database builds is the latest period's alone.
    assert list(summaries(NOW)) == [period(20)]
    assert summaries(NOW + timedelta(hours=5)) == {}  # (the same period: built)
    # Four days without a run: the three periods missed, then the latest, oldest first.
    later = NOW + timedelta(days=4)
    missed = [period(21), period(22), period(23), period(24)][-(catch_up + 1) :]
    built = summaries(later)
    assert list(built) == missed
    # Each tells its own period.
    for day, key in zip(range(25 - len(missed), 25), missed, strict=True):
        assert f"2026-11-{day - 1} 07:00 UTC – 2026-11-{day} 07:00 UTC · " in built[key]
    assert summaries(later) == {}
    keys = session.scalars(select(DigestOutbox.digest_key).where(DigestOutbox.digest_key.like("summary:%")))
    assert sorted(keys) == sorted([period(20), *missed])


def test_summaries_turned_off_for_days_then_on_send_no_backlog(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    shutil.copytree(settings.config_dir, config)
    digest_yaml = (config / "digest.yaml").read_text(encoding="utf-8")
    assert "    enabled: true\n    every: 1d\n" in digest_yaml
    off = digest_yaml.replace("    enabled: true\n    every: 1d\n", "    enabled: false\n    every: 1d\n")
    backfill_burst(session, settings)
    on = settings.model_copy(update={"config_dir": config})

    def summaries(now: datetime) -> list[str]:
        built = prepare_digests(session, on, "file", now=now)
        return [d.digest_key for d in built if d.kind == "summary"]

    assert len(summaries(NOW)) == 1
    (config / "digest.yaml").write_text(off, encoding="utf-8")
    for day in range(1, 5):  # the digest runs on, summaries off
        assert summaries(NOW + timedelta(days=day)) == []
    (config / "digest.yaml").write_text(digest_yaml, encoding="utf-8")
    end = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    # Only the latest period: the four before it were passed over on purpose.
    assert summaries(NOW + timedelta(days=4, hours=1)) == [
        f"summary:{(end - timedelta(days=1)).isoformat()}/{end.isoformat()}"
    ]


# --- the articles listed under a change ---------------------------------------------------


def _store_energy(session: Session, moments: list[datetime]) -> None:
    """One article at each of ``moments`` (ids from 1), every one labelled energy; committed."""
    session.execute(insert(Article), [_article(i, m) for i, m in enumerate(moments, 1)])
    session.execute(
        insert(ArticleTopic),
        [
            {"article_id": i, "topic": "energy", "score": 1.0, "evidence": []}
            for i in range(1, len(moments) + 1)
        ],
    )
    session.commit()


def _article(article_id: int, moment: datetime, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": article_id,
        "url": f"https://example.org/a/{article_id}",
        "title": f"Article {article_id}",
        "text": "text",
        "lang": "en",
        "published_at": moment,
        "first_seen_at": moment,
        "content_hash": f"{article_id:064d}",
        "is_seed": False,
        "word_count": 1,
        "relevant": True,
    }
    row.update(fields)
    return row


def test_top_articles_ranks_by_copies_then_time_within_the_window(session: Session) -> None:
    start = NOW - timedelta(hours=24)
    rows = [
        _article(1, NOW - timedelta(hours=20)),
        _article(2, NOW - timedelta(hours=10)),
        _article(3, NOW - timedelta(hours=5)),  # the latest of those without copies
        # undated: its first sighting places it (inside the window)
        _article(4, NOW - timedelta(hours=2), published_at=None),
        # dated a little ahead when it was first seen: stored at the sighting (ingest)
        _article(5, NOW - timedelta(hours=23)),
        _article(6, NOW - timedelta(hours=30)),  # before the window
        _article(7, NOW - timedelta(hours=3), published_at=None, first_seen_at=NOW + timedelta(hours=1)),
        _article(8, NOW - timedelta(hours=4), is_seed=True),
        _article(9, NOW - timedelta(hours=4), relevant=False),
        # copies: two of article 1 (one a translation), one of article 2
        _article(10, NOW - timedelta(hours=9), duplicate_of_id=1, copy_kind="exact"),
        _article(
            11,
            NOW - timedelta(hours=8),
            duplicate_of_id=1,
            copy_kind="translation",
            lang="ru",
            url="https://ru/1",
        ),
        _article(12, NOW - timedelta(hours=7), duplicate_of_id=2, copy_kind="near"),
    ]
    session.execute(insert(Article), rows)
    session.execute(
        insert(ArticleTopic),
        [
            {"article_id": i, "topic": "energy", "score": 0.9, "evidence": [f"evidence {i}"]}
            for i in (1, 3, 4, 6, 9, 10)
        ],
    )
    session.commit()

    everything = top_articles(session, None, since=start, until=NOW, limit=10)
    # Relevant stories in a series (2 and 5 are in none: the summary does not count them
    # either; 9 is labelled but not relevant).
    assert [a.article_id for a in everything] == [1, 4, 3]
    first = everything[0]
    assert (first.copies, first.also_in) == (1, [("ru", "https://ru/1")])
    assert [a.article_id for a in top_articles(session, None, since=start, until=NOW, limit=2)] == [1, 4]
    energy = top_articles(session, "topic:energy", since=start, until=NOW, limit=10)
    # Labelled originals only (9 is labelled but not relevant: a series lists its labels).
    assert [a.article_id for a in energy] == [1, 4, 9, 3]
    assert [a.evidence for a in energy] == ["evidence 1", "evidence 4", "evidence 9", "evidence 3"]
    assert top_articles(session, "watch:power_of_siberia_2", since=start, until=NOW, limit=10) == []
    # A story whose copy carries the label is in the series, and listed.
    session.execute(
        insert(ArticleTopic), [{"article_id": 12, "topic": "energy", "score": 0.9, "evidence": []}]
    )
    session.commit()
    everything = top_articles(session, None, since=start, until=NOW, limit=10)
    assert [a.article_id for a in everything] == [1, 2, 4, 3]
    assert everything[1].copies == 1 and everything[1].also_in == []


@pytest.mark.slow
def test_top_articles_of_a_series_larger_than_a_query_takes_parameters(session: Session) -> None:
    # PostgreSQL's driver takes at most 65,535 parameters: the series' articles must never
    # be passed back as a list of ids.
    count = 70_000
    moment = NOW - timedelta(days=400)
    session.execute(
        insert(Article),
        [_article(i, moment) for i in range(1, count + 1)]
        + [_article(count + 1, NOW - timedelta(hours=1), title="today")],
    )
    session.execute(
        insert(ArticleTopic),
        [{"article_id": i, "topic": "energy", "score": 0.9, "evidence": []} for i in range(1, count + 2)],
    )
    session.commit()
    listed = top_articles(session, "topic:energy", since=NOW - timedelta(days=1), until=NOW, limit=5)
    assert [a.title for a in listed] == ["today"]


def test_series_binned_by_the_database_match_the_articles_own_times(
    session: Session, settings: Settings
) -> None:
    """The database counts each series per bin and per period; the same counts as reading
    every article's moment (its publication time, or when first seen if it gave none;
    ingest stores none after the first sighting) and binning it here, at bin edges and at
    ``now`` too."""
    from pipeline.coverage import bin_counts
    from pipeline.reporting import _new_article_count, load_reporting_config, series_counts

    rng = random.Random(9)
    config, _ = load_reporting_config(settings)
    edges = [NOW - config.bin_size * k for k in range(0, 40)]
    rows, labels = [], []
    for article_id in range(1, 301):
        seen = (
            rng.choice(edges) - timedelta(microseconds=rng.choice([0, 0, 400]))  # (just before an edge too)
            if rng.random() < 0.3
            else NOW - timedelta(seconds=rng.randint(0, 9 * 86400))
        )
        published = rng.choice(
            [
                None,
                seen,
                seen - timedelta(hours=rng.randint(0, 30), microseconds=rng.randint(0, 999_999)),
            ]
        )
        rows.append(
            _article(
                article_id,
                seen,
                published_at=published,
                first_seen_at=seen,
                duplicate_of_id=1 if article_id % 11 == 0 else None,
                is_seed=article_id % 17 == 0,
            )
        )
        for topic in rng.sample(["energy", "ukraine", "diplomacy"], rng.randint(0, 2)):
            labels.append({"article_id": article_id, "topic": topic, "score": 0.9, "evidence": []})
    session.execute(insert(Article), rows)
    session.execute(insert(ArticleTopic), labels)
    session.commit()

    def moment(row: dict[str, object]) -> datetime:
        published, seen = row["published_at"], row["first_seen_at"]
        assert isinstance(seen, datetime)
        return seen if published is None else published  # type: ignore[return-value]

    counted = [r for r in rows if r["duplicate_of_id"] is None and not r["is_seed"]]
    # A story (an original and its copies) counts once under each label any of them carries,
    # at its original's moment.
    stories: set[tuple[str, int]] = set()
    for label in labels:
        row = rows[int(label["article_id"]) - 1]
        root = int(row["duplicate_of_id"] or label["article_id"])  # type: ignore[call-overload]
        stories.add((f"topic:{label['topic']}", root))
    moments: dict[str, list[datetime]] = {}
    for name, root in sorted(stories):
        if rows[root - 1] in counted:
            moments.setdefault(name, []).append(moment(rows[root - 1]))
    report = compute_coverage(session, settings, now=NOW)
    first = report.bins["topic:energy"][0][0]
    for name in ("topic:energy", "topic:ukraine", "topic:diplomacy"):
        expected = bin_counts(moments.get(name, []), start=first, end=NOW, bin_size=config.bin_size)
        assert report.bins[name] == expected, name
        assert sum(count for _, count in expected) > 20
    start, end = edges[12], edges[3]
    assert series_counts(session, start, end) == {
        name: n for name, times in moments.items() if (n := sum(start <= t < end for t in times))
    }
    labelled = {int(label["article_id"]) for label in labels}
    assert _new_article_count(session, start, end) == sum(
        1 for r in counted if r["id"] in labelled and start <= moment(r) < end
    )


@pytest.mark.parametrize("title", [None, "\u200b\u200b\u3164"])
def test_an_untitled_article_is_shown_by_its_opening_words(
    session: Session, settings: Settings, title: str | None
) -> None:
    """In a digest as in the lists: a headline of nothing visible is no headline."""
    from pipeline.reporting import top_articles

    article = pos2_articles()[0]
    line = json.dumps(
        {
            "id": "u",
            "title": title,
            "text": article["text"],
            "published": (NOW - timedelta(hours=3)).isoformat(),
        }
    )
    [result] = import_lines(session, settings, [line], source="untitled", now=NOW)
    assert result.result.status == "new"
    shown = top_articles(
        session, "watch:power_of_siberia_2", since=NOW - timedelta(days=1), until=NOW, limit=8
    )
    assert [a.article_id for a in shown] == [result.result.article_id]
    first_words = " ".join(article["text"].split()[:5])
    assert shown[0].title is not None and shown[0].title.startswith(first_words)
    assert shown[0].title.endswith("…")


@pytest.mark.parametrize(
    "blank",
    ["\u200b\ufeff", "\u3164", "\u2800\u2800", " \u00ad ", "\u180e\u206a", "\ufe0f\U000e0041", "\u034f"],
)
def test_a_headline_of_nothing_visible_is_no_headline(blank: str) -> None:
    from pipeline.browse import display_title
    from pipeline.db.schema import Article

    article = Article(title=blank, text="Putin and Xi met in Beijing on Tuesday.")
    assert display_title(article) == "Putin and Xi met in Beijing on Tuesday."
    assert display_title(Article(title=f"{blank}Talks", text="x")) == f"{blank}Talks".strip()


@pytest.mark.parametrize("lead", range(8))
def test_opening_words_are_never_cut_inside_a_cluster(lead: int) -> None:
    import unicodedata

    from pipeline.browse import opening_words

    text = "ក" * lead + "ទីក្រុងប៉េកាំង" * 12  # Khmer: coeng signs and vowel signs throughout
    shown = opening_words(text)
    assert shown.endswith("…")
    kept = shown[:-1]
    assert text.startswith(kept)
    assert unicodedata.combining(kept[-1]) != 9  # no coeng left waiting for its letter
    assert unicodedata.category(text[len(kept)])[0] != "M"  # no mark cut off its letter


def test_a_same_language_copy_linked_through_a_translation_is_counted_as_a_copy(
    session: Session, settings: Settings
) -> None:
    from pipeline.reporting import top_articles

    first, second = pos2_articles()[:2]
    lines = [
        json.dumps({"id": key, "text": a["text"], "published": (NOW - timedelta(hours=3)).isoformat()})
        for key, a in (("root", first), ("copy", second))
    ]
    results = [r.result for r in import_lines(session, settings, lines, source="same", now=NOW)]
    root, copy = (session.get(Article, r.article_id) for r in results)
    assert root is not None and copy is not None
    # Linked as a translation of another copy of the story, in the original's own language.
    copy.duplicate_of_id, copy.copy_kind, copy.lang = root.id, "translation", root.lang
    session.commit()
    [shown] = top_articles(session, None, since=NOW - timedelta(days=1), until=NOW, limit=8)
    assert shown.article_id == root.id
    assert shown.copies == 1 and shown.also_in == []


def test_coverage_says_how_far_back_it_counts_when_the_history_is_longer(
    session: Session,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Coverage is counted over at most the last two years: a history collected since 2000
    is said to be counted from there, and no more days than that can be asked for."""
    from pipeline import cli

    extend_history(session, datetime(2000, 6, 1, tzinfo=UTC))
    session.execute(
        insert(Article), [_article(1, NOW - timedelta(days=3)), _article(2, datetime(2001, 1, 1, tzinfo=UTC))]
    )
    session.execute(
        insert(ArticleTopic),
        [{"article_id": i, "topic": "energy", "score": 0.9, "evidence": []} for i in (1, 2)],
    )
    session.commit()
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "730"]) == 0
    err = capsys.readouterr().err
    assert (
        "history since 2000-06-01 00:00 UTC, counted from 2024-11-20 12:00 UTC (at most 730 days back)" in err
    )
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "730", "--json"]) == 0
    energy = next(
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"topic:energy"' in line
    )
    assert sum(count for _, count in energy["bins"]) == 1
    with pytest.raises(SystemExit):
        cli.main(["--db", settings.db_url, "coverage", "--days", "36500"])
    assert "must be from 1 to 730" in capsys.readouterr().err


def test_coverage_shows_every_bin_of_the_days_asked_for(
    session: Session,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`coverage --days 3` on a history that started today: the three whole UTC days, every
    6-hour bin of them, the days before the history counting zero (as the web UI shows)."""
    from pipeline import cli

    extend_history(session, NOW - timedelta(hours=1))
    session.execute(insert(Article), [_article(1, NOW - timedelta(minutes=30))])
    session.execute(
        insert(ArticleTopic), [{"article_id": 1, "topic": "energy", "score": 0.9, "evidence": []}]
    )
    session.commit()
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "3", "--json"]) == 0
    energy = next(
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"topic:energy"' in line
    )
    starts = [datetime.fromisoformat(start) for start, _ in energy["bins"]]
    first_day = datetime.combine(NOW.date() - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    assert starts[0] == first_day
    assert all(b - a == timedelta(hours=6) for a, b in itertools.pairwise(starts))
    assert starts[-1] == NOW - timedelta(hours=6)  # (the last complete bin, 06:00-12:00)
    assert [count for _, count in energy["bins"]] == [0] * (len(starts) - 1) + [1]


def test_coverage_bars_follow_the_days(
    session: Session,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`coverage --days 31`: 124 6-hour bins, too many for a bar each. A steady two articles
    a day is drawn as a flat line of days, not as bars of 18 hours that hold one day's
    articles, then two, in turn."""
    from pipeline import cli

    start = datetime.combine(NOW.date() - timedelta(days=40), datetime.min.time(), tzinfo=UTC)
    extend_history(session, start)
    moments = [start + timedelta(days=day, hours=hour) for day in range(41) for hour in (3, 15)]
    _store_energy(session, [moment for moment in moments if moment < NOW])
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "31"]) == 0
    shown = capsys.readouterr()
    bars = next(line for line in shown.out.splitlines() if "(topic:energy)" in line).split()[-1]
    assert bars == "█" * 30 + "▅"  # (today: one article so far)
    assert "a bar per 24 hours" in shown.err
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "1"]) == 0
    assert "last 1 day, since" in capsys.readouterr().err


def test_the_history_start_is_kept_and_shown_in_utc(
    session: Session,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A back-fill dated with an offset (+05:00) starts the history at that moment, stored
    and shown in UTC; a start stored with an offset before is read as the moment it names."""
    from sqlalchemy import text
    from starlette.testclient import TestClient

    from pipeline import cli
    from pipeline.db.repo import history_start
    from pipeline.web import create_app

    plus_five = timezone(timedelta(hours=5))
    extend_history(session, datetime(2026, 11, 1, 3, 0, tzinfo=plus_five))
    session.commit()
    stored = session.execute(
        text("SELECT value FROM pipeline_state WHERE key = 'history_start'")
    ).scalar_one()
    assert stored == "2026-10-31T22:00:00+00:00"
    monkeypatch.setenv("SUMMITWATCH_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setattr("pipeline.db.schema.utcnow", lambda: NOW)
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "3"]) == 0
    assert "history since 2026-10-31 22:00 UTC" in capsys.readouterr().err
    # A row written with its offset by an earlier version.
    session.execute(
        text("UPDATE pipeline_state SET value = '2026-11-01T03:00:00+05:00' WHERE key = 'history_start'")
    )
    session.commit()
    assert history_start(session) == datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    assert history_start(session).utcoffset() == timedelta(0)
    with TestClient(create_app(settings, clock=lambda: NOW), base_url="http://localhost") as client:
        assert "Collecting since 2026-10-31 22:00 UTC." in client.get("/coverage").text
    assert cli.main(["--db", settings.db_url, "coverage", "--days", "3"]) == 0
    assert "history since 2026-10-31 22:00 UTC" in capsys.readouterr().err
    extend_history(session, NOW)  # (a later date: the start stays, written in UTC)
    session.commit()
    stored = session.execute(
        text("SELECT value FROM pipeline_state WHERE key = 'history_start'")
    ).scalar_one()
    assert stored == "2026-10-31T22:00:00+00:00"


def test_a_reported_change_moved_by_a_back_fill_stays_one_event_with_its_digest(
    session: Session, settings: Settings
) -> None:
    """A burst reported at 18:00; a back-fill then moves its first detectable bin to 06:00.
    Nothing is sent again, and the event stays one row, with the digest that reported it
    (v_coverage_changes lists it once, reported)."""
    from sqlalchemy import text

    from pipeline.db.engine import apply_views, make_engine
    from pipeline.db.schema import ArticleWatch

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    extend_history(session, now - timedelta(days=40))

    def add(first_id: int, start: datetime, count: int) -> None:
        ids = range(first_id, first_id + count)
        session.execute(insert(Article), [_article(i, start + timedelta(minutes=10 * i)) for i in ids])
        session.execute(
            insert(ArticleWatch),
            [{"article_id": i, "item": "power_of_siberia_2", "evidence": []} for i in ids],
        )
        session.commit()

    def rows() -> list[tuple[datetime, str, int | None]]:
        return [
            (row.at, row.direction, row.digest_id)
            for row in session.scalars(
                select(CoverageChange).where(CoverageChange.series == "watch:power_of_siberia_2")
            )
        ]

    add(1, datetime(2026, 12, 6, 13, 0, tzinfo=UTC), 8)
    prepare_digests(session, settings, "file", now=now)
    (reported,) = rows()
    assert reported[:2] == (datetime(2026, 12, 6, 18, 0, tzinfo=UTC), "up") and reported[2]
    add(20, datetime(2026, 12, 6, 1, 0, tzinfo=UTC), 6)  # the back-fill
    later = now + timedelta(hours=1)
    shifted_report = compute_coverage(session, settings, now=later)
    shifted = shifted_report.changes["watch:power_of_siberia_2"]
    assert [c.at for c in shifted if c.direction == "up"] == [datetime(2026, 12, 6, 6, 0, tzinfo=UTC)]
    # The coverage report says which digest reported it, though at another moment now.
    (moved,) = [c for c in shifted if c.direction == "up"]
    assert shifted_report.reported.get(moved.key) == reported[2]
    assert prepare_digests(session, settings, "file", now=later) == []
    assert rows() == [reported]
    # A row left unreported beside it (as earlier versions stored the moved detection) is
    # the same event: it is removed.
    session.add(
        CoverageChange(
            series="watch:power_of_siberia_2",
            at=datetime(2026, 12, 6, 6, 0, tzinfo=UTC),
            direction="up",
            count=14,
            baseline=0.0,
            score=1.0,
            explanation="moved",
            detail={},
        )
    )
    session.commit()
    assert prepare_digests(session, settings, "file", now=later) == []
    assert rows() == [reported]
    engine = make_engine(settings.db_url)
    apply_views(engine)
    engine.dispose()
    listed = session.execute(
        text("SELECT digest_id FROM v_coverage_changes WHERE series = 'watch:power_of_siberia_2'")
    ).all()
    assert [row.digest_id for row in listed] == [reported[2]]


def test_a_new_burst_after_a_reported_change_moved_earlier_is_reported(
    session: Session, settings: Settings
) -> None:
    """A change reported at 06:00; a late article moves its first detectable bin to 00:00,
    so the detector's cooldown ends six hours sooner, and a burst ten times the size is
    detected less than a cooldown after 06:00. It is another event: reported in a digest of
    its own, not taken for the one reported (nor shown as reported in that digest)."""
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    extend_history(session, now - timedelta(days=40))

    def add(first_id: int, moments: list[datetime]) -> None:
        ids = range(first_id, first_id + len(moments))
        session.execute(insert(Article), [_article(i, m) for i, m in zip(ids, moments, strict=True)])
        session.execute(
            insert(ArticleTopic),
            [{"article_id": i, "topic": "energy", "score": 1.0, "evidence": []} for i in ids],
        )
        session.commit()

    day = datetime(2026, 12, 5, tzinfo=UTC)
    add(1, [day + timedelta(hours=h) for h in (13, 19, 25)])
    assert "changes" in [d.kind for d in prepare_digests(session, settings, "file", now=now)]
    reported = session.scalars(select(CoverageChange).where(CoverageChange.series == "topic:energy")).one()
    assert (reported.at, reported.direction) == (datetime(2026, 12, 6, 6, 0, tzinfo=UTC), "up")
    add(10, [day + timedelta(hours=7)])  # late: the event is now detectable at 00:00
    burst = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    add(20, [burst + timedelta(minutes=10 * i) for i in range(30)])
    later = datetime(2026, 12, 8, 1, 30, tzinfo=UTC)
    report = compute_coverage(session, settings, now=later)
    moved, new = [c for c in report.changes["topic:energy"] if c.direction == "up"]
    assert moved.at == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert new.at == datetime(2026, 12, 8, 0, 0, tzinfo=UTC) and new.count == 30
    assert report.reported.get(moved.key) == reported.digest_id
    assert report.reported.get(new.key) is None
    digests = [d for d in prepare_digests(session, settings, "file", now=later) if d.kind == "changes"]
    assert len(digests) == 1 and "30 articles in the last 24 h" in digests[0].text
    rows = session.scalars(
        select(CoverageChange).where(CoverageChange.series == "topic:energy").order_by(CoverageChange.at)
    ).all()
    assert [(row.at.replace(tzinfo=UTC), row.count) for row in rows] == [
        (reported.at.replace(tzinfo=UTC), 3),
        (new.at, 30),
    ]
    assert rows[1].digest_id is not None and rows[1].digest_id != reported.digest_id
    assert prepare_digests(session, settings, "file", now=later) == []


def test_the_cut_at_two_years_does_not_make_old_bins_new_changes(
    session: Session, settings: Settings
) -> None:
    """Coverage is binned over the last two years. Energy runs at 3 a day; two quiet days
    then five articles, just after where two years back falls today, are no change against
    those 3 a day: they must not become one against the two quiet days left of the baseline
    (the digest would report a two-year-old "change" as new, one more as the cut moves on)."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    cut = now - timedelta(days=730)
    extend_history(session, cut - timedelta(days=70))
    moments = [cut + timedelta(days=day, hours=hour) for day in range(-60, 0) for hour in (1, 9, 17)]
    moments += [cut + timedelta(days=2, hours=2 + hour) for hour in range(5)]
    moments += [cut + timedelta(days=day, hours=hour) for day in range(3, 730) for hour in (1, 9, 17)]
    _store_energy(session, moments)
    report = compute_coverage(session, settings, now=now)
    assert report.first_bin == cut
    assert report.bins["topic:energy"][0][0] == cut
    assert report.changes["topic:energy"] == []
    assert [d.kind for d in prepare_digests(session, settings, "file", now=now, dry_run=True)] == ["summary"]


def test_a_story_shows_the_figures_of_its_own_change_when_its_series_changed_twice(
    session: Session, settings: Settings
) -> None:
    """A burst of Taiwan & Asia ten days ago and the silence of the last days, both in the
    first digest (a back-filled history): the burst's articles moved the series up, and
    their story says so with the burst's figures, not the silence's."""
    store_taiwan_silence(session)
    burst = NOW - timedelta(days=10)
    session.execute(
        insert(Article), [_article(10_000 + i, burst + timedelta(minutes=20 * i)) for i in range(12)]
    )
    session.execute(
        insert(ArticleTopic),
        [{"article_id": 10_000 + i, "topic": "taiwan_asia", "score": 1.0, "evidence": []} for i in range(12)],
    )
    session.commit()
    changes = compute_coverage(session, settings, now=NOW).changes["topic:taiwan_asia"]
    up, down = sorted(changes, key=lambda c: c.direction != "up")
    assert (up.direction, down.direction) == ("up", "down") and up.at < down.at
    digest = next(d for d in prepare_digests(session, settings, "file", now=NOW) if d.kind == "changes")
    assert digest.text.startswith("2 coverage changes in 1 series (1 up, 1 down)")
    stories = digest.text.split("behind these changes", 1)[1]
    assert f"Moved: Taiwan & Asia ↑ {up.count} vs" in stories
    assert "↓" not in stories


def test_days_without_collection_are_no_silence(session: Session, settings: Settings) -> None:
    """Ingest down for four days (the scheduler stopped, or every feed failing): the empty
    days are no data, so no busy series reports a fall; the same days with feeds polled
    and answering are a real silence, reported. Nothing polled ever: judged as before."""
    from pipeline.db.schema import Feed

    store_taiwan_silence(session)
    # (Energy stops too, with everything else: nothing was stored after the outage began.)
    for article in session.scalars(select(Article).where(Article.first_seen_at >= SILENT_FROM)):
        session.delete(article)
    session.flush()
    feed = Feed(url="https://news.example/feed", poll_finished_at=SILENT_FROM, failure_count=0)
    session.add(feed)
    session.flush()

    def falls() -> dict[str, int]:
        report = compute_coverage(session, settings, now=NOW)
        return {
            series: sum(c.direction == "down" for c in changes) for series, changes in report.changes.items()
        }

    assert falls()["topic:taiwan_asia"] == falls()["topic:energy"] == 0  # the last poll was 4 days ago
    feed.failure_count, feed.poll_finished_at = 5, NOW - timedelta(minutes=30)
    session.flush()
    assert falls()["topic:taiwan_asia"] == falls()["topic:energy"] == 0  # polled, but failing
    feed.failure_count = 0
    session.flush()
    assert falls()["topic:taiwan_asia"] == falls()["topic:energy"] == 1  # polled and answering
    session.delete(feed)
    session.flush()
    assert falls()["topic:taiwan_asia"] == falls()["topic:energy"] == 1  # no feed ever polled

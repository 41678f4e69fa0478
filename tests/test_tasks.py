"""The task bodies, without Airflow: batching for dynamic task mapping."""

from __future__ import annotations

import gc
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from pipeline.bootstrap import initialise
from pipeline.collector import COLLECT_EVERY
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, Feed, PipelineState
from pipeline.errors import ConfigError, DatabaseError
from pipeline.settings import Settings
from pipeline.tasks import MAX_MAPPED_BATCHES, plan_feed_batches, poll_feed_batch
from tests.conftest import REPO_ROOT, make_settings
from tests.test_faults import NewsSite, prepare


def test_batches_group_hosts_and_stay_under_the_mapping_limit(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}")
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    hosts = ["a.example", "www.b.example", "news.b.example", "c.example"]
    with session_factory(engine)() as session:
        for i in range(4000):
            repo.upsert_feed(session, f"https://{hosts[i % 4]}/feed/{i}")
        session.commit()
    engine.dispose()
    batches = plan_feed_batches(settings=settings, batch_size=10)
    assert len(batches) == MAX_MAPPED_BATCHES  # 400 batches of 10 would exceed it: batches grow instead
    assert sorted(i for batch in batches for i in batch) == list(range(1, 4001))
    # One outlet's feeds are contiguous: at most a couple of batches share a host boundary.
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        urls = repo.feed_urls(session, list(range(1, 4001)))
    engine.dispose()
    outlet_of = {i: urls[i].split("/")[2].split(".")[-2] for i in urls}
    outlets_per_batch = [len({outlet_of[i] for i in batch}) for batch in batches]
    assert sum(n > 1 for n in outlets_per_batch) <= 2
    assert plan_feed_batches([7, 3], settings=settings) == [[3, 7]]


def test_a_feed_polled_by_the_run_before_is_due_in_the_next(tmp_path: Path) -> None:
    """Polled a few seconds after its run planned it, a feed's next poll time falls a few
    seconds after the next run's planning moment: it is planned all the same (and not
    polled every second run). One not due for minutes yet is not."""

    from pipeline.db.schema import utcnow

    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}")
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        waits = (timedelta(seconds=20), timedelta(minutes=10), -timedelta(minutes=1), timedelta(seconds=20))
        for i, wait in enumerate(waits):
            feed, _ = repo.upsert_feed(session, f"https://n{i}.example/feed")
            feed.next_poll_at = utcnow() + wait
        # (the fourth is failing: it waits for its backoff, or what its server asked, to the second)
        feed.failure_count = 2
        session.commit()
    engine.dispose()
    assert plan_feed_batches(settings=settings) == [[1, 3]]


def test_a_manual_run_names_its_feeds_as_a_list_of_ids(db_url: str) -> None:
    settings = make_settings(db_url)
    initialise(settings, load_feeds=False)
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        for i in range(12):
            repo.upsert_feed(session, f"https://n{i}.example/feed")
        session.commit()
    engine.dispose()
    with pytest.raises(ConfigError, match="feed_ids: expected a list of feed ids"):
        plan_feed_batches("12", settings=settings)  # type: ignore[arg-type]  (not feeds 1 and 2)
    with pytest.raises(ConfigError, match="feed_ids: expected a list"):
        plan_feed_batches([1, "2"], settings=settings)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="no feed with id 999"):
        plan_feed_batches([12, 999], settings=settings)
    # Beyond a row id (PostgreSQL's int4): no feed, not "integer out of range".
    with pytest.raises(ConfigError, match="no feed with id 2147483648, -3"):
        plan_feed_batches([12, 2**31, -3], settings=settings)
    assert plan_feed_batches([2, 2, 12], settings=settings) == [[2, 12]]


def test_poll_tasks_stop_on_a_database_init_has_not_brought_up_to_date(db_url: str) -> None:
    """The DAG's planning and poll tasks, like `run`, refuse a database whose text hashes
    an earlier release made (its folding changed since): `init` first."""
    settings = make_settings(db_url)
    initialise(settings, load_feeds=False)  # (the seed corpus: the database holds articles)
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        feed, _ = repo.upsert_feed(session, "https://n.example/feed")
        session.execute(
            update(PipelineState).where(PipelineState.key == "content_hash_scheme").values(value="1")
        )
        session.commit()
    engine.dispose()
    for task in (plan_feed_batches, poll_feed_batch):
        with pytest.raises(DatabaseError, match=r"text hashes .*run `summitwatch init` first"):
            task([feed.id], settings=settings)
    initialise(settings, load_feeds=False)
    assert plan_feed_batches([feed.id], settings=settings) == [[feed.id]]


def test_without_slack_a_digest_task_logs_what_it_wrote(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A digest written to a file on a worker is also in the task's log, with its path."""
    import logging

    from pipeline.tasks import deliver_digests, prepare_digests

    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}", digest_dir=str(tmp_path / "files"))
    _coverage_change(settings)
    assert prepare_digests(settings=settings)["digests_queued"] >= 1
    with caplog.at_level(logging.INFO, logger="pipeline.tasks"):
        assert deliver_digests(settings=settings)["sent"] >= 1
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "pipeline.tasks")
    written = sorted((tmp_path / "files").iterdir())
    assert written and f"(written to {written[0]})" in logged
    assert written[0].read_text(encoding="utf-8").strip() in logged


def _coverage_change(settings: Settings) -> None:
    """A database with a month of history and today's burst of Power of Siberia 2 articles."""
    import json

    from pipeline.db.repo import extend_history
    from pipeline.db.schema import utcnow
    from pipeline.ingest import import_lines
    from tests.test_reporting import pos2_articles

    initialise(settings, load_feeds=False)
    now = utcnow()
    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        extend_history(session, now - timedelta(days=30))
        lines = [
            json.dumps(
                {
                    "url": f"https://n.example/{a['id']}",
                    "text": a["text"],
                    "published": (now - timedelta(hours=2 + i)).isoformat(),
                }
            )
            for i, a in enumerate(pos2_articles())
        ]
        list(import_lines(session, settings, lines, source="t", now=now))
    engine.dispose()


def test_queue_and_deliver_use_the_same_slack_destination(tmp_path: Path) -> None:
    """The digest DAG's two tasks get Slack from the Airflow connection: both must use it."""
    from pipeline.db.schema import DigestOutbox
    from pipeline.tasks import deliver_digests, prepare_digests
    from tests.slack_server import FakeSlack

    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}", digest_dir=str(tmp_path / "files"))
    _coverage_change(settings)
    engine = make_engine(settings.db_url)
    with FakeSlack() as slack:
        connection = {"bot_token": slack.token, "channel": "C0DIGEST", "api_url": slack.api_url}
        assert prepare_digests(slack=connection, settings=settings)["digests_queued"] >= 1
        result = deliver_digests(slack=connection, settings=settings)
        assert result["sent"] >= 1
        assert slack.posted_to("C0DIGEST")
    with session_factory(engine)() as session:
        from sqlalchemy import select

        rows = session.scalars(select(DigestOutbox)).all()
        assert {r.destination for r in rows} == {"slack:C0DIGEST"}
        assert {r.status for r in rows} == {"sent"}
    engine.dispose()
    assert not (tmp_path / "files").exists()


def test_slack_settings_that_give_no_token_nor_webhook_leave_the_digests_pending(tmp_path: Path) -> None:
    """A channel without a bot token, or an Airflow connection with neither a token nor a
    webhook: delivery stops with the configuration named, the digests stay pending (they
    were written to a file and marked sent)."""
    from sqlalchemy import select

    from pipeline.db.schema import DigestOutbox
    from pipeline.errors import ConfigError
    from pipeline.tasks import deliver_digests, prepare_digests
    from tests.slack_server import FakeSlack

    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}", digest_dir=str(tmp_path / "files"))
    _coverage_change(settings)
    engine = make_engine(settings.db_url)
    with FakeSlack() as slack:
        connection = {"bot_token": slack.token, "channel": "C0DIGEST", "api_url": slack.api_url}
        assert prepare_digests(slack=connection, settings=settings)["digests_queued"] >= 1
        with pytest.raises(ConfigError, match="no Slack bot token"):
            deliver_digests(slack={"channel": "C0DIGEST", "api_url": slack.api_url}, settings=settings)
        channel_only = make_settings(
            settings.db_url, digest_dir=str(tmp_path / "files"), slack={"channel": "C0"}
        )
        with pytest.raises(ConfigError, match="without a bot token"):
            deliver_digests(settings=channel_only)
        assert not slack.messages
    with session_factory(engine)() as session:
        assert {r.status for r in session.scalars(select(DigestOutbox))} == {"pending"}
    engine.dispose()
    assert not (tmp_path / "files").exists()


def test_errors_name_the_airflow_connection_field_a_slack_setting_came_from(tmp_path: Path) -> None:
    """Settings read from the summitwatch_slack connection were named by environment
    variables nobody had set ("... (SLACK_CHANNEL) is required with SLACK_BOT_TOKEN")."""
    from pipeline.tasks import deliver_digests, prepare_digests

    settings = make_settings(f"sqlite:///{tmp_path / 'tasks.db'}", digest_dir=str(tmp_path / "files"))
    initialise(settings, load_feeds=False)
    cases = {
        "required with a bot token (password of the Airflow connection summitwatch_slack)": {
            "bot_token": "xoxb-1"
        },
        # (A channel beside a webhook is unused; a channel alone is a connection that gives
        # neither a token nor a webhook.)
        "the Airflow connection summitwatch_slack is set but gives no Slack bot token (its password": {
            "channel": "C1"
        },
        "extra.webhook_url of the Airflow connection summitwatch_slack must be an https:// URL": {
            "webhook_url": "ftp://hooks.example/secret-path"
        },
        "host or extra.api_url of the Airflow connection summitwatch_slack must be an http(s) URL": {
            "bot_token": "xoxb-1",
            "channel": "C1",
            "api_url": "ftp://slack.example/api/",
        },
    }
    for message, connection in cases.items():
        for task in (prepare_digests, deliver_digests):
            with pytest.raises(ConfigError) as refused:
                task(slack=connection, settings=settings)
            assert message in str(refused.value), (task.__name__, str(refused.value))
            assert "setting 'slack." not in str(refused.value)
    # A value the environment gave is still named by its variable.
    from_env = make_settings(settings.db_url, slack={"bot_token": "xoxb-2"})
    with pytest.raises(ConfigError, match=r"is required with a bot token \(SLACK_BOT_TOKEN\)") as refused:
        deliver_digests(slack={"api_url": "http://127.0.0.1:9/api/"}, settings=from_env)
    assert "extra.channel of the Airflow connection summitwatch_slack (or SLACK_CHANNEL)" in str(
        refused.value
    )


def test_a_poll_task_collects_rarely_and_gives_the_process_its_setting_back(tmp_path: Path) -> None:
    """The DAG's poll task runs with the command's collector setting, then restores the host's."""
    db_url = f"sqlite:///{tmp_path / 'poll.db'}"
    collections: list[int] = []

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(gc.get_threshold()[0])

    before = gc.get_threshold()
    assert before[0] < COLLECT_EVERY  # (pytest runs with the interpreter's default)
    during: list[int] = []
    with NewsSite(6) as site:
        # Called by the server while the task is in the middle of an item.
        site.on_page = lambda number: during.append(gc.get_threshold()[0])
        engine = prepare(db_url, REPO_ROOT / "config", site)
        with engine.connect() as connection:
            feed_ids = [int(i) for i in connection.scalars(select(Feed.id))]
        gc.callbacks.append(watch)
        try:
            counts = poll_feed_batch(feed_ids, settings=make_settings(db_url))
        finally:
            gc.callbacks.remove(watch)
        with engine.connect() as connection:
            stored = connection.scalar(
                select(func.count()).select_from(Article).where(Article.is_seed.is_(False))
            )
        engine.dispose()
    assert counts.get("new") == 6 and stored == 6
    assert len(during) == 6 and set(during) == {COLLECT_EVERY}
    # At the default threshold the poll starts the collector dozens of times; at the task's,
    # a few times at most.
    assert len(collections) <= 3, collections
    assert gc.get_threshold() == before


def test_a_poll_task_waits_for_its_encoder_preload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow ends a task's process without joining its threads: the task joins its own."""
    from pipeline import encoder

    started = threading.Event()

    def slow_build(
        model: str, threads: int, cache_dir: Path | None, piece_cache: int
    ) -> encoder.SentenceEncoder:
        started.set()
        time.sleep(1.0)  # (a cold cache: unpacking the weights)
        raise ConfigError("not needed by this poll")

    settings = make_settings(f"sqlite:///{tmp_path / 'poll.db'}")
    initialise(settings, load_feeds=False)
    encoder.finish_preload()
    monkeypatch.setattr(encoder, "_CACHE", {})
    monkeypatch.setattr(encoder, "_PRELOADS", [])
    monkeypatch.setattr(encoder, "_build", slow_build)
    counts = poll_feed_batch([], settings=settings)  # no feed: nothing to load
    assert started.is_set() and counts.get("new", 0) == 0
    assert [thread for thread in encoder._PRELOADS if thread.is_alive()] == []


def test_a_retried_poll_task_polls_only_the_feeds_still_due(tmp_path: Path) -> None:
    """A poll task that polled its feeds and died before Airflow heard of it is retried: it
    must not poll again what it polled in this run (a failing feed counted its failure twice
    and its backoff doubled), and its totals must still count the articles stored."""
    db_url = f"sqlite:///{tmp_path / 'retry.db'}"
    with NewsSite(2) as site:
        engine = prepare(db_url, REPO_ROOT / "config", site)
        with session_factory(engine)() as session:
            broken, _ = repo.upsert_feed(session, "http://127.0.0.1:9/down.xml", name="down")
            session.commit()
            feed_ids = [int(i) for i in session.scalars(select(Feed.id))]
        settings = make_settings(db_url, allow_private_networks=True)
        run_started = datetime.now(UTC)
        first = poll_feed_batch(feed_ids, settings=settings, polled_since=run_started)
        again = poll_feed_batch(feed_ids, settings=settings, polled_since=run_started)  # the retry
        with session_factory(engine)() as session:
            down = session.get(Feed, broken.id)
            assert down is not None and down.failure_count == 1
        # A later run polls them all again, due or not (a run given its feeds explicitly).
        later = poll_feed_batch(feed_ids, settings=settings, polled_since=datetime.now(UTC))
        engine.dispose()
    assert first.get("new") == 2 and first.get("feeds_error") == 1
    # Every feed of the batch was polled by the earlier try: the retry polls none, and
    # reports what that try stored, so that the run's totals count it.
    assert again == {"new": 2, "feeds_polled_earlier": 2, "feeds_failed_earlier": 1}
    assert later == {"feeds_unchanged": 1, "feeds_error": 1}


def test_the_finish_task_fails_a_run_that_polled_nothing(tmp_path: Path) -> None:
    """Planning failed, or every planned batch failed for good: the run must fail (its
    Asset, which starts the digest, must not move); failed pages are retried first."""
    db_url = f"sqlite:///{tmp_path / 'finish.db'}"
    settings = make_settings(db_url)
    initialise(settings, load_feeds=False)
    from pipeline.tasks import finish_ingest

    with pytest.raises(RuntimeError, match="planning the poll batches failed"):
        finish_ingest([], planned=None, settings=settings)
    with pytest.raises(RuntimeError, match="every one of the 2 poll batches failed"):
        finish_ingest([None, None], planned=[[1], [2]], settings=settings)
    # Nothing due (no batch planned), or some batches polled: the run succeeds.
    assert finish_ingest([], planned=[], settings=settings)["retried"] == 0
    assert finish_ingest([None, {"new": 3}], planned=[[1], [2]], settings=settings)["new"] == 3


def test_the_finish_task_fails_a_run_in_which_every_feed_polled_failed(tmp_path: Path) -> None:
    """As `summitwatch run --once` exits with 1: every feed polled failed (or was gone);
    a feed the batch's earlier try polled counts with how that poll ended."""
    settings = make_settings(f"sqlite:///{tmp_path / 'finish.db'}")
    initialise(settings, load_feeds=False)
    from pipeline.tasks import finish_ingest

    batches = [[1, 2], [3]]
    with pytest.raises(RuntimeError, match="every one of the 3 feeds polled failed"):
        finish_ingest([{"feeds_error": 2}, {"feeds_gone": 1}], planned=batches, settings=settings)
    earlier = {"feeds_polled_earlier": 1, "feeds_failed_earlier": 1}
    with pytest.raises(RuntimeError, match="every one of the 3 feeds polled failed"):
        finish_ingest([{"feeds_error": 2}, earlier], planned=batches, settings=settings)
    some = [{"feeds_error": 2}, {"feeds_not_modified": 1}]
    assert finish_ingest(some, planned=batches, settings=settings)["feeds_error"] == 2
    earlier_fine = [{"feeds_error": 2}, {"feeds_polled_earlier": 1, "feeds_failed_earlier": 0}]
    assert finish_ingest(earlier_fine, planned=batches, settings=settings)["feeds_error"] == 2


def test_the_finish_task_retries_no_page_into_a_database_init_has_not_brought_up_to_date(
    tmp_path: Path,
) -> None:
    """The finish task runs after a planning task that refused a stale database (it runs
    whatever its upstream did): the failed pages it retries would be stored as new
    coverage like a poll's items, so it refuses the database too, and retries none."""
    from pipeline.db.schema import FetchFailure
    from pipeline.tasks import finish_ingest

    settings = make_settings(f"sqlite:///{tmp_path / 'finish.db'}")
    initialise(settings, load_feeds=False)  # (the seed corpus: the database holds articles)
    engine = make_engine(settings.db_url)
    page = "http://127.0.0.1:9/a-page-that-failed"  # (nothing listens there)

    def attempts() -> int:
        with session_factory(engine)() as session:
            failure = session.scalar(select(FetchFailure).where(FetchFailure.target == page))
            assert failure is not None
            return failure.attempts

    with session_factory(engine)() as session:
        feed, _ = repo.upsert_feed(session, "http://127.0.0.1:9/feed")
        repo.record_failure(
            session,
            stage="page",
            target=page,
            error="timed out",
            permanent=False,
            retry_after=timedelta(minutes=1),
            feed_id=feed.id,
            item={"url": page, "title": "A page"},
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
        session.execute(
            update(PipelineState).where(PipelineState.key == "content_hash_scheme").values(value="1")
        )
        session.commit()
    try:
        with pytest.raises(DatabaseError, match=r"text hashes .*run `summitwatch init` first"):
            finish_ingest([], planned=None, settings=settings)
        assert attempts() == 1, "not retried"
        initialise(settings, load_feeds=False)
        assert finish_ingest([], planned=[], settings=settings)["retried"] == 1
        assert attempts() == 2
    finally:
        engine.dispose()


def test_the_message_names_what_is_out_of_date_and_what_it_would_do(tmp_path: Path) -> None:
    """One sentence that names what is out of date; other near-duplicate settings are
    named as a cause only when the signatures are among it. An old search index alone
    stops nothing: it finds no copies, and init rebuilds all of it."""
    from pipeline.bootstrap import require_current_derived_data
    from pipeline.db.schema import ArticleSignature

    settings = make_settings(f"sqlite:///{tmp_path / 'stale.db'}")
    initialise(settings, load_feeds=False)  # (the seed corpus: the database holds articles)
    engine = make_engine(settings.db_url)
    try:
        with session_factory(engine)() as session:
            stale = update(PipelineState).values(value="0")
            session.execute(stale.where(PipelineState.key == "search_scheme"))
            require_current_derived_data(session, settings.neardup_params())
            session.execute(
                stale.where(PipelineState.key.in_(["canonical_url_scheme", "content_hash_scheme"]))
            )
            with pytest.raises(DatabaseError) as forms:
                require_current_derived_data(session, settings.neardup_params())
            session.execute(update(ArticleSignature).values(scheme="mh0-older"))
            with pytest.raises(DatabaseError) as signatures:
                require_current_derived_data(session, settings.neardup_params())
    finally:
        engine.dispose()
    assert str(forms.value).startswith(
        "out of date in the database: canonical URLs and text hashes (made by an earlier version of "
        "summitwatch), so copies would not be found and would be counted again: "
        "run `summitwatch init` first"
    )
    assert str(signatures.value).startswith(
        "out of date in the database: canonical URLs, text hashes and near-duplicate signatures (made "
        "by an earlier version of summitwatch or other near-duplicate settings), so copies would not "
    )

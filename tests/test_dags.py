"""The Airflow DAGs: parsed by a real DagBag, run end to end with dag.test()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

import pipeline.tasks
from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, Sighting
from pipeline.fixture_site import FixtureServer
from tests.conftest import REPO_ROOT, make_settings
from tests.faults import FailsOnceAfterWork, InterruptedOnce

DAGS = REPO_ROOT / "dags"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def airflow_env(airflow_home: Path) -> Iterator[dict[str, str]]:
    """Point Airflow at a migrated metadata database and this repo's DAG folder."""
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "SUMMITWATCH_AIRFLOW__RETRY_DELAY_SECONDS": "0",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    marker = airflow_home / ".summitwatch-migrated"
    if not marker.exists():
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
        marker.write_text("ok")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class DagDatabase:
    """The summitwatch database a DAG's tasks use: initialised, and named in the environment."""

    url: str
    engine: Engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dag_db(
    request: pytest.FixtureRequest,
    airflow_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DagDatabase]:
    """A fresh database, SQLite or on the test PostgreSQL server, for one DAG run."""
    url = (
        f"sqlite:///{tmp_path / 'dag.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    monkeypatch.setenv("SUMMITWATCH_DB_URL", url)
    initialise(make_settings(url), load_feeds=False)
    engine = make_engine(url)
    yield DagDatabase(url, engine)
    engine.dispose()


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def test_dag_files_import_cleanly(airflow_env: dict[str, str]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert {"summitwatch_ingest", "summitwatch_digest"} <= set(bag.dag_ids)
    ingest = bag.get_dag("summitwatch_ingest")
    assert ingest.catchup is False
    assert ingest.max_active_runs == 1
    assert {t.task_id for t in ingest.tasks} == {"plan_batches", "poll_batch", "finish"}
    finish = ingest.get_task("finish")
    assert [outlet.name for outlet in finish.outlets] == ["summitwatch_coverage"]
    digest = bag.get_dag("summitwatch_digest")
    assert digest.catchup is False
    assert {t.task_id for t in digest.tasks} == {"detect_and_queue", "deliver"}
    assert "summitwatch_coverage" in repr(digest.timetable.asset_condition)


def test_ingest_dag_runs_end_to_end_and_survives_a_retry(
    dag_db: DagDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    engine = dag_db.engine
    # dag.test() runs each task in this process, so the task body it imports is the wrapper.
    injected = FailsOnceAfterWork(pipeline.tasks.poll_feed_batch)
    monkeypatch.setattr(pipeline.tasks, "poll_feed_batch", injected)
    with FixtureServer() as site, session_factory(engine)() as session:
        feed_ids = [
            repo.upsert_feed(session, site.url(f.path), name=f.name, lang=f.lang)[0].id
            for f in site.site.feeds
        ]
        session.commit()
        dag = load_dag("summitwatch_ingest")
        run = dag.test(run_conf={"feed_ids": feed_ids})
        assert str(run.state) in {"success", "DagRunState.SUCCESS"}
        assert injected.failures == 1, "the first attempt committed its work, then failed"
        assert injected.calls == 2, "and the task was retried"
        stored = session.scalar(select(func.count()).select_from(Article).where(Article.is_seed.is_(False)))
        sightings = session.scalar(select(func.count()).select_from(Sighting))
        # 21 pages on the site; the retry repeated the whole batch and stored nothing twice.
        assert stored == 21
        assert sightings == 5 + 22
    # The finish task read the batches' results without asking for one past the last (its
    # log is captured: the line of the result it pushed is there).
    lines = "".join(capfd.readouterr()).splitlines()
    assert any("Pushing xcom" in line and "task_id='finish'" in line for line in lines)
    assert not [line for line in lines if "XCom not found" in line]


def test_a_poll_task_stopped_partway_through_a_feed_is_retried_for_that_feed(
    dag_db: DagDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The poll task stops (its timeout) while storing the second feed's items, after
    the first was polled whole: the retry must poll the second feed and the rest again,
    and not count it as polled by the earlier try (its remaining items were lost)."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    import pipeline.ingest

    engine = dag_db.engine
    monkeypatch.setenv("SUMMITWATCH_POLL__ITEMS_PER_COMMIT", "1")  # the feed's first item is committed
    feeds_seen: list[int | None] = []

    def second_item_of_the_second_feed(*args: Any, feed_id: int | None = None, **kwargs: Any) -> bool:
        feeds_seen.append(feed_id)
        return len(set(feeds_seen)) == 2 and feeds_seen.count(feed_id) == 2

    injected = InterruptedOnce(
        pipeline.ingest.store_candidate,
        second_item_of_the_second_feed,
        lambda: AirflowTaskTimeout("injected: the task timed out partway through a feed"),
    )
    monkeypatch.setattr(pipeline.ingest, "store_candidate", injected)
    with FixtureServer() as site, session_factory(engine)() as session:
        feed_ids = [
            repo.upsert_feed(session, site.url(f.path), name=f.name, lang=f.lang)[0].id
            for f in site.site.feeds
        ]
        session.commit()
        run = load_dag("summitwatch_ingest").test(run_conf={"feed_ids": feed_ids})
        assert str(run.state) in {"success", "DagRunState.SUCCESS"}
        assert injected.interrupted, "the first try stopped partway through the second feed"
        stored = session.scalar(select(func.count()).select_from(Article).where(Article.is_seed.is_(False)))
        sightings = session.scalar(select(func.count()).select_from(Sighting))
        assert stored == 21, "every page of every feed is stored, the interrupted feed's too"
        assert sightings == 5 + 22


def test_an_ingest_run_in_which_every_feed_failed_fails(
    dag_db: DagDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every feed unreachable: the run succeeded, and its Asset started the digest, as if
    news had been polled (`summitwatch run --once` exits with 1 for the same cycle)."""
    engine = dag_db.engine
    with session_factory(engine)() as session:
        feed_ids = [
            repo.upsert_feed(session, f"http://127.0.0.1:9/feed{n}.xml", name=f"down {n}")[0].id
            for n in range(2)
        ]
        session.commit()
    run = load_dag("summitwatch_ingest").test(run_conf={"feed_ids": feed_ids})
    assert str(run.state) in {"failed", "DagRunState.FAILED"}
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["poll_batch"] in {"success", "TaskInstanceState.SUCCESS"}, "the failures were recorded"
    assert states["finish"] in {"failed", "TaskInstanceState.FAILED"}


def test_digest_dag_delivers_exactly_once_despite_a_retry(
    dag_db: DagDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime, timedelta

    from pipeline.db.repo import extend_history
    from pipeline.db.schema import DigestOutbox
    from pipeline.ingest import import_lines
    from tests.slack_server import FakeSlack
    from tests.test_reporting import pos2_articles

    db_url, engine = dag_db.url, dag_db.engine
    injected = FailsOnceAfterWork(pipeline.tasks.deliver_digests)
    monkeypatch.setattr(pipeline.tasks, "deliver_digests", injected)
    settings = make_settings(db_url)
    now = datetime.now(UTC)
    with FakeSlack() as slack, session_factory(engine)() as session:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        monkeypatch.setenv("SLACK_CHANNEL", "C0DIGEST")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        extend_history(session, now - timedelta(days=30))
        lines = [
            json.dumps(
                {
                    "url": f"https://n.example/{a['id']}",
                    "title": a["title"],
                    "text": a["text"],
                    "published": (now - timedelta(hours=3 + i)).isoformat(),
                }
            )
            for i, a in enumerate(pos2_articles())
        ]
        assert all(
            r.result.status == "new" for r in import_lines(session, settings, lines, source="t", now=now)
        )
        run = load_dag("summitwatch_digest").test()
        assert str(run.state) in {"success", "DagRunState.SUCCESS"}
        assert injected.failures == 1 and injected.calls == 2, "the deliver task failed once and was retried"
        session.expire_all()
        rows = session.scalars(select(DigestOutbox)).all()
        assert rows and {r.status for r in rows} == {"sent"}
        parents = [m for m in slack.posted_to("C0DIGEST") if m.thread_ts is None]
        assert len(parents) == len(rows), "each digest posted exactly once"


def test_a_slack_connection_without_token_or_webhook_stops_delivery(
    dag_db: DagDatabase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bot token put in the connection's login instead of its password: the digests
    were written to a file on the worker and marked sent, and the run succeeded."""
    from pipeline.db.schema import DigestOutbox
    from tests.slack_server import FakeSlack

    db_url, engine = dag_db.url, dag_db.engine
    monkeypatch.setenv("SUMMITWATCH_DIGEST_DIR", str(tmp_path / "files"))
    for variable in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_WEBHOOK_URL", "SLACK_API_URL"):
        monkeypatch.delenv(variable, raising=False)
    settings = make_settings(db_url)
    with FakeSlack() as slack, session_factory(engine)() as session:
        connection = {"conn_type": "slack", "login": slack.token, "host": slack.api_url}
        monkeypatch.setenv(
            "AIRFLOW_CONN_SUMMITWATCH_SLACK", json.dumps({**connection, "extra": {"channel": "C0DIGEST"}})
        )
        _coverage_change(session, settings)
        run = load_dag("summitwatch_digest").test()
        assert str(run.state) in {"failed", "DagRunState.FAILED"}
        session.expire_all()
        assert not [row for row in session.scalars(select(DigestOutbox)) if row.status == "sent"]
        assert not slack.messages
    assert not (tmp_path / "files").exists(), "no digest went to a file instead"


def _coverage_change(session: Any, settings: Any) -> None:
    """A month of history, then the articles of a coverage change: a digest to send."""
    from datetime import UTC, datetime, timedelta

    from pipeline.db.repo import extend_history
    from pipeline.ingest import import_lines
    from tests.test_reporting import pos2_articles

    now = datetime.now(UTC)
    extend_history(session, now - timedelta(days=30))
    lines = [
        json.dumps(
            {
                "url": f"https://n.example/{a['id']}",
                "title": a["title"],
                "text": a["text"],
                "published": (now - timedelta(hours=3 + i)).isoformat(),
            }
        )
        for i, a in enumerate(pos2_articles())
    ]
    assert all(r.result.status == "new" for r in import_lines(session, settings, lines, source="t", now=now))


def test_a_digest_deferred_by_slack_past_the_retries_does_not_fail_the_run(
    dag_db: DagDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slack answers 429 with a Retry-After longer than the task's retries: every retry
    found the digests waiting for it and failed, and so did the run, though nothing was
    wrong and nothing lost (the outbox keeps them for the next run after that moment)."""
    from datetime import UTC, datetime, timedelta

    from pipeline.db.schema import DigestOutbox
    from tests.slack_server import FakeSlack

    db_url, engine = dag_db.url, dag_db.engine
    monkeypatch.delenv("AIRFLOW_CONN_SUMMITWATCH_SLACK", raising=False)
    settings = make_settings(db_url)
    with FakeSlack() as slack, session_factory(engine)() as session:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        monkeypatch.setenv("SLACK_CHANNEL", "C0DIGEST")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        _coverage_change(session, settings)
        slack.fail_next(4, 429, retry_after=1800, method="chat.postMessage")
        started = datetime.now(UTC)
        run = load_dag("summitwatch_digest").test()
        assert str(run.state) in {"success", "DagRunState.SUCCESS"}
        session.expire_all()
        rows = session.scalars(select(DigestOutbox).order_by(DigestOutbox.id)).all()
        assert rows and {r.status for r in rows} == {"pending"}, "kept in the outbox, not dropped"
        first = rows[0].not_before
        assert first is not None
        assert first.replace(tzinfo=first.tzinfo or UTC) >= started + timedelta(minutes=29)
        assert not slack.posted_to("C0DIGEST")


def _send_digest_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("send_digest_under_test", DAGS / "send_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_slack_connection_that_gives_nothing_is_not_taken_for_no_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.errors import ConfigError
    from pipeline.tasks import _with_slack

    module = _send_digest_module()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUMMITWATCH_SLACK",
        '{"conn_type": "slack", "login": "xoxb-1", "extra": {"channel": "C1"}}',
    )
    assert module._slack_connection() == {"channel": "C1"}
    monkeypatch.setenv("AIRFLOW_CONN_SUMMITWATCH_SLACK", '{"conn_type": "slack", "login": "xoxb-1"}')
    assert module._slack_connection() == {}
    settings = make_settings("sqlite://")
    with pytest.raises(ConfigError, match="summitwatch_slack is set but gives no Slack bot token"):
        _with_slack(settings, {})
    with pytest.raises(ConfigError, match="login is not read"):
        _with_slack(settings, {"channel": "C1"})
    # The environment's token or webhook completes a connection that names the channel.
    with_env = make_settings("sqlite://", slack={"bot_token": "xoxb-2"})
    assert _with_slack(with_env, {"channel": "C1"}).slack.channel == "C1"
    assert _with_slack(settings, None) is settings  # no connection: the environment's settings


def test_a_slack_connection_that_cannot_be_read_stops_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow reports a connection it cannot parse as undefined; taking that for "no
    connection" wrote the digests to a file on the worker and marked them delivered."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("send_digest_under_test", DAGS / "send_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("AIRFLOW_CONN_SUMMITWATCH_SLACK", raising=False)
    assert module._slack_connection() is None  # none defined: the environment's settings apply
    monkeypatch.setenv(
        "AIRFLOW_CONN_SUMMITWATCH_SLACK",
        '{"conn_type": "slack", "password": "xoxb-1", "extra": {"channel": "C1"}}',
    )
    assert module._slack_connection() == {"bot_token": "xoxb-1", "channel": "C1"}
    monkeypatch.setenv("AIRFLOW_CONN_SUMMITWATCH_SLACK", '{"conn_type": "slack", "password": "xoxb-1",}')
    with pytest.raises(RuntimeError, match="cannot be read"):
        module._slack_connection()


def test_a_slack_connection_names_its_api_url_as_json_or_as_a_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Written as a URI, Airflow splits the API URL into scheme, host, port and path; the
    digests went to the bare host name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("send_digest_under_test", DAGS / "send_digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases = {
        "http://:xoxb-12345@127.0.0.1:8080/api/?channel=C1": "http://127.0.0.1:8080/api/",
        "https://:xoxb-12345@slack.example.gov/api?channel=C1": "https://slack.example.gov/api/",
        "slack://:xoxb-12345@https%3A%2F%2Fslack.example%2Fapi%2F?channel=C1": "https://slack.example/api/",
        '{"conn_type": "slack", "password": "xoxb-12345", "host": "http://127.0.0.1:9/api/"}': (
            "http://127.0.0.1:9/api/"
        ),
    }
    for written, api_url in cases.items():
        monkeypatch.setenv("AIRFLOW_CONN_SUMMITWATCH_SLACK", written)
        connection = module._slack_connection()
        assert connection is not None and connection["api_url"] == api_url, written
        assert connection["bot_token"] == "xoxb-12345"

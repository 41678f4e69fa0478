"""``summitwatch demo``: the real Airflow pipeline, offline, on the bundled fixture site.

The demo serves ``pipeline/data/demo_site`` on 127.0.0.1, registers its feeds, and runs
the project's DAGs with Airflow's own ``airflow dags test`` (a complete DAG run in one
process, on a local Airflow metadata database), so what a new user sees is the pipeline
that runs in production, not a parallel code path. Airflow runs in a subprocess: the
``pipeline`` package never imports Airflow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import make_engine, safe_db_url, session_factory
from pipeline.db.schema import Article, DigestOutbox
from pipeline.errors import SummitwatchError
from pipeline.fixture_site import FixtureServer, FixtureSite
from pipeline.settings import Settings

DEMO_OUTLET_PREFIX = "demo: "

_TASK_DONE = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")


def dags_folder() -> Path:
    """The project's ``dags/`` folder, beside the package."""
    folder = Path(__file__).resolve().parent.parent / "dags"
    if not folder.is_dir():
        raise SummitwatchError(f"the DAG folder {folder} is missing")
    return folder


def run_demo(
    settings: Settings,
    *,
    port: int = 8765,
    out: Callable[[str], None] = print,
    today: date | None = None,
    result: Callable[[str], None] | None = None,
) -> int:
    """Serve the fixture site, run the DAGs against it, and report what was stored.

    The site's dates follow ``today`` (default: the current UTC date), so its newest
    article is about a day old and the coverage page's window holds what the digest
    reports. Progress goes to ``out``; the report and the digests this run produced, the
    demo's result, to ``result`` (``out`` unless given: the command prints them on
    standard output).
    """
    result = result or out
    settings = settings.model_copy(update={"allow_private_networks": True})
    report = initialise(settings, load_feeds=False)
    out(
        f"database {safe_db_url(settings.db_url)}: "
        f"schema {report.revision_after}, {report.seeds_added + report.seeds_present} seed documents"
    )
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or ".airflow-demo").resolve()
    environment = _airflow_environment(settings, airflow_home)
    environment["SUMMITWATCH_DIGEST_DIR"] = str(Path(settings.digest_dir).resolve())
    _prepare_airflow(environment, airflow_home, out)
    engine = make_engine(settings.db_url)
    try:
        with (
            FixtureServer(FixtureSite(today=today), port=port) as server,
            session_factory(engine)() as session,
        ):
            out(
                f"fixture site on http://{server.base}/ with {len(server.site.feeds)} feeds, "
                f"dated as of {server.site.today:%Y-%m-%d}"
            )
            feed_ids = []
            _follow_the_site(session, server)
            for feed in server.site.feeds:
                row, _ = repo.upsert_feed(
                    session,
                    server.url(feed.path),
                    name=feed.name,
                    outlet=DEMO_OUTLET_PREFIX + feed.outlet,
                    lang=feed.lang,
                    reason="bundled offline demo feed",
                )
                feed_ids.append(row.id)
            session.commit()
            before = _totals(session)
            last_digest = session.scalar(select(func.max(DigestOutbox.id))) or 0
            try:
                _run_dag("summitwatch_ingest", {"feed_ids": feed_ids}, environment, airflow_home, out)
            finally:
                # The site is gone once the demo ends (or fails): its feeds are polled by the
                # demo only, not by a `run` or the ingest DAG on this database (each would fail).
                session.rollback()
                for row in repo.list_feeds(session):
                    if row.id in feed_ids:
                        row.enabled = False
                session.commit()
            session.expire_all()
            _backfill_history(session, feed_ids)
            _run_dag("summitwatch_digest", {}, environment, airflow_home, out)
            session.expire_all()
            after = _totals(session)
            not_modified = sum(
                1 for feed in repo.list_feeds(session) if feed.id in feed_ids and feed.last_status == 304
            )
            result(
                f"this run: {after[0] - before[0]} new, {after[1] - before[1]} duplicate, "
                f"{after[2] - before[2]} failed items; {not_modified} feeds not modified"
            )
            _report(session, result)
            _report_digests(session, settings, result, after_id=last_digest)
            result("")
            result("browse: summitwatch articles --watch power_of_siberia_2   |   summitwatch coverage")
            result("        summitwatch serve   (web UI on http://127.0.0.1:8000; the changes on /coverage)")
    finally:
        engine.dispose()
    return 0


def _follow_the_site(session: Session, server: FixtureServer) -> None:
    """Point the feeds of an earlier demo run at the site's address now.

    The site takes another port when the usual one is busy: without this, every such run
    would add the six feeds again under new URLs.
    """
    wanted = {(DEMO_OUTLET_PREFIX + feed.outlet, feed.path.lstrip("/")): feed for feed in server.site.feeds}
    rows = repo.list_feeds(session)
    known = {row.url for row in rows}
    for row in rows:
        parts = urlsplit(row.url)
        feed = wanted.get((row.outlet or "", parts.path.lstrip("/")))
        if feed is None or parts.hostname != "127.0.0.1":
            continue
        url = server.url(feed.path)
        if row.url != url and url not in known:
            known.discard(row.url)
            row.url = url
            known.add(url)
    session.flush()


def _airflow_environment(settings: Settings, airflow_home: Path) -> dict[str, str]:
    url = make_url(settings.db_url)
    if url.drivername.startswith("sqlite") and url.database and not os.path.isabs(url.database):
        # The DAG tasks must open the same file whatever their working directory.
        url = url.set(database=str(Path(url.database).resolve()))
    # The demo's digests go to files, never to Slack: a Slack destination exported for the
    # real installation would otherwise receive fixture digests with 127.0.0.1 links.
    inherited = {name: value for name, value in os.environ.items() if not _is_slack_variable(name)}
    return {
        **inherited,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "SUMMITWATCH_DB_URL": url.render_as_string(hide_password=False),
        "SUMMITWATCH_CONFIG_DIR": str(settings.config_dir.resolve()),
        "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
    }


def _is_slack_variable(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(("SLACK_", "SUMMITWATCH_SLACK__")) or upper == "AIRFLOW_CONN_SUMMITWATCH_SLACK"


def _airflow_command() -> str:
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else "airflow"


def _prepare_airflow(environment: dict[str, str], airflow_home: Path, out: Callable[[str], None]) -> None:
    airflow_home.mkdir(parents=True, exist_ok=True)
    marker = airflow_home / ".summitwatch-migrated"
    if marker.exists():
        return
    out(f"preparing the Airflow metadata database in {airflow_home} (first run only)...")
    done = subprocess.run(
        [_airflow_command(), "db", "migrate"], env=environment, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SummitwatchError(f"airflow db migrate failed:\n{_tail(done.stdout + done.stderr)}")
    marker.write_text("ok\n")


def _run_dag(
    dag_id: str,
    conf: dict[str, object],
    environment: dict[str, str],
    airflow_home: Path,
    out: Callable[[str], None],
) -> None:
    out(f"running DAG {dag_id} with Airflow (airflow dags test)...")
    log_path = airflow_home / f"demo-{dag_id}.log"
    command = [_airflow_command(), "dags", "test", dag_id, "--conf", json.dumps(conf)]
    with (
        log_path.open("w", encoding="utf-8") as log,
        subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            match = _TASK_DONE.search(line)
            if match:
                task_id, index = match.groups()
                out(f"  task {task_id}{'' if index == '-1' else f'[{index}]'} done")
        status = process.wait()
    text = log_path.read_text(encoding="utf-8")
    if status != 0 or "state=success" not in text:
        raise SummitwatchError(f"DAG {dag_id} failed (full log: {log_path}):\n{_tail(text)}")


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _backfill_history(session: Session, feed_ids: list[int]) -> None:
    """Treat the bundled site's archive as history collected from its first article on.

    Its articles go back more than two weeks; without this the change detector would
    still be in its warm-up and the demo could show no digest.
    """
    earliest = session.scalar(select(func.min(Article.published_at)).where(Article.feed_id.in_(feed_ids)))
    if earliest is not None:
        repo.extend_history(session, earliest)
        session.commit()


def _report_digests(
    session: Session, settings: Settings, out: Callable[[str], None], *, after_id: int
) -> None:
    """List every digest, then print the change digests this run produced in full."""
    rows = session.scalars(select(DigestOutbox).order_by(DigestOutbox.id)).all()
    if not rows:
        return
    out("")
    out("digests:")
    for row in rows:
        where = f"written to {settings.digest_dir}/" if row.destination == "file" else f"to {row.destination}"
        new = "  (new)" if row.id > after_id else ""
        out(f"  {row.kind:<8} {row.status:<8} {where}  ({row.parts_total} message(s)){new}")
    for row in rows:
        if row.id > after_id and row.kind == "changes":
            out("")
            out(f"digest {row.id} ({row.kind}):")
            for line in str(row.payload.get("text") or "").splitlines():
                out(f"  | {line}" if line else "  |")


def _totals(session: Session) -> tuple[int, int, int]:
    rows = repo.counts_by_language(session)
    failures = len(repo.open_failures(session, limit=100_000))
    return sum(r[1] for r in rows), sum(r[2] for r in rows), failures


def _report(session: Session, out: Callable[[str], None]) -> None:
    out("")
    out(f"{'language':<10}{'articles':>10}{'duplicates':>12}{'seeds':>8}")
    for lang, originals, duplicates, seeds in repo.counts_by_language(session):
        out(f"{lang:<10}{originals:>10}{duplicates:>12}{seeds:>8}")
    failures = repo.open_failures(session)
    if failures:
        out("")
        out(f"{len(failures)} items recorded with errors:")
        for failure in failures:
            state = "quarantined" if failure.permanent else "will retry"
            out(f"  [{failure.stage}, {state}] {failure.error}")

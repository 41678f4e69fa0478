"""summitwatch_ingest: poll the news feeds, store new articles, update the coverage Asset.

Every 15 minutes by default (``poll.schedule`` in config/settings.yaml). The due feeds
are split into batches and polled by mapped tasks; each task calls one ``pipeline``
function and passes only ids and counts through XCom. Writes are idempotent, so retries
are safe. A manual run may pass ``{"feed_ids": [...]}`` to poll just those feeds.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, task

from pipeline.settings import load_settings

COVERAGE = Asset(name="summitwatch_coverage", uri="summitwatch://coverage")
SETTINGS = load_settings()  # reads config/settings.yaml and the environment; no network, no database

RETRIES = {
    "retries": SETTINGS.airflow.retries,
    "retry_delay": timedelta(seconds=SETTINGS.airflow.retry_delay_seconds),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=SETTINGS.airflow.max_retry_delay_minutes),
}


@dag(
    dag_id="summitwatch_ingest",
    schedule=SETTINGS.poll.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    dagrun_timeout=timedelta(hours=1),
    # (checked when a run is triggered: a list of feed ids, not "12", which read as a list
    # would be the feeds 1 and 2)
    params={"feed_ids": Param([], type="array", items={"type": "integer"}, description="feeds to poll")},
    tags=["summitwatch"],
    doc_md=__doc__,
)
def summitwatch_ingest() -> None:
    @task
    def plan_batches(params: dict | None = None) -> list[list[int]]:
        from pipeline.tasks import plan_feed_batches

        return plan_feed_batches((params or {}).get("feed_ids") or None)

    @task(
        max_active_tis_per_dagrun=SETTINGS.airflow.max_parallel_polls, execution_timeout=timedelta(minutes=30)
    )
    def poll_batch(feed_ids: list[int]) -> dict[str, int]:
        from airflow.sdk import get_current_context

        from pipeline.tasks import poll_feed_batch

        # A retry skips the feeds whose poll its earlier try finished in this run (batches
        # are disjoint); a feed it left partway through is polled again.
        run = get_current_context()["dag_run"]
        return poll_feed_batch(feed_ids, polled_since=run.start_date)

    @task(outlets=[COVERAGE], trigger_rule="all_done")
    def finish(results: list[dict[str, int]], planned: list[list[int]] | None) -> dict[str, int]:
        from pipeline.tasks import finish_ingest

        # (Fails when nothing could be polled, or every feed polled failed, so that the run
        # fails and the coverage Asset, which triggers the digest, is not updated.)
        # (By index: iterating Airflow's lazy sequence of the mapped results asks for one
        # past the end, and each run logged an "XCom not found" error for it.)
        batches = [results[index] for index in range(len(results))] if results is not None else []
        return finish_ingest(batches, planned=planned)

    batches = plan_batches()
    finish(poll_batch.expand(feed_ids=batches), batches)


summitwatch_ingest()

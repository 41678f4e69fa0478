"""summitwatch_digest: detect coverage changes and deliver the Slack digest.

Runs whenever summitwatch_ingest updates the coverage Asset, and on the summary schedule
(daily at 07:00 UTC by default, ``digest.summary`` in config/digest.yaml) so the summary
goes out even on a day without changes. Delivery goes through the digest outbox in the
database: a retried task resumes where the last one stopped and never posts a part twice.
Digests that only wait for a moment Slack asked for (a long Retry-After) fail nothing: a
warning names the moment and the first run after it delivers them.
Slack credentials come from the ``summitwatch_slack`` Airflow connection (password: bot
token; extra: {"channel": ..., "webhook_url": ...}; host: API base URL) or the
environment (SLACK_BOT_TOKEN, SLACK_CHANNEL, SLACK_WEBHOOK_URL, SLACK_API_URL).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from pipeline.coverage import load_detector_config
from pipeline.settings import SLACK_CONNECTION, load_settings

COVERAGE = Asset(name="summitwatch_coverage", uri="summitwatch://coverage")
SETTINGS = load_settings()  # reads config/settings.yaml and the environment; no network, no database
SUMMARY = load_detector_config(SETTINGS.config_dir / "digest.yaml").digest
# Five minutes after the summary period closes, so the last articles are in.
_RUN_AT = (SUMMARY.summary_at.hour * 60 + SUMMARY.summary_at.minute + 5) % (24 * 60)
_WEEKDAY = "1" if SUMMARY.summary_every >= timedelta(days=7) else "*"
SUMMARY_CRON = f"{_RUN_AT % 60} {_RUN_AT // 60} * * {_WEEKDAY}"


@dag(
    dag_id="summitwatch_digest",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SUMMARY_CRON, timezone="UTC"), assets=[COVERAGE]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": SETTINGS.airflow.retries,
        "retry_delay": timedelta(seconds=SETTINGS.airflow.retry_delay_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=SETTINGS.airflow.max_retry_delay_minutes),
    },
    tags=["summitwatch"],
    doc_md=__doc__,
)
def summitwatch_digest() -> None:
    @task
    def detect_and_queue() -> dict[str, int]:
        from pipeline.tasks import prepare_digests

        # The same Slack settings as delivery, so the outbox rows name the same destination.
        return prepare_digests(slack=_slack_connection())

    @task
    def deliver(queued: dict[str, int]) -> dict[str, int]:
        from pipeline.tasks import deliver_digests

        return deliver_digests(slack=_slack_connection())

    deliver(detect_and_queue())


def _slack_connection() -> dict[str, str] | None:
    """Slack settings from the Airflow connection, if one is defined (None if not)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(SLACK_CONNECTION)
    except AirflowNotFoundException:
        variable = f"AIRFLOW_CONN_{SLACK_CONNECTION.upper()}"
        if os.environ.get(variable, "").strip():
            # Airflow reports a connection it cannot parse as not defined.
            raise RuntimeError(
                f"the Airflow connection {SLACK_CONNECTION} is set in {variable} but cannot be "
                "read (malformed JSON or URI?): digests are not delivered until it is fixed"
            ) from None
        return None  # not defined: the environment's settings apply
    # Anything else (a connection that does not parse, a secrets backend that fails) stops
    # the task: falling back would write the digests to a file and mark them delivered.
    extra = connection.extra_dejson or {}
    values = {
        "bot_token": connection.password,
        "channel": extra.get("channel"),
        "webhook_url": extra.get("webhook_url"),
        "api_url": _api_url(connection) or extra.get("api_url"),
    }
    # (Defined but giving nothing, a token put in the login say: {}, which delivery refuses,
    # rather than None, which would let the digests fall back to files.)
    return {key: value for key, value in values.items() if value}


def _api_url(connection: object) -> str | None:
    """The API base URL a connection names in its host, whichever way it was written.

    As JSON, or in the UI, the host field holds the whole URL. Written as a URI
    (``http://:TOKEN@host:port/api/``), Airflow splits the URL into its parts (scheme
    into the type, the path into "schema"): put them back together, or the digests would
    go to a bare host name.
    """
    host = (getattr(connection, "host", None) or "").strip()
    if not host or "://" in host:
        return host or None
    conn_type = (getattr(connection, "conn_type", None) or "").lower()
    scheme = conn_type if conn_type in {"http", "https"} else "https"
    port = getattr(connection, "port", None)
    path = (getattr(connection, "schema", None) or "").strip("/")
    return f"{scheme}://{host}{f':{port}' if port else ''}/{f'{path}/' if path else ''}"


summitwatch_digest()

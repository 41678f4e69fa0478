"""The bodies of the Airflow tasks, without Airflow.

Each function is what one task does: it builds its own settings, engine, session and
HTTP client (a task is the caller that owns those lifecycles), calls the pipeline, and
returns a small JSON-serialisable result (ids and counts) for XCom. Every write is
idempotent, so a retried task repeats no work that was committed and duplicates nothing.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from pipeline import encoder
from pipeline.collector import batch_collection
from pipeline.db import repo
from pipeline.db.engine import open_session
from pipeline.db.schema import utcnow
from pipeline.errors import ConfigError
from pipeline.http import HttpClient
from pipeline.ingest import FeedOutcome, flatten_copy_chains, retry_failed_pages, run_cycle
from pipeline.settings import SLACK_CONNECTION, Settings, SlackSettings, load_settings

if TYPE_CHECKING:
    from pipeline.slack import SlackTarget

log = logging.getLogger(__name__)

# Airflow's default max_map_length is 1024; staying far below it leaves room for growth
# and keeps the grid readable. Batches grow instead of the mapped count.
MAX_MAPPED_BATCHES = 64


def task_session(settings: Settings, *, durable: bool = False) -> AbstractContextManager[Session]:
    """A session on the configured database, which must be at the current schema
    (``durable``: every commit waits for the disk, for the digest outbox)."""
    return open_session(settings.db_url, durable=durable)


def plan_feed_batches(
    feed_ids: Sequence[int] | None = None, *, batch_size: int | None = None, settings: Settings | None = None
) -> list[list[int]]:
    """Split the due feeds (or ``feed_ids``) into batches for dynamic task mapping.

    Feeds are ordered by host before they are cut into batches, so the feeds of one
    outlet land in the same task and are polled one after another, not in parallel by
    several workers (politeness towards each host).

    A healthy feed is due when its next poll time falls before the planning moment plus a
    fifth of ``poll.interval_minutes`` (a failing one, only once its backoff is over): a
    run polls its feeds a little after planning them (the tasks start later), so with the
    schedule at the interval each feed's next poll time
    falls a little after the next run's planning moment, and without that slack it
    would wait for the run after: polled every second run.
    """
    settings = settings or load_settings()
    size = batch_size or settings.poll.batch_size
    wanted_ids = _feed_id_list(feed_ids) if feed_ids else None
    with task_session(settings) as session:
        _require_current_derived_data(session, settings)
        slack = timedelta(minutes=settings.poll.interval_minutes) / 5
        wanted = wanted_ids if wanted_ids else repo.due_feed_ids(session, utcnow(), slack=slack)
        urls = repo.feed_urls(session, wanted)
    unknown = [feed_id for feed_id in wanted_ids or () if feed_id not in urls]
    if unknown:
        raise ConfigError(f"feed_ids: no feed with id {', '.join(map(str, unknown[:20]))}")
    ids = sorted(wanted, key=lambda feed_id: (_host(urls.get(feed_id, "")), feed_id))
    if not ids:
        return []
    batches = min(MAX_MAPPED_BATCHES, math.ceil(len(ids) / size))
    per_batch = math.ceil(len(ids) / batches)
    return [ids[start : start + per_batch] for start in range(0, len(ids), per_batch)]


def _require_current_derived_data(session: Session, settings: Settings) -> None:
    """Stop a poll before it stores copies again into a database ``init`` has not brought
    up to date (see :func:`pipeline.bootstrap.require_current_derived_data`)."""
    from pipeline.bootstrap import require_current_derived_data

    require_current_derived_data(session, settings.neardup_params())


def _feed_id_list(feed_ids: Any) -> list[int]:
    """A manual run's ``feed_ids`` as given in its conf: a list of feed ids (integers),
    each kept once. Anything else is refused, never read another way (a string "12" taken
    character by character would poll feeds 1 and 2)."""
    if not isinstance(feed_ids, (list, tuple)) or not all(
        isinstance(feed_id, int) and not isinstance(feed_id, bool) for feed_id in feed_ids
    ):
        raise ConfigError(f"feed_ids: expected a list of feed ids (integers), not {feed_ids!r:.100}")
    return list(dict.fromkeys(feed_ids))


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    # news.example.com and www.example.com are one outlet's servers more often than not.
    return ".".join(host.split(".")[-2:])


def _task_workers(settings: Settings) -> Settings:
    """``settings`` with ``poll.workers: auto`` resolved for a task: polls run side by side
    as tasks, so each takes one worker (:func:`pipeline.cpus.auto_workers`)."""
    if settings.poll.workers != "auto":
        return settings
    poll = settings.poll.model_copy(update={"workers": settings.poll.worker_count(in_task=True)})
    return settings.model_copy(update={"poll": poll})


def poll_feed_batch(
    feed_ids: Sequence[int], *, settings: Settings | None = None, polled_since: datetime | None = None
) -> dict[str, int]:
    """Poll each feed of one batch and ingest its new items; returns counts.

    ``polled_since``: the start of the DAG run. A feed of the batch whose poll finished
    since then (its items all handled, or its failure recorded) was polled by an earlier
    try of this task (which died before Airflow heard): it is not polled again, so that a
    failing feed's failure is not counted twice. A feed whose poll that try began but did
    not finish (stopped partway through its items) is polled again, for the items it left.

    The collector runs as in the ``summitwatch`` command (:mod:`pipeline.collector`) while
    the batch is polled; the task process's own setting is restored afterwards.
    """
    settings = _task_workers(settings or load_settings())
    encoder.preload(settings.encoder)  # on the second core, while the session and feeds start
    try:
        with (
            batch_collection(),
            task_session(settings) as session,
            HttpClient(settings.http, allow_private_networks=settings.allow_private_networks) as client,
        ):
            _require_current_derived_data(session, settings)
            ids = list(feed_ids)
            earlier: Counter[str] = Counter()
            if polled_since is not None:
                ids = repo.not_polled_since(session, ids, polled_since)
                remaining = set(ids)
                skipped = [feed_id for feed_id in feed_ids if feed_id not in remaining]
                if skipped:
                    # What the earlier try stored counts in the run's totals too, and so do
                    # the feeds whose poll it recorded as failed (:func:`finish_ingest`).
                    earlier = repo.stored_since(session, skipped, polled_since)
                    earlier["feeds_polled_earlier"] = len(skipped)
                    earlier["feeds_failed_earlier"] = repo.failing_feed_count(session, skipped)
            # Failed pages are retried once per cycle, by the finish task, not by every batch.
            summary = run_cycle(session, client, settings, feed_ids=ids, retry_pages=False)
    finally:
        # Airflow ends a task's process without waiting for its threads: a load cut short
        # would leave a half-written cache folder behind.
        encoder.finish_preload()
    counts = summary.counts() + earlier
    return {key: int(value) for key, value in counts.items()}


def finish_ingest(
    batch_results: Sequence[dict[str, int] | None],
    *,
    planned: Sequence[Sequence[int]] | None = (),
    settings: Settings | None = None,
) -> dict[str, int]:
    """Retry failed pages that are due and total the cycle; the DAG then updates its Asset.

    ``planned``: the batches the run planned (None when planning failed). When planning
    failed, batches were planned and every one failed for good, or feeds were polled and
    every one failed (as ``summitwatch run --once`` exits with 1), this raises after the
    page retries: the run must fail, and its Asset (which starts the digest) not move. A
    run with nothing due succeeds.
    """
    settings = _task_workers(settings or load_settings())
    with (
        task_session(settings) as session,
        HttpClient(settings.http, allow_private_networks=settings.allow_private_networks) as client,
    ):
        # (Pages retried are stored like a poll's items: not into a database whose stored
        # forms init has not brought up to date. It runs after a planning that stopped so.)
        _require_current_derived_data(session, settings)
        retried = retry_failed_pages(session, client, settings)
        flatten_copy_chains(session)  # batches run in parallel: a fold in one can race a copy in another
    totals: dict[str, int] = {}
    for result in batch_results:
        if not result:
            continue  # a batch that failed for good has no XCom; its errors are recorded
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + int(value)
    totals["retried"] = len(retried)
    totals["retried_new"] = sum(1 for item in retried if item.status == "new")
    if planned is None:
        raise RuntimeError("planning the poll batches failed: nothing was polled")
    polled = sum(1 for result in batch_results if isinstance(result, dict))
    if planned and not polled:
        raise RuntimeError(f"every one of the {len(planned)} poll batches failed: see their logs")
    feeds = sum(totals.get(f"feeds_{outcome}", 0) for outcome in FEED_OUTCOMES) + totals.get(
        "feeds_polled_earlier", 0
    )
    failed = (
        totals.get("feeds_error", 0) + totals.get("feeds_gone", 0) + totals.get("feeds_failed_earlier", 0)
    )
    if feeds and failed >= feeds:
        raise RuntimeError(
            f"every one of the {feeds} feeds polled failed: see the poll tasks' logs and "
            "`summitwatch feeds list`"
        )
    return totals


# How a feed's poll ends (``feeds_<outcome>`` in a poll task's counts).
FEED_OUTCOMES: tuple[str, ...] = get_args(FeedOutcome)


def _with_slack(settings: Settings, slack: dict[str, str] | None) -> Settings:
    """``settings`` with the Slack values of an Airflow connection, validated like the rest.

    ``slack`` is None when no connection is defined (the environment's settings apply); a
    connection defined is meant to deliver to Slack, so one that gives neither a bot token
    nor a webhook (with what the environment adds) is a configuration error, never a
    fallback to files that would mark the digests delivered.
    """
    if slack is None:
        return settings
    merged = {**settings.slack.model_dump(mode="json"), **slack}
    for secret in ("bot_token", "webhook_url"):
        value = getattr(settings.slack, secret)
        if secret not in slack and value is not None:
            merged[secret] = value.get_secret_value()
    validated = SlackSettings.model_validate(merged)
    if validated.bot_token is None and validated.webhook_url is None:
        raise ConfigError(
            f"the Airflow connection {SLACK_CONNECTION} is set but gives no Slack bot token (its "
            "password; a token in its login is not read) and no incoming webhook (extra.webhook_url), "
            "nor does the environment: no digest is delivered until it is fixed"
        )
    return settings.model_copy(update={"slack": validated})


# The fields of the Airflow connection each Slack setting is read from (dags/send_digest.py).
CONNECTION_FIELDS = {
    "bot_token": "password",
    "channel": "extra.channel",
    "webhook_url": "extra.webhook_url",
    "api_url": "host or extra.api_url",
}


def _slack_names(settings: Settings, slack: dict[str, str] | None) -> dict[str, str]:
    """How errors name the Slack settings: a value the Airflow connection gave (or one
    neither it nor the environment gave, while it is defined) by the connection's field,
    the rest by their environment variables (``settings``: before the connection's values)."""
    if slack is None:
        return {}
    from pipeline.slack import setting_source  # (its callers load the Slack client next)

    names = {}
    for key, field in CONNECTION_FIELDS.items():
        where = f"{field} of the Airflow connection {SLACK_CONNECTION}"
        if key in slack:
            names[key] = where
        elif getattr(settings.slack, key) is None:
            names[key] = f"{where} (or {setting_source(key)})"
    return names


def _digest_target(
    settings: Settings | None, slack: dict[str, str] | None
) -> tuple[Settings, SlackTarget | None, str]:
    """The settings with the Airflow connection's Slack values, where the digests go and the
    outbox's name for it: the same for the task that queues digests and the one that
    delivers them, since the outbox is keyed by destination."""
    from pipeline.reporting import destination_name
    from pipeline.slack import slack_target  # (the digest tasks load the Slack client next)

    settings = settings or load_settings()
    names = _slack_names(settings, slack)
    settings = _with_slack(settings, slack)
    target = slack_target(settings.slack, names=names)
    return settings, target, destination_name(target)


def prepare_digests(
    *, slack: dict[str, str] | None = None, settings: Settings | None = None
) -> dict[str, int]:
    """Detect coverage changes and queue the digests they call for (idempotent).

    ``slack`` overrides the Slack settings as in :func:`deliver_digests`; both tasks must
    see the same ones, since the outbox is keyed by destination.
    """
    from pipeline.reporting import prepare_digests as queue_digests

    settings, _target, destination = _digest_target(settings, slack)
    with task_session(settings, durable=True) as session:
        digests = queue_digests(session, settings, destination)
    return {"digests_queued": len(digests)}


def deliver_digests(
    *, slack: dict[str, str] | None = None, settings: Settings | None = None
) -> dict[str, int]:
    """Deliver every pending digest through the outbox; raises if some must be retried.

    Digests that only wait for a moment Slack asked for (``not_before``: a Retry-After
    longer than the client waits) are no failure: a warning names the moment, and they
    stay pending for the first run after it.

    ``slack`` overrides the Slack settings (from an Airflow connection): ``bot_token``,
    ``channel``, ``webhook_url``, ``api_url``.
    """
    from pipeline.reporting import DeliveryFailed, deliver_pending

    settings, target, destination = _digest_target(settings, slack)
    with task_session(settings, durable=True) as session:
        # Without Slack, a digest goes to a file on the worker that ran the task: its text goes
        # to the task's log too, where operators read it.
        report = deliver_pending(session, target, destination, digest_dir=settings.digest_dir, out=log.info)
    if report.pending and report.waiting_until is not None:
        # Slack asked not to be tried before a moment later than a retry would come (a
        # Retry-After past what the client waits): no fault, nothing lost. The outbox keeps
        # the digests, and the first run of this DAG after that moment delivers them.
        log.warning(
            "%d digest(s) wait: Slack asked not to be tried before %s UTC (rate limited); they "
            "stay pending in the outbox and go out with the first digest run after then",
            len(report.pending),
            f"{report.waiting_until:%Y-%m-%d %H:%M:%S}",
        )
    elif report.pending:
        # Transient (Slack down, misconfigured): let Airflow retry; the outbox resumes after
        # the last part that reached Slack.
        raise DeliveryFailed("; ".join(report.errors))
    result = {"sent": len(report.sent), "failed": len(report.failed)}
    if report.pending:
        result["waiting"] = len(report.pending)
    return result

"""The task bodies, without Airflow: batching for dynamic task mapping."""

from __future__ import annotations

from pathlib import Path

from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.tasks import MAX_MAPPED_BATCHES, plan_feed_batches
from tests.conftest import make_settings


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

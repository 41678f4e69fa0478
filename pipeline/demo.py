"""``summitwatch demo``: the whole path offline, on the bundled fixture site."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.bootstrap import initialise
from pipeline.db import repo
from pipeline.db.engine import make_engine, session_factory
from pipeline.fixture_site import FixtureServer
from pipeline.http import HttpClient
from pipeline.ingest import run_cycle
from pipeline.settings import Settings

DEMO_OUTLET_PREFIX = "demo: "


def run_demo(settings: Settings, *, port: int = 8765, out: Callable[[str], None] = print) -> int:
    """Serve the fixture site on 127.0.0.1, poll its feeds once, and report what was stored."""
    # The fixture site lives on loopback, which the SSRF guard refuses by default.
    settings = settings.model_copy(update={"allow_private_networks": True})
    report = initialise(settings, load_feeds=False)
    out(
        f"database {settings.db_url}: schema {report.revision_after}, "
        f"{report.seeds_added + report.seeds_present} seed documents"
    )
    engine = make_engine(settings.db_url)
    try:
        with (
            FixtureServer(port=port) as server,
            session_factory(engine)() as session,
            HttpClient(settings.http, allow_private_networks=True) as client,
        ):
            out(f"fixture site on http://{server.base}/ with {len(server.site.feeds)} feeds")
            feed_ids = []
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
            summary = run_cycle(session, client, settings, feed_ids=feed_ids, progress=out)
            counts = summary.counts()
            out("")
            out(
                f"this run: {counts['new']} new, {counts['duplicate']} duplicate, "
                f"{counts['error']} failed items; {counts['feeds_not_modified']} feeds not modified"
            )
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
            out("")
            out("browse: summitwatch articles --lang ru   |   summitwatch articles --q 'Power of Siberia'")
    finally:
        engine.dispose()
    return 0

"""`summitwatch demo` end to end against the bundled site, checked against its ground truth."""

from __future__ import annotations

import re
import socket
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from pipeline.db.engine import make_engine, session_factory
from pipeline.db.schema import Article, FetchFailure, Sighting
from pipeline.demo import run_demo
from tests.conftest import make_settings

EXPECTED: dict[str, Any] = yaml.safe_load(
    (resources.files("pipeline") / "data" / "demo_site" / "expected.yaml").read_text(encoding="utf-8")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_page(session: Any) -> dict[str, Article]:
    articles = session.scalars(select(Article).where(Article.is_seed.is_(False))).all()
    return {a.url.split("/", 3)[3].split("?")[0]: a for a in articles}


@pytest.mark.slow
def test_demo_stores_the_site_as_expected(
    tmp_path: Path, airflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(airflow_home))
    settings = make_settings(f"sqlite:///{tmp_path / 'demo.db'}", digest_dir=str(tmp_path / "digests"))
    port = free_port()
    lines: list[str] = []
    assert run_demo(settings, port=port, out=lines.append) == 0
    output = "\n".join(lines)
    assert "language" in output and "articles" in output
    assert "task poll_batch[0] done" in output, "the demo runs the real Airflow DAGs"
    assert "task deliver done" in output
    digests = sorted((tmp_path / "digests").iterdir())
    assert [d.name.split("-")[-1] for d in digests] == ["changes.txt", "summary.txt"]
    # The bundled site's news is dated; once the clock has passed it, the changes are
    # told with their window's dates rather than as "the last 24 h".
    assert re.search(
        r"articles in the (last 24 h|24 h from \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d UTC) ",
        digests[0].read_text(),
    )

    engine = make_engine(settings.db_url)
    with session_factory(engine)() as session:
        stored = by_page(session)
        for path, page in EXPECTED["pages"].items():
            assert path in stored, f"{path} was not stored"
            article = stored[path]
            assert article.lang == page["lang"], path
            assert article.title == page["title"], path
            assert len(article.text) > 300
            assert "cookie" not in article.text.lower(), f"{path}: footer leaked into the text"
        for pair in EXPECTED["exact_duplicates"]:
            copy, original = stored[pair["page"]], stored[pair["duplicate_of"]]
            assert copy.duplicate_of_id == original.id
        for case in EXPECTED["url_duplicates"]:
            article = stored[case["page"]]
            sightings = session.scalars(select(Sighting).where(Sighting.article_id == article.id)).all()
            assert len(sightings) == len(case["links"])
        failures = session.scalars(select(FetchFailure)).all()
        assert len(failures) == len(EXPECTED["broken_items"])
        assert all(f.permanent for f in failures)
        for pair in EXPECTED["near_duplicates"]:
            # Whichever of the two arrived first is the original; the other points at it.
            one, other = stored[pair["page"]], stored[pair["near_duplicate_of"]]
            copy = one if one.duplicate_of_id else other
            assert copy.duplicate_of_id == (other.id if copy is one else one.id)
            assert copy.similarity is not None and 0.5 < copy.similarity < 1.0
        originals = [a for a in stored.values() if a.duplicate_of_id is None]
        expected_copies = len(EXPECTED["exact_duplicates"]) + len(EXPECTED["near_duplicates"])
        assert len(originals) == len(stored) - expected_copies
        for case in EXPECTED["date_cases"]["future_pub_date"]:
            article = stored[case["link"].split("/", 3)[3]]
            assert article.published_at is not None and article.published_at.year == 2026
    engine.dispose()

    # A second run: every feed answers 304 and nothing new is stored.
    again: list[str] = []
    run_demo(settings, port=port, out=again.append)
    assert any("0 new, 0 duplicate, 0 failed items; 6 feeds not modified" in line for line in again)
    assert len(list((tmp_path / "digests").iterdir())) == 2, "nothing is reported twice"

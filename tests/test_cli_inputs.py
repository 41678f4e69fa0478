"""Input the command line must survive: bytes that are not UTF-8, lone surrogates, numbers
out of range, a reader that goes away, a database file that is not one. Each gets a clear
message (no traceback) and loses nothing already read."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli, importers
from tests.conftest import REPO_ROOT, make_settings
from tests.test_cli import SCRIPT, TEXT_EN, sw

# Distinct articles (team-written, for the classifier's tests): none is a copy of another.
DISTINCT = [
    json.loads(line)["text"]
    for line in (REPO_ROOT / "tests" / "fixtures" / "classify" / "eval.jsonl")
    .read_text("utf-8")
    .splitlines()[:8]
]
TEXTS = [
    f"{TEXT_EN} Report number {number}: the delegations met for the {number}th round of talks on "
    f"{['energy', 'trade', 'security', 'transport', 'finance'][number % 5]} in district {number * 7}."
    for number in range(1, 31)
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database initialised in this process (schema, views, seeds; no feeds)."""
    from pipeline.bootstrap import initialise

    path = tmp_path / "inputs.db"
    initialise(make_settings(f"sqlite:///{path}"), load_feeds=False)
    return path


def stored_count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM articles WHERE NOT is_seed").fetchone()[0])


def environment(db: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }


def in_process_with_a_short_busy_timeout(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run in this process (``cli.main``) on ``db``, waiting 200 ms for another
    writer's lock instead of the 30 s in use."""
    from pipeline.db import engine as database

    pragmas = database._sqlite_pragmas

    def short_wait(connection: Any, record: object, **options: bool) -> None:
        pragmas(connection, record, **options)
        connection.execute("PRAGMA busy_timeout=200")  # (30 s in use)

    monkeypatch.setattr(database, "_sqlite_pragmas", short_wait)
    for name, value in environment(db).items():
        monkeypatch.setenv(name, value)


def test_an_import_goes_on_when_the_reader_of_its_json_goes_away(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"id": n, "text": text}) + "\n" for n, text in enumerate(TEXTS)))
    importer = subprocess.Popen(
        [SCRIPT, "import", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(db),
        cwd=tmp_path,
    )
    assert importer.stdout is not None and importer.stderr is not None
    first = importer.stdout.readline()
    importer.stdout.close()  # what `| head -1` does
    errors = importer.stderr.read().decode()
    importer.stderr.close()
    assert importer.wait(timeout=300) == 0, errors
    assert json.loads(first)["status"] == "new"
    assert "Traceback" not in errors
    assert "0 failed" in errors and "every line was still imported" in errors
    # (The texts are alike: most are stored as near copies of the first.)
    assert stored_count(db) == len(TEXTS)


def test_input_that_is_not_utf8_is_read_and_reported(db: Path, tmp_path: Path) -> None:
    line = json.dumps({"id": "fr", "text": TEXT_EN + " Café, coopération, énergie."}, ensure_ascii=False)
    latin1 = (line + "\n").encode()
    latin1 = latin1.replace("é".encode(), b"\xe9")  # the same line saved as Latin-1
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(latin1)
    from_file = sw("import", str(path), "--json", db=db)
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_file.stdout)["status"] == "new"
    assert "is not UTF-8 (byte 0xe9" in from_file.stderr
    assert "1 line(s) were not UTF-8" in from_file.stderr
    # The same bytes on standard input, where a strict decoder used to stop the import.
    environ = {**environment(db), "PYTHONIOENCODING": "utf-8"}
    again = latin1.replace(b'"fr"', b'"fr-2"').replace(b"Caf", b"Bistro caf")
    piped = subprocess.run(
        [SCRIPT, "import", "-"], input=again, capture_output=True, env=environ, cwd=tmp_path, timeout=120
    )
    assert piped.returncode == 0, piped.stderr.decode()
    assert b"0 failed" in piped.stderr and b"Traceback" not in piped.stderr
    # A byte-order mark on standard input is dropped, as in a file.
    bom = b"\xef\xbb\xbf" + (json.dumps({"id": "bom", "text": TEXTS[0]}) + "\n").encode()
    with_bom = subprocess.run(
        [SCRIPT, "import", "-"], input=bom, capture_output=True, env=environ, cwd=tmp_path, timeout=120
    )
    assert with_bom.returncode == 0 and b"0 failed" in with_bom.stderr, with_bom.stderr.decode()
    assert stored_count(db) == 3
    with sqlite3.connect(db) as connection:
        texts = [row[0] for row in connection.execute("SELECT text FROM articles WHERE NOT is_seed")]
    assert any("Caf\ufffd" in text for text in texts)


def test_lone_surrogates_and_non_numbers_get_a_clear_line(db: Path) -> None:
    lines = [
        # JSON may escape half of a UTF-16 pair on its own.
        '{"id": "a\\ud800", "url": "https://news.example/x\\udfff", "text": ' + json.dumps(DISTINCT[0]) + "}",
        '{"id": NaN, "text": ' + json.dumps(DISTINCT[1]) + "}",
        '{"id": "upper", "url": "HTTPS://NEWS.EXAMPLE/UPPER", "text": ' + json.dumps(DISTINCT[2]) + "}",
        '{"id": "long", "n": ' + "7" * 5000 + ', "text": "x"}',
    ]
    done = sw("import", "-", "--json", db=db, stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["status"] for row in rows] == ["new", "error", "new", "error"]
    assert rows[0]["id"] == "a\ufffd"
    assert rows[1]["error"] == "line 2: NaN is not a JSON value"
    assert rows[3]["error"] == "line 4: the number 77777777777777777777... has more than 4300 digits"
    classified = sw("classify", db=db, stdin='{"id": "s", "text": "\\ud800 Putin and Xi discussed gas"}\n')
    assert classified.returncode == 0, classified.stderr
    assert json.loads(classified.stdout)["id"] == "s"


def test_an_import_where_every_line_fails_exits_with_an_error(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "utf16.jsonl"
    path.write_bytes((json.dumps({"text": TEXT_EN}) + "\n").encode("utf-16"))
    done = sw("import", str(path), db=db)
    assert done.returncode == 1
    assert "0 new, 0 duplicate, 2 failed" in done.stderr  # (UTF-16's line feed is two bytes)


def test_standard_input_failures_are_not_resolved_by_other_input(db: Path) -> None:
    assert sw("import", "-", db=db, stdin="{broken\n").returncode == 1
    assert sw("import", "-", db=db, stdin=json.dumps({"text": TEXT_EN}) + "\n").returncode == 0
    with sqlite3.connect(db) as connection:
        open_failures = connection.execute(
            "SELECT count(*) FROM fetch_failures WHERE stage = 'import' AND resolved_at IS NULL"
        ).fetchone()[0]
    assert open_failures == 1


def test_arguments_out_of_range_are_refused_in_one_line(db: Path, tmp_path: Path) -> None:
    for args, expected in [
        (["articles", "--limit", "9223372036854775807"], "must be from 1 to 1,000,000"),
        (["coverage", "--days", "0"], "must be from 1 to 730"),
        # Coverage is counted over at most two years: more days would show totals cut short.
        (["coverage", "--days", "731"], "must be from 1 to 730, not 731"),
        (["unlink", "99999999999999999999"], "must be from 1 to"),
        # Ids are 32-bit on PostgreSQL ("integer out of range" there, "no article" here).
        (["unlink", "2147483648"], "must be from 1 to 2,147,483,647, not 2,147,483,648"),
        (["articles", "--limit", "ten"], "not a whole number: 'ten'"),
        # Moments that are no date in UTC (the database stores UTC).
        (["articles", "--since", "0001-01-01T00:00:00+05:00"], "argument --since: out of range"),
        (["articles", "--until", "9999-12-31T23:59:59-05:00"], "argument --until: out of range"),
        # Only codes the language detector gives: no article could have another.
        (
            ["articles", "--lang", "Russian"],
            "--lang: not a language code the detector gives: 'Russian' (e.g. en",
        ),
        (["articles", "--lang", "xx"], "--lang: not a language code the detector gives: 'xx'"),
    ]:
        done = sw(*args, db=db)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr
    far = sw("articles", "--until", "9999-12-31", db=db)
    assert far.returncode == 0 and "Traceback" not in far.stderr
    for args in (
        ["--since", "0001-01-01T00:00:00Z"],
        ["--lang", "RU"],
        ["--lang", "en-GB"],
        ["--lang", "und"],
    ):
        done = sw("articles", *args, db=db)
        assert done.returncode == 0, (args, done.stderr)
    # Bytes that are not UTF-8 in an argument (a mistyped terminal).
    raw = subprocess.run(
        [SCRIPT.encode(), b"articles", b"--q", b"Arctic\xff"],
        capture_output=True,
        env=environment(db),
        cwd=tmp_path,
        timeout=120,
    )
    assert raw.returncode == 2
    assert b"is not valid UTF-8" in raw.stderr and b"Traceback" not in raw.stderr


def test_an_empty_filter_is_refused_not_ignored(db: Path) -> None:
    """`--topic "$TOPIC"` with TOPIC unset must not list every article as if it were the topic's."""
    for option, expected in [
        ("--topic", "unknown topic ''; topics: diplomacy, energy"),
        ("--watch", "unknown watch item ''; watch items: arctic_route"),
        ("--feed", "no feed or outlet is called ''"),
        ("--lang", "--lang: not a language code the detector gives: ''"),
    ]:
        done = sw("articles", option, "", db=db)
        assert done.returncode == 2, (option, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr


def test_a_file_that_is_not_a_database_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are notes, not a database\n" * 100)
    done = sw("articles", db=path)
    assert done.returncode == 2
    assert "cannot use the database" in done.stderr and "Traceback" not in done.stderr


def with_file_modes() -> list[str]:
    """A prefix that runs a command with file modes applied: root ignores them, so it runs
    without the capabilities that override them."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("run as root without setpriv: file modes cannot be applied")
    capabilities = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={capabilities}", f"--inh-caps={capabilities}"]


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_database_that_may_not_be_written_is_read_and_a_write_names_why(
    tmp_path: Path, read_only: str
) -> None:
    """A read-only file gave a 51-line traceback and "run again once it is back" on import;
    in a read-only folder even `articles` failed (the WAL switch on connect)."""
    from pipeline.bootstrap import initialise

    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "ro.db"
    initialise(make_settings(f"sqlite:///{path}"), load_feeds=False)
    lines = tmp_path / "one.jsonl"
    lines.write_text(json.dumps({"id": 1, "text": TEXT_EN}) + "\n")
    prefix = with_file_modes()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, SCRIPT, *args], capture_output=True, text=True, env=environment(path), timeout=120
        )

    (path if read_only == "file" else folder).chmod(0o444 if read_only == "file" else 0o555)
    try:
        for command in (("articles", "--seeds"), ("coverage",), ("feeds", "list"), ("digest", "--dry-run")):
            done = run(*command)
            assert done.returncode == 0 and "error" not in done.stderr, (command, done.stderr)
        assert len(run("articles", "--seeds", "--json").stdout.splitlines()) == 5
        # The web UI's engine lives for hours: a file it could only read as it stands (in a
        # read-only folder) is refused, with why.
        serve_engine = subprocess.run(
            [
                *prefix,
                sys.executable,
                "-c",
                "import sys; from pipeline.db.engine import make_engine; make_engine(sys.argv[1], long_lived=True)",
                f"sqlite:///{path}",
            ],
            capture_output=True,
            text=True,
            env=environment(path),
            timeout=120,
        )
        if read_only == "folder":
            assert serve_engine.returncode != 0 and "cannot serve the database" in serve_engine.stderr
        else:
            assert serve_engine.returncode == 0, serve_engine.stderr
        for command in (
            ("import", "--json", str(lines)),
            ("init",),
            ("feeds", "add", "https://a.example/rss"),
        ):
            done = run(*command)
            assert done.returncode == 2, (command, done.stderr)
            why = (
                "the file is not writable" if read_only == "file" else f"its folder {folder} is not writable"
            )
            assert done.stderr.splitlines() == [
                f"summitwatch: error: cannot write to the database {path}: {why}"
                + ("" if read_only == "file" else " (SQLite writes its journal files beside the database)")
            ], command
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert stored_count(path) == 0


def test_the_until_bound_includes_its_day_or_its_moment() -> None:
    day = datetime(2025, 11, 1, tzinfo=UTC)
    assert cli._parse_until("2025-11-01") == day + timedelta(days=1)
    assert cli._parse_until("20251101") == day + timedelta(days=1)
    at_ten = day + timedelta(hours=10)
    until = cli._parse_until("2025-11-01T10:00:00Z")
    assert at_ten < until <= at_ten + timedelta(seconds=1)  # an article at 10:00 is "on or before"
    assert cli._parse_until("9999-12-31").year == 9999


def test_records_keep_their_places_and_lines_end_at_line_feeds_only() -> None:
    # U+2028 is legal inside a JSON string: it must not cut the record in two.
    lines = ["{broken\n", '{"id": 1, "text": "a\u2028b"}\n', '{"id": 2, "text": "c"}\n']
    assert list(importers.numbered_records(lines)) == [
        ("line 1", "{broken"),
        ("line 2", '{"id": 1, "text": "a\u2028b"}'),
        ("line 3", '{"id": 2, "text": "c"}'),
    ]
    # A JSON array after a blank line is still one document, numbered by record.
    array = ["\n", '[{"id": 1, "text": "a"},\n', ' {"id": 2, "text": "b"}]\n']
    assert [where for where, _ in importers.numbered_records(array)] == ["record 1", "record 2"]
    assert importers.without_surrogates({"k\ud800": ["v\udfff", 1]}) == {"k\ufffd": ["v\ufffd", 1]}


def test_reimported_copies_keep_their_similarity_and_odd_dates_import_undated(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "near.jsonl"
    lines = [
        {"id": "a", "url": "https://one.example/a", "text": TEXTS[0]},
        {"id": "b", "url": "https://two.example/b", "text": TEXTS[1]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    first = [json.loads(line) for line in sw("import", str(path), "--json", db=db).stdout.splitlines()]
    again = [json.loads(line) for line in sw("import", str(path), "--json", db=db).stdout.splitlines()]
    assert first[1]["copy_kind"] == "near" and 0.5 < first[1]["similarity"] < 1.0
    assert [row["similarity"] for row in again] == [1.0, first[1]["similarity"]]
    # A placeholder date and one in the future are no dates: the line is imported undated.
    odd = [
        {"id": "old", "text": DISTINCT[0], "published": "1989-12-31"},
        {"id": "future", "text": DISTINCT[1], "published": "9999-12-31T00:00:00"},
        # An exporter's empty field is no date either (the line used to fail whole).
        {"id": "empty", "text": DISTINCT[2], "published": " "},
    ]
    done = sw("import", "-", "--json", db=db, stdin="".join(json.dumps(line) + "\n" for line in odd))
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["new", "new", "new"]
    assert "'1989-12-31' is before 1990" in done.stderr and "is in the future" in done.stderr
    assert "'published' is empty: imported undated" in done.stderr
    listed = sw("articles", "--json", "--lang", "EN", "--limit", "50", db=db)
    rows = {row["id"]: row for row in map(json.loads, listed.stdout.splitlines())}
    # --lang EN is en; the near copy is folded into its original; none of them has a date.
    assert len(rows) == 4 and all(row["published_at"] is None for row in rows.values())


def test_dates_as_exporters_write_them_are_read_and_one_that_is_none_loses_no_line(db: Path) -> None:
    """`published` as RSS writes it, as Unix seconds or milliseconds, or with a leap second
    is read; a phrase or a list is no date, and the line is imported undated (it used to
    fail whole, so the article was lost)."""
    given = {
        "rss": ("Tue, 10 Nov 2026 10:00:00 GMT", "2026-11-10T10:00:00+00:00"),
        "rss-ru": ("Вт, 10 ноя 2026 13:00:00 +0300", "2026-11-10T10:00:00+00:00"),
        "seconds": (1762000000, "2025-11-01T12:26:40+00:00"),
        "milliseconds": ("1762000000000", "2025-11-01T12:26:40+00:00"),
        "leap": ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59+00:00"),
        "phrase": ("next Tuesday", None),
        "list": (["2026-11-10"], None),
    }
    lines = [
        {"id": name, "url": f"https://dates.example/{name}", "text": DISTINCT[index], "published": value}
        for index, (name, (value, _)) in enumerate(given.items())
    ]
    done = sw("import", "-", "--json", db=db, stdin="".join(json.dumps(line) + "\n" for line in lines))
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["status"] for row in results] == ["new"] * len(given), done.stderr
    assert "'next Tuesday' is not a date" in done.stderr and "is a JSON array, not a date" in done.stderr
    listed = sw("articles", "--json", "--duplicates", "--limit", "50", db=db)
    dates = {row["url"]: row["published_at"] for row in map(json.loads, listed.stdout.splitlines())}
    for name, (_, expected) in given.items():
        moment = dates[f"https://dates.example/{name}"]
        assert (moment and datetime.fromisoformat(moment).isoformat()) == expected, name


def test_a_dry_run_shows_the_digests_still_pending(db: Path, tmp_path: Path) -> None:
    """A digest that could not be delivered stays pending; `digest --dry-run` shows it, as
    the next real run sends it (it used to say there was nothing to send)."""
    from datetime import datetime

    from tests.test_reporting import pos2_articles

    now = datetime.now(UTC)
    lines = [
        json.dumps({"id": "old", "text": DISTINCT[1], "published": (now - timedelta(days=40)).isoformat()})
    ]
    lines += [
        json.dumps(
            {
                "id": a["id"],
                "title": a["title"],
                "text": a["text"],
                "published": (now - timedelta(hours=2 + i)).isoformat(),
            }
        )
        for i, a in enumerate(pos2_articles())
    ]
    assert sw("import", "-", db=db, stdin="\n".join(lines) + "\n").returncode == 0
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    failed = sw("digest", db=db, env={"SUMMITWATCH_DIGEST_DIR": str(blocked)})
    assert failed.returncode == 1 and "cannot write the digest" in failed.stderr
    # --json without --dry-run delivered the digests for real (its help says "with --dry-run").
    refused = sw("digest", "--json", db=db, env={"SUMMITWATCH_DIGEST_DIR": str(tmp_path / "out")})
    assert refused.returncode == 2 and "--dry-run" in refused.stderr and not (tmp_path / "out").exists()
    dry = sw("digest", "--dry-run", "--json", db=db, env={"SUMMITWATCH_DIGEST_DIR": str(tmp_path / "out")})
    shown = [json.loads(line) for line in dry.stdout.splitlines()]
    assert shown and all(entry["status"] == "pending" for entry in shown), dry.stderr
    sent = sw("digest", db=db, env={"SUMMITWATCH_DIGEST_DIR": str(tmp_path / "out")})
    assert sent.returncode == 0
    assert len(list((tmp_path / "out").iterdir())) == len(shown)


def test_only_a_database_that_does_not_answer_is_waited_for(tmp_path: Path) -> None:
    """`run` waits out an outage; every other database error still ends it (a missing table
    once read as an outage, and the daemon printed "database unavailable" every 30 s)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from pipeline.cli import _unavailable_database
    from pipeline.db.engine import make_engine, session_factory
    from pipeline.errors import DatabaseUnavailable

    def error_of(url: str, statement: str) -> tuple[Exception, object, object]:
        engine = make_engine(url)
        session = session_factory(engine)()
        try:
            session.execute(text(statement))
        except OperationalError as exc:
            return exc, session, engine
        raise AssertionError(f"{statement} ran on {url}")

    missing_table, session, engine = error_of(f"sqlite:///{tmp_path / 'empty.db'}", "SELECT * FROM feeds")
    assert _unavailable_database(missing_table, session) is None, "the database answers: not an outage"
    session.close()  # type: ignore[attr-defined]
    engine.dispose()  # type: ignore[attr-defined]
    refused, session, engine = error_of("postgresql+psycopg://nobody@127.0.0.1:1/none", "SELECT 1")
    reason = _unavailable_database(refused, session)
    assert reason is not None and "127.0.0.1" in reason and "\n" not in reason
    session.close()  # type: ignore[attr-defined]
    engine.dispose()  # type: ignore[attr-defined]
    assert _unavailable_database(DatabaseUnavailable("gone", reason="server closed"), None) == "server closed"
    assert _unavailable_database(ValueError("no"), None) is None


def test_the_command_line_s_largest_id_is_a_row_s() -> None:
    """Written out in the CLI (importing the schema would slow its start): kept equal."""
    from pipeline import cli
    from pipeline.db.schema import MAX_ROW_ID

    assert cli.MAX_ID == MAX_ROW_ID


def test_an_import_that_waits_too_long_for_the_writers_lock_stops_with_one_line(
    db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another writer holds the database past the busy timeout: the import ends with one
    line naming the line it stopped at (no traceback, nothing recorded as failed under a
    lock it could not get), and the lines before it stay imported."""
    from pipeline.db import repo

    in_process_with_a_short_busy_timeout(db, monkeypatch)
    path = tmp_path / "two.jsonl"
    path.write_text(
        "".join(
            json.dumps({"url": f"https://n.example/{n}", "text": t}) + "\n"
            for n, t in enumerate(DISTINCT[:2])
        )
    )
    writer = sqlite3.connect(db, isolation_level=None)
    begin_write = repo.begin_write
    calls = 0

    def another_writer_first(session: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            writer.execute("BEGIN IMMEDIATE")  # another writer, before the second line is stored
        begin_write(session)

    monkeypatch.setattr(repo, "begin_write", another_writer_first)
    try:
        status = cli.main(["import", str(path)])
    finally:
        writer.close()  # (its transaction rolled back)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip().splitlines() == [
        "summitwatch: error: line 2: the database stayed locked by another writer (database is locked); "
        "the lines before it are imported: run the import again once that writer is done"
    ], err
    assert not [record for record in caplog.records if record.exc_info], "no traceback"
    assert stored_count(db) == 1
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM fetch_failures").fetchone()[0] == 0


def test_a_run_that_waits_too_long_for_the_writers_lock_stops_with_one_line(
    db: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another writer holds the database past the busy timeout while a feed is polled: the
    run ends with one line saying so. It logged the lock as the feed's unexpected failure,
    with a traceback, tried to back the feed off (which needs the same lock) and ended
    saying the database was "unavailable ... once it is back"."""
    from pipeline.db import engine as database
    from pipeline.db import repo
    from tests.local_server import LocalServer, Reply

    in_process_with_a_short_busy_timeout(db, monkeypatch)
    monkeypatch.setenv("SUMMITWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def feed(handler: object) -> Reply:
        writer.execute("BEGIN IMMEDIATE")  # another writer, while the feed is read
        body = (
            '<rss version="2.0"><channel><title>News</title><item><title>One</title>'
            "<link>/news/1</link></item></channel></rss>"
        )
        return Reply(200, body.encode(), {"Content-Type": "application/rss+xml"})

    with LocalServer({"/feed": feed}) as server:
        engine = database.make_engine(f"sqlite:///{db}")
        with database.session_factory(engine)() as session:
            repo.upsert_feed(session, server.url("/feed"), name="News", lang="en")
            session.commit()
        engine.dispose()
        try:
            status = cli.main(["run", "--once", "--all"])
        finally:
            writer.close()  # (its transaction rolled back)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip().splitlines()[-1] == (
        "summitwatch: error: the database stayed locked by another writer (database is locked); "
        "what was committed is kept: run again once that writer is done"
    ), err
    assert "Traceback" not in err
    assert not [record for record in caplog.records if record.exc_info], "no traceback"
    with sqlite3.connect(db) as connection:
        failures, error, polled = connection.execute(
            "SELECT failure_count, last_error, last_polled_at FROM feeds"
        ).fetchone()
    assert (failures, error, polled) == (0, None, None), "the feed is polled again next run, not backed off"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["feeds", "add", "https://news.example/feed"],
            "summitwatch: error: the database stayed locked by another writer (database is locked); "
            "what was committed is kept: run again once that writer is done",
        ),
        (
            ["init"],
            "summitwatch: error: cannot migrate the database: it stayed locked by another writer "
            "(database is locked); nothing was changed: run init again once that writer is done",
        ),
    ],
    ids=["feeds-add", "init"],
)
def test_a_command_that_waits_too_long_for_the_writers_lock_says_so(
    db: Path,
    command: list[str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another writer held the database past the busy timeout: the command said "database
    unavailable: database is locked; run again once it is back" (`init`: "cannot migrate
    the database: database is locked"), sending the analyst to look for an outage."""

    in_process_with_a_short_busy_timeout(db, monkeypatch)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        status = cli.main(command)
    finally:
        writer.close()
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.strip().splitlines() == [expected], err


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_db_option_is_an_error_naming_it(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--db ''` (an unset shell variable) used SUMMITWATCH_DB_URL or ./summitwatch.db instead:
    another database than the one meant, silently."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUMMITWATCH_DB_URL", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--db", value, "init"])
    assert stopped.value.code == 2
    assert "argument --db: an empty database URL" in capsys.readouterr().err
    assert not (tmp_path / "summitwatch.db").exists(), "no database made in its place"


def test_errors_read_as_one_line_of_the_command(db: Path, tmp_path: Path) -> None:
    """An unknown article for `unlink` is said as every other error is; a JSON error's
    message reads as a sentence; a missing import file is said before any model loads."""
    unknown = sw("unlink", "999999", db=db)
    assert unknown.returncode == 1 and unknown.stderr.startswith(
        "summitwatch: error: no article with id 999999"
    )
    broken = sw("import", "-", db=db, stdin='{"id": "x", "text": "unterminated\n')
    assert "not valid JSON (Unterminated string starting at column" in broken.stderr, broken.stderr
    missing = sw("-v", "import", str(tmp_path / "missing.jsonl"), db=db)
    # (Verbose, so a library loaded first would have said so: nothing was.)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"summitwatch: error: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory"
    ]


def test_ingest_stops_until_init_brings_stored_forms_up_to_date(db: Path, tmp_path: Path) -> None:
    """A new release that hashes texts otherwise (or other near-duplicate settings) would
    look every copy up in a form nothing stored has, and store it again as new coverage:
    `import` and `run` stop with a message saying to run `init`, store nothing, and after
    `init` the copy is found."""
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": 1, "url": "https://briefs.example/a", "text": TEXTS[0]}) + "\n")
    assert sw("import", str(path), db=db).returncode == 0
    with sqlite3.connect(db) as connection:  # as an earlier release left them
        connection.execute("UPDATE pipeline_state SET value = '1' WHERE key = 'content_hash_scheme'")
        connection.execute("UPDATE article_signatures SET scheme = 'an-older-scheme'")
    for command in (["import", str(path)], ["run", "--once", "--all"]):
        refused = sw(*command, db=db)
        assert refused.returncode != 0, refused.stderr
        assert "text hashes" in refused.stderr and "near-duplicate signatures" in refused.stderr
        assert "run `summitwatch init`" in refused.stderr and "Traceback" not in refused.stderr
    assert stored_count(db) == 1
    assert sw("init", db=db).returncode == 0
    # A near copy at another address: found through the signatures init made again.
    copy = tmp_path / "copy.jsonl"
    edited = TEXTS[0].replace("the delegations met", "the two delegations met")
    copy.write_text(json.dumps({"id": 2, "url": "https://mirror.example/a", "text": edited}) + "\n")
    again = sw("import", str(copy), "--json", db=db)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["status"], json.loads(again.stdout)["copy_kind"]) == (
        "duplicate",
        "near",
    )
    assert stored_count(db) == 2  # (a copy is stored, folded under its original)


def test_ingest_stops_where_an_init_from_before_the_text_hash_scheme_left_no_record_of_it(
    db: Path, tmp_path: Path
) -> None:
    """`init` of a release from before text hashes had a scheme recorded its canonical URLs
    but no text hash scheme (its hashes are the earliest folding, which `init` hashes again
    as it does whatever is not recorded): `import` stops as for an earlier scheme, rather
    than take the missing record as current. A database made by the migrations alone (no
    record of init's at all) is still taken as current."""
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"id": 1, "url": "https://briefs.example/a", "text": TEXTS[0]}) + "\n")
    assert sw("import", str(path), db=db).returncode == 0
    with sqlite3.connect(db) as connection:  # as an init of that release left them
        connection.execute("DELETE FROM pipeline_state WHERE key = 'content_hash_scheme'")
    refused = sw("import", str(path), db=db)
    assert refused.returncode != 0 and "text hashes" in refused.stderr, refused.stderr
    assert "canonical URLs" not in refused.stderr
    with sqlite3.connect(db) as connection:  # no record of an init at all
        connection.execute("DELETE FROM pipeline_state WHERE key = 'canonical_url_scheme'")
    assert sw("import", str(path), db=db).returncode == 0
    assert stored_count(db) == 1


def test_output_in_a_legacy_encoding_escapes_what_it_cannot_hold(db: Path, tmp_path: Path) -> None:
    """Standard output in an encoding that cannot hold Cyrillic (a legacy locale): the
    listing is written with backslash escapes for those characters, said once on stderr,
    not ended by a traceback at the first Russian headline; ASCII output says nothing."""
    path = tmp_path / "ru.jsonl"
    text = "Путин и Си Цзиньпин обсудили в Пекине поставки газа по «Силе Сибири — 2» и торговлю в юанях."
    path.write_text(json.dumps({"title": "Путин и Си обсудили газ", "text": text}, ensure_ascii=False) + "\n")
    assert sw("import", str(path), db=db).returncode == 0
    latin = {**environment(db), "PYTHONIOENCODING": "latin-1"}

    def run(*args: str) -> tuple[int, str, str]:
        done = subprocess.run([SCRIPT, *args], capture_output=True, env=latin, cwd=tmp_path, timeout=120)
        return done.returncode, done.stdout.decode("latin-1"), done.stderr.decode("latin-1")

    for options in ([], ["--json"], ["--csv"]):
        status, out, err = run("articles", *options)
        assert status == 0 and "Traceback" not in err, err
        assert "\\u041f\\u0443\\u0442\\u0438\\u043d" in out  # Путин, escaped
        assert err.count("cannot hold every character") == 1
    status, _, err = run("feeds", "list")
    assert status == 0 and "cannot hold" not in err

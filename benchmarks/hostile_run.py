#!/usr/bin/env python3
"""Wall time and peak memory of one ``summitwatch run --once --all`` over hostile feeds and pages.

A local site on 127.0.0.1 serves what a hostile or broken publisher can send:

* feeds: a billion-laughs bomb (UTF-8), the same bomb in UTF-16 without a byte-order
  mark behind 100 KB of padding, an XXE reading a local file, a feed of 100,000 items
  (only the first ``poll.max_items_per_feed`` are processed), a feed whose declared
  charset is wrong, a gzip bomb, a redirect loop and a redirect to the cloud metadata
  address 169.254.169.254;
* pages (linked from a feed): a 50 MB page streamed without a length, a gzip bomb
  (1 GB of zeros), a redirect loop, a redirect to 169.254.169.254, 200,000 nested
  ``<div>`` elements, PNG bytes served as HTML, and a page in windows-1251 that says it
  is UTF-8;
* and a normal feed of real stories (``tests/fixtures/dedup/stories.jsonl``), which must
  come through untouched.

The database is a fresh SQLite file made by ``summitwatch init`` (seed corpus included);
the feeds are added with ``summitwatch feeds import-opml``; then ``summitwatch run --once
--all`` runs in a child process, timed, its peak RSS read from ``wait4`` (the sentence
encoder is loaded in that process, so it is included). Afterwards the database is
checked: the normal stories stored, every hostile feed failed with a clear reason,
nothing of the secret file or of an entity expansion stored anywhere. Last, the
entity-declaration check of ``pipeline.feeds`` is timed on a clean 10 MB feed.

Writes ``benchmarks/results/hostile_run.json`` and prints a Markdown table.

Usage::

    python benchmarks/hostile_run.py [--big-feed-items 100000]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing it

from pipeline.feeds import to_opml  # noqa: E402
from pipeline.settings import PollSettings  # noqa: E402
from tests.local_server import LocalServer, Reply  # noqa: E402

STORIES = REPO_ROOT / "tests" / "fixtures" / "dedup" / "stories.jsonl"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "hostile_run.json"
SCRIPT = Path(sys.executable).parent / "summitwatch"
SECRET_MARKER = "HOSTILE-RUN-SECRET-9f3c"
NORMAL_STORIES = 20
MB = 1024 * 1024


def rss(items: list[tuple[str, str]], *, title: str = "feed", encoding: str = "utf-8") -> str:
    body = "".join(
        f"<item><title>{html.escape(t)}</title><link>{html.escape(u)}</link><guid>{html.escape(u)}</guid></item>"
        for t, u in items
    )
    head = f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel><title>{title}</title>'
    return f"{head}{body}</channel></rss>"


def laughs(levels: int = 10) -> str:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">' for n in range(1, levels)
    )
    return f"<!DOCTYPE rss [{entities}]>"


def story_page(story: dict[str, Any], *, charset: str = "utf-8", declared: str = "utf-8") -> bytes:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in story["text"].split("\n\n") if p.strip())
    return (
        f'<!DOCTYPE html><html lang="{story["lang"]}"><head><meta charset="{declared}">'
        f"<title>{html.escape(story['title'])}</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>{html.escape(story['title'])}</h1>{paragraphs}</article>"
        "<footer>All rights reserved.</footer></body></html>"
    ).encode(charset, "replace")


def gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about 1 KB per MB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * MB
    parts = [compressor.compress(chunk) for _ in range(size // MB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def endless(total: int) -> Iterator[bytes]:
    chunk = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>\n"
    sent = 0
    yield b"<html><body>"
    while sent < total:
        yield chunk
        sent += len(chunk)


class HostileSite:
    """Every route of the hostile site, and what each is expected to do to the run."""

    def __init__(self, workdir: Path, big_feed_items: int) -> None:
        stories = [json.loads(line) for line in STORIES.read_text(encoding="utf-8").splitlines()]
        # One version of each story (the fixture holds several rewrites of each).
        seen: set[str] = set()
        self.stories = []
        for story in stories:
            base = story["id"].rsplit("-v", 1)[0]
            if base not in seen:
                seen.add(base)
                self.stories.append(story)
        self.secret = workdir / "secret.txt"
        self.secret.write_text(SECRET_MARKER)
        self.big_feed_items = big_feed_items
        self.bomb = gzip_bomb(1024 * MB)
        self.server = LocalServer({})
        self.routes = self.server.routes
        self.feeds: dict[str, str] = {}  # path -> what it is
        self.pages: dict[str, str] = {}

    def url(self, path: str) -> str:
        return self.server.url(path)

    def build(self) -> None:
        r = self.routes
        normal = self.stories[:NORMAL_STORIES]
        for n, story in enumerate(self.stories):
            r[f"/story/{n}"] = lambda h, s=story: Reply(
                200, story_page(s), {"Content-Type": "text/html; charset=utf-8"}
            )
        self._feed(
            "/feeds/normal",
            "normal stories",
            rss([(s["title"], f"/story/{n}") for n, s in enumerate(normal)]),
        )
        self._feed(
            "/feeds/bomb",
            "billion laughs (UTF-8)",
            rss([("&lol9;", "/story/0")]).replace("?>", "?>" + laughs(), 1),
        )
        utf16 = ("<!-- padding -->" * 6400) + laughs() + rss([("&lol9;", "/story/0")]).split("?>", 1)[1]
        self._feed(
            "/feeds/bomb-utf16",
            "billion laughs in UTF-16 without BOM, 100 KB in",
            utf16,
            encoding="utf-16-le",
        )
        xxe = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{self.secret.as_uri()}">]>'
        self._feed(
            "/feeds/xxe", "XXE to a local file", rss([("&xxe;", "/story/1")]).replace("?>", "?>" + xxe, 1)
        )
        others = len(self.stories) - NORMAL_STORIES
        big = "".join(
            f"<item><link>/story/{NORMAL_STORIES + i % others}?n={i}</link></item>"
            for i in range(self.big_feed_items)
        )
        self._feed(
            "/feeds/huge",
            f"{self.big_feed_items:,} items",
            f'<rss version="2.0"><channel><title>huge</title>{big}</channel></rss>',
        )
        russian = next(s for s in self.stories if s["lang"] == "ru")
        r["/pages/cp1251-says-utf8"] = lambda h: Reply(
            200,
            story_page(russian, charset="cp1251", declared="utf-8"),
            {"Content-Type": "text/html; charset=utf-8"},
        )
        self.pages["/pages/cp1251-says-utf8"] = "windows-1251 page declaring UTF-8 (stored, readable)"
        wrong = rss([(russian["title"], "/pages/cp1251-says-utf8")], encoding="windows-1251")
        self._feed("/feeds/wrong-charset", "KOI8-R feed declaring windows-1251", wrong, encoding="koi8-r")
        r["/feeds/gzip-bomb"] = lambda h: Reply(
            200, self.bomb, {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
        )
        self.feeds["/feeds/gzip-bomb"] = "gzip bomb (1 GB of zeros)"
        r["/feeds/loop"] = lambda h: Reply(302, b"", {"Location": "/feeds/loop"})
        self.feeds["/feeds/loop"] = "redirect loop"
        r["/feeds/to-metadata"] = lambda h: Reply(
            302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}
        )
        self.feeds["/feeds/to-metadata"] = "redirect to 169.254.169.254"
        hostile_pages = {
            "/pages/50mb": (
                lambda h: Reply(200, endless(50 * MB), {"Content-Type": "text/html"}),
                "50 MB page, no length",
            ),
            "/pages/gzip-bomb": (
                lambda h: Reply(200, self.bomb, {"Content-Encoding": "gzip", "Content-Type": "text/html"}),
                "gzip bomb (1 GB of zeros)",
            ),
            "/pages/loop": (lambda h: Reply(302, b"", {"Location": "/pages/loop"}), "redirect loop"),
            "/pages/to-metadata": (
                lambda h: Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
                "redirect to 169.254.169.254",
            ),
            "/pages/deep": (
                lambda h: Reply(
                    200,
                    b"<html><body>" + b"<div>" * 200_000 + b"deep" + b"</div>" * 200_000,
                    {"Content-Type": "text/html"},
                ),
                "200,000 nested divs",
            ),
            "/pages/png": (
                lambda h: Reply(
                    200, b"\x89PNG\r\n\x1a\n" + os.urandom(200_000), {"Content-Type": "text/html"}
                ),
                "PNG served as HTML",
            ),
        }
        for path, (route, what) in hostile_pages.items():
            r[path] = route
            self.pages[path] = what
        self._feed(
            "/feeds/hostile-pages",
            "links to hostile pages",
            rss([(what, path) for path, what in self.pages.items()]),
        )

    def _feed(self, path: str, what: str, document: str, *, encoding: str = "utf-8") -> None:
        body = document.encode(encoding)
        self.routes[path] = lambda h: Reply(200, body, {"Content-Type": "application/rss+xml"})
        self.feeds[path] = what


def entity_scan_seconds(size: int = 10 * MB, repeats: int = 3) -> float:
    """Best time of the entity-declaration check on a clean ``size``-byte feed (it reads
    the whole document, decoded as the parser will decode it)."""
    from pipeline.feeds import refuse_entity_declarations

    item = "<item><title>Переговоры в Пекине: {n}</title><link>https://news.example/{n}</link></item>"
    items, total, n = [], 0, 0
    while total < size:
        piece = item.format(n=n)
        items.append(piece)
        total += len(piece.encode())
        n += 1
    body = rss([]).replace("</channel>", "".join(items) + "</channel>").encode()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        refuse_entity_declarations(body, {"content-type": "application/rss+xml"})
        best = min(best, time.perf_counter() - started)
    return best


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, int, str]:
    """Run ``command``; returns (exit status, wall seconds, peak RSS in bytes, stderr)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        stderr.seek(0)
        output = stderr.read().decode("utf-8", "replace")
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss * 1024, output


def check(db: Path, site: HostileSite) -> dict[str, Any]:
    """What the run left in the database, and whether anything poisoned got in."""
    connection = sqlite3.connect(db)
    feeds = {
        url: {"failures": failures, "last_error": error}
        for url, failures, error in connection.execute("SELECT url, failure_count, last_error FROM feeds")
    }
    stored_urls = [row[0] for row in connection.execute("SELECT url FROM articles WHERE is_seed = 0")]
    failures = dict(connection.execute("SELECT target, error FROM fetch_failures WHERE stage = 'page'"))
    poisoned = []
    for table, column in (
        ("articles", "text"),
        ("articles", "title"),
        ("fetch_failures", "error"),
        ("feeds", "last_error"),
    ):
        for needle in (SECRET_MARKER, "lollollollol"):
            hits = connection.execute(
                f"SELECT count(*) FROM {table} WHERE {column} LIKE ?", (f"%{needle}%",)
            ).fetchone()[0]
            if hits:
                poisoned.append(f"{table}.{column} holds {needle!r} ({hits} rows)")
    controls = connection.execute(
        "SELECT count(*) FROM articles WHERE text GLOB ? OR title GLOB ?",
        ("*[" + "".join(chr(c) for c in range(1, 9)) + "]*",) * 2,
    ).fetchone()[0]
    if controls:
        poisoned.append(f"{controls} stored articles hold control characters")
    connection.close()
    normal_urls = {site.url(f"/story/{n}") for n in range(NORMAL_STORIES)}
    hostile_feeds = [
        path
        for path in site.feeds
        if path not in ("/feeds/normal", "/feeds/huge", "/feeds/wrong-charset", "/feeds/hostile-pages")
    ]
    return {
        "articles_stored": len(stored_urls),
        "normal_stories_stored": len(normal_urls & set(stored_urls)),
        "from_big_feed": sum(1 for url in stored_urls if "?n=" in url),
        "cp1251_page_stored": site.url("/pages/cp1251-says-utf8") in stored_urls,
        "hostile_feeds": {
            path: {
                "what": site.feeds[path],
                **feeds.get(site.url(path), {"failures": None, "last_error": "not polled"}),
            }
            for path in hostile_feeds
        },
        "hostile_pages": {
            path: {"what": what, "error": failures.get(site.url(path))}
            for path, what in site.pages.items()
            if path != "/pages/cp1251-says-utf8"
        },
        "poisoned": poisoned,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-feed-items", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="summitwatch-hostile-"))
    try:
        config = workdir / "config"
        shutil.copytree(REPO_ROOT / "config", config)
        (config / "feeds.yaml").write_text("feeds: []\n")
        db = workdir / "hostile.db"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SUMMITWATCH_", "SLACK_"))},
            "SUMMITWATCH_DB_URL": f"sqlite:///{db}",
            "SUMMITWATCH_CONFIG_DIR": str(config),
            # The site is on 127.0.0.1; link-local (the metadata address) stays refused.
            "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        }
        site = HostileSite(workdir, args.big_feed_items)
        with site.server:
            site.build()
            opml = workdir / "feeds.opml"
            opml.write_bytes(
                to_opml([{"url": site.url(path), "name": what} for path, what in site.feeds.items()])
            )
            for command in (["init"], ["feeds", "import-opml", str(opml)]):
                status, _, _, output = run([str(SCRIPT), *command], env, workdir)
                if status != 0:
                    print(output, file=sys.stderr)
                    return 1
            status, wall, peak, output = run([str(SCRIPT), "run", "--once", "--all"], env, workdir)
            outcome = check(db, site)
        scan = entity_scan_seconds()
        summary_line = next(
            (line for line in reversed(output.splitlines()) if line.startswith("cycle done")), ""
        )
        result = {
            "command": "summitwatch run --once --all",
            "exit_status": status,
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(peak / MB),
            "cycle": summary_line,
            "big_feed_items": args.big_feed_items,
            "entity_scan_seconds_10mb_feed": round(scan, 3),
            **outcome,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                # What poll.workers: auto gives here (runs on more CPUs start more workers).
                "prepare_workers_auto": PollSettings(workers="auto").worker_count(),
                "load_average_1m": round(os.getloadavg()[0], 1),
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print_table(result)
        clean = status == 0 and not outcome["poisoned"] and outcome["normal_stories_stored"] == NORMAL_STORIES
        clean = clean and all(f["failures"] == 1 for f in outcome["hostile_feeds"].values())
        clean = clean and all(p["error"] for p in outcome["hostile_pages"].values())
        if not clean:
            print("\nUNEXPECTED: see the table above", file=sys.stderr)
            print(output[-3000:], file=sys.stderr)
        return 0 if clean else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_table(result: dict[str, Any]) -> None:
    print(
        f"`{result['command']}` over hostile feeds and pages: **{result['wall_seconds']} s wall, "
        f"{result['peak_rss_mb']} MB peak RSS**, exit status {result['exit_status']}"
    )
    print(f"\n{result['cycle']}\n")
    print(f"entity-declaration check on a clean 10 MB feed: {result['entity_scan_seconds_10mb_feed']} s\n")
    print(
        f"normal stories stored: {result['normal_stories_stored']}/{NORMAL_STORIES}; from the "
        f"{result['big_feed_items']:,}-item feed: {result['from_big_feed']}; windows-1251 page stored: "
        f"{result['cp1251_page_stored']}; poisoned: {result['poisoned'] or 'nothing'}\n"
    )
    print("| feed | failures | error |\n|---|---|---|")
    for feed in result["hostile_feeds"].values():
        print(f"| {feed['what']} | {feed['failures']} | {str(feed['last_error'])[:110]} |")
    print("\n| page | error |\n|---|---|")
    for page in result["hostile_pages"].values():
        print(f"| {page['what']} | {str(page['error'])[:110]} |")


if __name__ == "__main__":
    raise SystemExit(main())

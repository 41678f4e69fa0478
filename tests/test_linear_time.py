"""Hostile text that made a stage's time grow with the square of its length.

Each input below took from half a minute to several minutes in the code before its fix
(a regular expression retrying from every character of a long run, a search restarted
one character on, a text copied once per match) and takes a few milliseconds now. The
check is not a speed measurement (the benchmarks are): each runs in a fresh interpreter
under a budget far above what the linear code needs on a slow, busy machine and far
below what the quadratic one took, so a return of the quadratic behaviour fails here
rather than stalling a run. The texts are sized from the timings of the code before:
each doubling cost about four times as much.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc

import lxml.html
import pytest

from pipeline import extract, search
from tests.conftest import REPO_ROOT

# Seconds for one check, interpreter start and imports included (the linear code takes
# well under one; the quadratic one took over a minute on every input here).
BUDGET = 25


def finishes(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the repository; its standard output.
    Fails the test if it has not finished within the budget."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=BUDGET,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {BUDGET} s (quadratic again?):\n{code}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_long_run_of_stops_that_no_sentence_follows_is_cut_in_linear_time() -> None:
    # 50,000 dots took 49 s before; 150,000 would have taken about seven minutes.
    out = finishes(
        """
        from pipeline.sentences import split_sentences
        for text in ("a" + "." * 150_000 + "a", "Wait" + "…" * 150_000, "x" + "?" * 150_000 + " y"):
            print(len(split_sentences(text)))
        print(split_sentences("Contents" + "." * 150_000 + " Page 5. Next."))
        """
    )
    *counts, last = out.splitlines()
    assert counts == ["1", "1", "1"]
    # (the stops still end a sentence where one follows)
    assert last == repr(["Contents" + "." * 150_000, "Page 5.", "Next."])


def test_a_long_paragraph_of_numbered_items_is_cut_in_linear_time() -> None:
    # 800 KB took 12 s before (the rest of the paragraph copied at every "1. ").
    out = finishes(
        """
        from pipeline.sentences import split_sentences
        print(len(split_sentences("1. Item " * 300_000)))
        """
    )
    assert int(out) == 300_001  # ("1.", then "Item 1." 299,999 times, then "Item")


def test_the_names_of_one_long_glued_word_are_looked_for_in_linear_time() -> None:
    # 80,000 characters took 4.1 s before: the search restarted one character on.
    out = finishes(
        """
        from pathlib import Path
        from pipeline.crosslingual import load_gazetteer
        gazetteer = load_gazetteer(Path("config/gazetteer.yaml"))
        print(sorted(gazetteer.entities("x" + "путин" * 200_000, "ru")))
        print(sorted(gazetteer.entities("x" + "siberia" * 150_000 + " Putin", "de")))
        """
    )
    assert out.splitlines() == ["[]", "['putin']"]


def test_two_long_words_in_one_frame_are_no_names_to_compare() -> None:
    # Two copies that differ in one 100,000-letter capitalised word, twice in the lead:
    # comparing the two as names (how alike they are) took 7 s for 4,000 letters and four
    # times as long for twice as many; runs that long are no names.
    out = finishes(
        """
        from pipeline.neardup import NearDupParams, verify
        frame = " ".join(f"word{n}" for n in range(120))
        one, other = "A" + "ba" * 50_000, "B" + "ab" * 50_000
        a = f"Lead {one} says. Then {one} left. {frame}"
        b = f"Lead {other} says. Then {other} left. {frame}"
        print(verify(a, b, "en", "en", NearDupParams()).reason)
        """
    )
    assert out.strip() == "duplicate"


def test_a_line_of_dots_before_a_word_is_judged_in_linear_time() -> None:
    # The byline and orphan-heading tests asked whether a line ends a sentence with a
    # search that ran to the line's end from every dot: 20,000 dots took 4.9 s.
    out = finishes(
        """
        from pipeline.extract import extract_page
        body = "".join(f"<p>Paragraph {n} of the report says what happened in the talks.</p>" for n in range(6))
        page = (
            "<html><head><meta name='author' content='Anna Lee'><title>T</title></head><body>"
            f"<article><h1>Talks</h1>{body}<p>{'.' * 300_000}x</p></article></body></html>"
        )
        print(extract_page(page.encode()).text.count("Paragraph"))
        """
    )
    assert int(out) == 6


def test_a_parameter_of_dots_is_redacted_in_linear_time() -> None:
    # 16,000 dots took 4.3 s before (a lazy value tried at every length).
    out = finishes(
        """
        from pipeline.redaction import redact_text
        print(redact_text("see ?a=" + "." * 300_000 + "b")[-3:])
        print(redact_text("at https://x.example/f?token=abc. Then ?api_key=" + "." * 200_000))
        """
    )
    first, second = out.splitlines()
    assert first == "..b"
    assert "abc" not in second and second.startswith("at https://x.example/f?token=")


def test_a_page_of_comments_is_screened_for_feed_links_in_linear_time() -> None:
    # 256 KB of comments took 2 s before; 8 MB would have taken about half an hour.
    out = finishes(
        """
        from pipeline.feeds import _visible
        page = b"<!--x-->" * 1_000_000 + b"<script>s</script><p>kept</p>"
        print(_visible(page).decode())
        """
    )
    assert out.strip().endswith("<p>kept</p>") and "<!--" not in out and "s</script" not in out


def _crowded_page(spans: int) -> bytes:
    words = " ".join(f"<span>w{n}</span>" for n in range(spans))
    paragraphs = "".join(f"<p>Paragraph {n}: {words} and <b>more</b>.</p>" for n in range(60))
    return f"<html><head><title>T</title></head><body><article><h1>H</h1>{paragraphs}</article></body></html>".encode()


def test_a_page_crowded_with_formatting_tags_is_flattened_before_extraction_and_reads_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trafilatura's search of a page's paragraph text takes time quadratic in its text
    nodes (a 1 MB page of prose with its bold and italics ran past the time limit)."""
    page = _crowded_page(60)  # 60 x 62 formatting tags, over the limit
    tree = lxml.html.document_fromstring(page)
    assert len(tree.xpath("//p//text()")) > 7000
    assert extract._flatten_crowded_inline(tree)
    assert len(tree.xpath("//p//text()")) == 60, "one text node per paragraph"
    assert tree.xpath("string(//p[1])").startswith("Paragraph 0: w0 w1")
    # A tag with attributes stays for trafilatura to judge: hidden text, an icon, a byline.
    words = " ".join(f"<b>w{n}</b>" for n in range(40))
    hidden = "".join(
        f"<p>Paragraph {n}: the delegations met in Beijing and agreed on {words} further talks."
        f"<span style='display:none'>HIDDEN-{n}</span> <span aria-hidden='true'>ICON-{n}</span>"
        f" <span class='byline author'>By Anna Lee</span></p>"
        for n in range(60)
    )
    crowded = f"<html><head><title>T</title></head><body><article><h1>H</h1>{hidden}</article></body></html>"
    assert extract._flatten_crowded_inline(lxml.html.document_fromstring(crowded))
    text = extract.extract_page(crowded.encode()).text
    assert text.count("Paragraph") == 60 and "w39" in text
    assert "HIDDEN" not in text and "ICON" not in text and "Anna Lee" not in text
    flattened = extract.extract_page(page)
    monkeypatch.setattr(extract, "MAX_FORMATTING_ELEMENTS", 10**9)
    as_it_was = extract.extract_page(page)
    assert flattened.text == as_it_was.text and flattened.text.count("Paragraph") == 60
    # An ordinary page keeps its tags.
    ordinary = lxml.html.document_fromstring(_crowded_page(5))
    assert not extract._flatten_crowded_inline(ordinary) and ordinary.xpath("count(//span)") == 300


def test_the_search_word_cache_keeps_no_more_than_a_term_needs_of_a_long_word() -> None:
    """The cache of index terms was keyed on whole words: a page of 100 KB "words" kept
    megabytes alive until the process ended."""

    def terms_of_long_words() -> list[str]:
        words = [f"{n:03d}" + "ж" * 100_000 for n in range(40)]  # 8 MB of text
        return [search.normalise_word(word) for word in words]

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        terms = terms_of_long_words()  # (the words are gone when it returns, unless kept)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(set(terms)) == 40 and all(len(term) <= search.MAX_TOKEN_CHARS for term in terms)
    assert kept < 1_000_000, f"{kept:,} bytes kept for 40 words"


def test_the_translation_evidence_caches_keep_no_article_text() -> None:
    """The caches of recent texts' numbers, weights and names were keyed on whole texts,
    so each kept up to 512 recent articles alive, a hostile page's megabytes among them."""
    from pathlib import Path

    from pipeline import crosslingual

    gazetteer = crosslingual.load_gazetteer(REPO_ROOT / Path("config/gazetteer.yaml"))

    def evidence_of_long_texts() -> list[tuple[frozenset[str], set[str]]]:
        texts = [
            f"Report {n}: Putin met Xi Jinping and signed {1000 + n} deals. " + "Talks went on. " * 14_000
            for n in range(30)
        ]
        return [(crosslingual._numbers_of(text, "en"), gazetteer.entities(text, "en")) for text in texts]

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        found = evidence_of_long_texts()  # (6 MB of text, gone when it returns unless kept)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert "1007" in found[7][0] and found[7][1] >= {"putin", "xi_jinping"}
    assert kept < 1_000_000, f"{kept:,} bytes kept for 30 texts"
    # (a text seen again is answered from the cache, by its digest)
    text = "Putin met Xi. " * 100
    assert gazetteer.entities(text, "en") == gazetteer.entities(text, "en") >= {"putin"}

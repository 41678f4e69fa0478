"""Digests: Block Kit limits, splitting into follow-ups, escaping, folding, sparklines."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest

from pipeline.digest import (
    Digest,
    DigestArticle,
    DigestChange,
    SeriesTotal,
    build_change_digest,
    build_summary_digest,
    escape_mrkdwn,
    latest_summary_period,
    render_plain,
    sparkline,
)
from tests.slack_server import block_kit_problems, utf16_length

NOW = datetime(2025, 5, 8, 7, 0, tzinfo=UTC)
WEB = "https://summitwatch.example.org"


@dataclass(frozen=True)
class FakeChange:
    series: str
    at: datetime
    direction: str
    count: int
    baseline: float
    explanation: str


def change(series: str = "watch:power_of_siberia_2", direction: str = "up", count: int = 8) -> FakeChange:
    return FakeChange(
        series,
        NOW,
        direction,
        count,
        0.02,
        f"{count} articles in the last 24 h after none in the previous 28 days (0.02 expected; p = 1e-12)",
    )


def trend(counts: list[int]) -> list[tuple[datetime, int]]:
    return [(NOW - timedelta(days=len(counts) - i), c) for i, c in enumerate(counts)]


def article(number: int, **overrides: object) -> DigestArticle:
    values: dict[str, object] = {
        "article_id": number,
        "title": f"Gazprom and CNPC agree on Power of Siberia 2 terms ({number})",
        "url": f"https://news.example.com/{number}",
        "source": "Reuters",
        "lang": "en",
        "evidence": "the Power of Siberia 2 pipeline through Mongolia",
        "copies": 0,
    }
    values.update(overrides)
    return DigestArticle(**values)  # type: ignore[arg-type]


def all_blocks_text(digest: Digest) -> str:
    return json.dumps([m.blocks for m in digest.messages], ensure_ascii=False)


def assert_within_limits(digest: Digest) -> None:
    for message in digest.messages:
        assert block_kit_problems(message.blocks) == []
        assert len(message.blocks) <= 50
        assert 0 < utf16_length(message.text) <= 3000
        for block in message.blocks:
            if block["type"] == "section":
                assert utf16_length(block["text"]["text"]) <= 3000
            if block["type"] == "header":
                assert utf16_length(block["text"]["text"]) <= 150
            if block["type"] == "context":
                assert all(utf16_length(element["text"]) <= 3000 for element in block["elements"])


# --- sparkline --------------------------------------------------------------------------


def test_sparkline_scales_to_the_largest_and_keeps_zero_lowest() -> None:
    assert sparkline([0, 1, 4, 8]) == "▁▂▅█"
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([5]) == "█"
    assert sparkline([]) == ""
    assert sparkline([1, 100])[0] == "▂"  # a little coverage is never drawn as none


# --- one change -------------------------------------------------------------------------


def test_change_digest_shows_counts_trend_articles_and_links() -> None:
    articles = [article(1, copies=3), article(2, lang="ru", source="РИА Новости", copies=1, evidence=None)]
    digest = build_change_digest(
        [DigestChange(change(), trend([0] * 12 + [1, 8]), articles)], web_base_url=WEB, generated_at=NOW
    )
    assert len(digest.messages) == 1
    assert_within_limits(digest)
    blocks = all_blocks_text(digest)
    assert digest.messages[0].blocks[0]["type"] == "header"
    assert "Power of Siberia 2" in digest.messages[0].blocks[0]["text"]["text"]
    assert "8 articles in the last 24 h" in blocks
    assert "▁▁▁▁▁▁▁▁▁▁▁▁▂█" in blocks
    assert "last 14 days, max 8 per day" in blocks
    assert "<https://news.example.com/1|Gazprom and CNPC agree on Power of Siberia 2 terms (1)>" in blocks
    assert "Reuters · en · +3 copies" in blocks
    assert "РИА Новости · ru · +1 copy" in blocks
    assert "> the Power of Siberia 2 pipeline through Mongolia" in blocks
    assert f"<{WEB}/articles?watch=power_of_siberia_2&amp;since=2025-05-01|" in blocks
    plain = render_plain(digest)
    assert "8 articles in the last 24 h" in plain
    assert "https://news.example.com/1" in plain
    assert "+3 copies" in plain
    assert f"{WEB}/articles?watch=power_of_siberia_2&since=2025-05-01" in plain


def test_a_change_reported_days_later_gets_a_dated_trend() -> None:
    earlier = NOW - timedelta(days=3)
    old = FakeChange(
        "topic:taiwan_asia",
        earlier,
        "down",
        0,
        10.0,
        "0 articles in the 4 days from 2025-05-01 06:00 to 2025-05-05 06:00 UTC against 2.5/day "
        "over the previous 28 days, at least 2.3/day in each half (10 expected; p = 4e-4)",
    )
    bins = [(earlier - timedelta(days=14 - i), 3 if i < 10 else 0) for i in range(14)]
    digest = build_change_digest([DigestChange(old, bins, [])], web_base_url=None, generated_at=NOW)
    plain = render_plain(digest)
    assert f"14 days to {earlier:%Y-%m-%d %H:%M} UTC, max 3 per day" in plain
    assert "last 14 days" not in plain
    assert "↓ Taiwan Asia (topic), down" in plain
    assert "0 articles in the 4 days from 2025-05-01 06:00" in plain
    assert "(no articles to show)" not in plain  # a fall has no new articles to list


def test_without_web_ui_there_is_no_web_link() -> None:
    digest = build_change_digest(
        [DigestChange(change(), trend([0, 8]), [])], web_base_url=None, generated_at=NOW
    )
    assert "summitwatch.example.org" not in all_blocks_text(digest)
    assert "/articles?" not in digest.text


def test_titles_and_urls_are_escaped_for_mrkdwn() -> None:
    hostile = article(
        1,
        title="Gas & oil: <!channel> talks > expectations | Reuters",
        url="https://news.example.com/a?b=1&c=<2>|3",
        source="A&B <Media>",
        evidence="<@U123> said *everything* & more",
    )
    digest = build_change_digest(
        [DigestChange(change(), trend([1]), [hostile])], web_base_url=None, generated_at=NOW
    )
    section = next(
        b["text"]["text"] for b in digest.messages[0].blocks if "news.example.com" in json.dumps(b)
    )
    assert "<!channel>" not in section
    assert "<@U123>" not in section
    assert "Gas &amp; oil: &lt;!channel&gt; talks &gt; expectations ¦ Reuters" in section
    assert "<https://news.example.com/a?b=1&amp;c=%3C2%3E%7C3|" in section
    assert "A&amp;B &lt;Media&gt;" in section
    assert "&lt;@U123&gt; said *everything* &amp; more" in section
    assert escape_mrkdwn("a<b>&c") == "a&lt;b&gt;&amp;c"
    # The fallback text is mrkdwn as well (notifications show it): escaped alike.
    fallback = digest.messages[0].text
    assert "<!channel>" not in fallback and "<@U123>" not in fallback and "&lt;!channel&gt;" in fallback
    assert "<" not in fallback.replace("&lt;", "")
    # The plain digest (files, the terminal) keeps the words as they are.
    assert "<!channel>" in digest.text


def test_non_web_urls_are_not_linked() -> None:
    digest = build_change_digest(
        [DigestChange(change(), trend([1]), [article(1, url="javascript:alert(1)")])],
        web_base_url=None,
        generated_at=NOW,
    )
    assert "javascript:" not in all_blocks_text(digest)
    assert "*Gazprom and CNPC agree" in all_blocks_text(digest)


# --- limits and splitting ---------------------------------------------------------------


def test_many_changes_with_long_titles_split_into_follow_ups_within_limits() -> None:
    long_title = "Сила Сибири 2 & <газ> " * 40
    changes = [
        DigestChange(
            change(series=f"topic:series_{n:02d}", direction="up" if n % 3 else "down", count=n + 3),
            trend(list(range(14))),
            [
                article(n * 10 + k, title=long_title, evidence="evidence & more " * 40, copies=k)
                for k in range(5)
            ],
        )
        for n in range(60)
    ]
    digest = build_change_digest(changes, web_base_url=WEB, generated_at=NOW)
    assert len(digest.messages) > 3
    assert_within_limits(digest)
    total = len(digest.messages)
    for number, message in enumerate(digest.messages[1:], start=2):
        first = message.blocks[0]
        assert first["type"] == "context"
        assert f"part {number} of {total}" in first["elements"][0]["text"]
    everything = all_blocks_text(digest)
    for n in range(60):
        assert f"Series {n:02d}" in everything  # every change made it into some message
    # The overview in the parent names all of them even though details overflow.
    parent = json.dumps(digest.messages[0].blocks, ensure_ascii=False)
    assert "Series 00" in parent
    assert "Series 59" in parent
    assert "Series 59" in digest.text


def test_a_long_title_is_clipped_between_words() -> None:
    title = "Переговоры о сотрудничестве России и Китая в энергетике продолжились " * 6
    digest = build_change_digest(
        [DigestChange(change(), trend([1, 2, 9]), [article(1, title=title)])],
        web_base_url=WEB,
        generated_at=NOW,
    )
    line = next(x for x in digest.text.splitlines() if x.lstrip("- ").startswith("Переговоры"))
    shown = line.lstrip("- ").split("…", 1)[0]
    assert shown and title.startswith(shown) and len(shown) < len(title)
    assert title[len(shown)] == " ", "cut at a space, not inside a word"
    # A text without spaces (Chinese) is cut where it must be.
    chinese = "中俄两国元首在北京举行会谈并签署联合声明" * 20
    digest = build_change_digest(
        [DigestChange(change(), trend([1, 2, 9]), [article(2, title=chinese)])],
        web_base_url=WEB,
        generated_at=NOW,
    )
    assert any(x.lstrip("- ").startswith("中俄两国元首") and "…" in x for x in digest.text.splitlines())


def test_a_long_series_label_is_clipped_in_the_header() -> None:
    label = "Power of Siberia 2 " * 20
    digest = build_change_digest(
        [DigestChange(change(), trend([1]), [])],
        web_base_url=None,
        generated_at=NOW,
        labels={"watch:power_of_siberia_2": label},
    )
    header = digest.messages[0].blocks[0]["text"]["text"]
    assert len(header) <= 150
    assert header.endswith("…")


def test_a_huge_single_change_still_fits() -> None:
    articles = [
        article(k, title="x" * 5000, evidence="y" * 5000, url="https://e.com/" + "z" * 3000)
        for k in range(40)
    ]
    digest = build_change_digest(
        [DigestChange(change(), trend([1] * 60), articles)], web_base_url=WEB, generated_at=NOW
    )
    assert_within_limits(digest)


def test_characters_outside_the_basic_plane_count_twice_as_slack_counts_them() -> None:
    # Emoji and rare CJK characters are two UTF-16 units each: a section of 3000 of them
    # in Python's count is 6000 in Slack's.
    wide = "😀𠀀" * 2500
    articles = [article(k, title=wide, evidence=wide, source=wide[:300]) for k in range(40)]
    changes = [
        DigestChange(change(series=f"topic:series_{n:02d}", count=n + 3), trend([1] * 30), articles)
        for n in range(12)
    ]
    for digest in (
        build_change_digest(changes[:1], web_base_url=WEB, generated_at=NOW),
        build_change_digest(changes, web_base_url=WEB, generated_at=NOW, labels={"topic:series_00": wide}),
    ):
        assert_within_limits(digest)
    # A clipped text never ends in half a character.
    header = build_change_digest(
        changes[:1], web_base_url=None, generated_at=NOW, labels={"topic:series_00": wide}
    )
    assert header.messages[0].blocks[0]["text"]["text"].endswith("…")


def test_a_tight_budget_moves_change_sections_into_follow_ups() -> None:
    changes = [DigestChange(change(series=f"topic:t{n}"), trend([1, 2]), [article(n)]) for n in range(4)]
    digest = build_change_digest(changes, web_base_url=None, generated_at=NOW, message_budget=1500)
    assert len(digest.messages) >= 3
    assert_within_limits(digest)
    # A follow-up never starts with a divider.
    assert all(m.blocks[1]["type"] != "divider" for m in digest.messages[1:])


# --- identity ---------------------------------------------------------------------------


def test_digest_key_names_the_changes_and_content_hash_the_messages() -> None:
    first = DigestChange(change("watch:power_of_siberia_2"), trend([1]), [article(1)])
    second = DigestChange(change("topic:energy"), trend([1]), [article(2)])
    a = build_change_digest([first, second], web_base_url=None, generated_at=NOW)
    b = build_change_digest([second, first], web_base_url=None, generated_at=NOW)
    assert a.digest_key == b.digest_key
    assert a.digest_key.startswith("changes:")
    assert a.content_hash == b.content_hash
    retitled = DigestChange(first.change, first.trend_bins, [article(1, title="Updated title")])
    c = build_change_digest([retitled, second], web_base_url=None, generated_at=NOW)
    assert c.digest_key == a.digest_key
    assert c.content_hash != a.content_hash
    restored = Digest.from_json(json.loads(json.dumps(a.to_json())))
    assert restored == a
    assert restored.content_hash == a.content_hash


def test_an_empty_change_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_change_digest([], web_base_url=None, generated_at=NOW)


# --- summary ----------------------------------------------------------------------------


def test_summary_digest_lists_series_changes_and_top_articles() -> None:
    totals = [
        SeriesTotal("topic:energy", 12, 9, trend([3, 4, 12])),
        SeriesTotal("topic:military", 30, 31, trend([20, 31, 30])),
        SeriesTotal("watch:arctic_route", 0, 2),
        SeriesTotal("watch:peace_plan", 0, 0),
    ]
    digest = build_summary_digest(
        totals,
        [article(1, copies=2)],
        period_start=NOW - timedelta(days=1),
        period_end=NOW,
        web_base_url=WEB,
        changes=[change()],
    )
    assert digest.kind == "summary"
    assert digest.digest_key == f"summary:{(NOW - timedelta(days=1)).isoformat()}/{NOW.isoformat()}"
    assert_within_limits(digest)
    header = digest.messages[0].blocks[0]["text"]["text"]
    assert header == "Daily coverage summary: 7 May 2025"
    text = digest.text
    assert text.index("Military") < text.index("Energy")  # busiest first
    assert "Energy (topic): 12 (previous period 9) ▃▄█" in text
    assert "No new coverage: Arctic Route, Peace Plan" in text
    assert "8 articles in the last 24 h" in text
    assert "+2 copies" in text
    assert "2025-05-07 07:00 UTC – 2025-05-08 07:00 UTC · 42 new articles" in text, "the series added up"
    counted = build_summary_digest(
        totals, [], period_start=NOW - timedelta(days=1), period_end=NOW, web_base_url=WEB, article_count=35
    )
    assert "· 35 new articles" in counted.text, "distinct articles, when the caller counted them"


def test_a_summary_links_each_series_to_the_articles_it_counted() -> None:
    # 12 articles from 07:00 to 07:00: the link lists those, not the whole first day and
    # every day since.
    digest = build_summary_digest(
        [SeriesTotal("topic:energy", 12, 9)],
        [],
        period_start=NOW - timedelta(days=1),
        period_end=NOW,
        web_base_url=WEB,
    )
    window = "since=2025-05-07T07%3A00%3A00Z&amp;until=2025-05-08T06%3A59%3A59.999999Z"
    assert f"<{WEB}/articles?topic=energy&amp;{window}|Energy> (topic): 12" in all_blocks_text(digest)
    midnight = NOW.replace(hour=0)
    digest = build_summary_digest(
        [SeriesTotal("topic:energy", 12, 9)],
        [],
        period_start=midnight - timedelta(days=1),
        period_end=midnight,
        web_base_url=WEB,
    )
    assert (
        f"<{WEB}/articles?topic=energy&amp;since=2025-05-07&amp;until=2025-05-07|Energy>"
        in all_blocks_text(digest)
    )


def test_big_summary_stays_within_limits() -> None:
    totals = [SeriesTotal(f"topic:t{n}", n, n, trend(list(range(30)))) for n in range(200)]
    articles = [article(n, title="t" * 400) for n in range(100)]
    digest = build_summary_digest(
        totals, articles, period_start=NOW - timedelta(days=7), period_end=NOW, web_base_url=WEB
    )
    assert len(digest.messages) > 1
    assert_within_limits(digest)
    assert digest.messages[0].blocks[0]["text"]["text"] == "Weekly coverage summary: week to 8 May 2025"


@pytest.mark.parametrize(
    ("now", "every", "expected_end"),
    [
        (datetime(2025, 5, 8, 7, 0, tzinfo=UTC), timedelta(days=1), datetime(2025, 5, 8, 7, 0, tzinfo=UTC)),
        (datetime(2025, 5, 8, 6, 59, tzinfo=UTC), timedelta(days=1), datetime(2025, 5, 7, 7, 0, tzinfo=UTC)),
        (datetime(2025, 5, 8, 12, 0, tzinfo=UTC), timedelta(days=7), datetime(2025, 5, 5, 7, 0, tzinfo=UTC)),
        (
            datetime(2025, 5, 8, 12, 0, tzinfo=UTC),
            timedelta(hours=12),
            datetime(2025, 5, 8, 7, 0, tzinfo=UTC),
        ),
    ],
)
def test_latest_summary_period(now: datetime, every: timedelta, expected_end: datetime) -> None:
    start, end = latest_summary_period(now, every=every, at=time(7, 0))
    assert end == expected_end
    assert start == end - every
    assert end.weekday() == 0 or every != timedelta(days=7)  # weekly summaries end on Mondays


def _long_labels(count: int) -> dict[str, str]:
    """Long watch-item labels full of emoji and of characters mrkdwn escapes."""
    return {f"watch:item_{n:02d}": f"Taiwan & Asia <{n:02d}> 🇹🇼🇯🇵🇰🇷 " * 4 for n in range(count)}


def assert_no_cut_escape(text: str) -> None:
    """Every "&" opens a whole escaped character: nothing was cut inside "&amp;"."""
    assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, text[-80:]


def test_an_overlong_list_is_cut_on_whole_entries_and_says_how_many_are_left_out() -> None:
    labels = _long_labels(60)
    totals = [SeriesTotal(series, 0, 0) for series in labels]
    summary = build_summary_digest(
        totals, [], period_start=NOW - timedelta(days=1), period_end=NOW, web_base_url=None, labels=labels
    )
    assert_within_limits(summary)
    sections = [b["text"]["text"] for m in summary.messages for b in m.blocks if b["type"] == "section"]
    (silent,) = [text for text in sections if "No new coverage" in text]
    listed = silent.split("_No new coverage:_ ", 1)[1]
    *names, more = listed.split(", ")
    assert more == f"… +{60 - len(names)} more" and 5 < len(names) < 60
    assert names == [escape_mrkdwn(label) for label in labels.values()][: len(names)]
    for message in summary.messages:
        assert_no_cut_escape(message.text)
        for text in sections:
            assert_no_cut_escape(text)
    assert summary.messages[0].text.endswith("more line")  # the fallback: whole lines
    assert "No new coverage: " + ", ".join(labels.values()) in render_plain(summary)  # the file: all

    from pipeline.digest import DigestStory

    changes = [DigestChange(change(series), trend([0, 5]), []) for series in labels]
    stories = [DigestStory([article(1)], list(labels))]
    digest = build_change_digest(changes, web_base_url=None, generated_at=NOW, labels=labels, stories=stories)
    assert_within_limits(digest)
    (story,) = [
        b["text"]["text"]
        for m in digest.messages
        for b in m.blocks
        if b["type"] == "section" and b["text"]["text"].startswith("*Story 1")
    ]
    moved = re.split(r"(?<!&amp)(?<!&lt)(?<!&gt); ", story.split("\nMoved: ", 1)[1])
    assert moved[-1] == f"… +{60 - len(moved) + 1} more"
    assert all(entry.startswith(escape_mrkdwn("Taiwan & Asia <")) for entry in moved[:-1])
    assert_no_cut_escape(story)
    for message in digest.messages:
        assert_no_cut_escape(message.text)


# --- stories ------------------------------------------------------------------------------


def test_a_story_that_moved_two_series_is_shown_once_with_both() -> None:
    from pipeline.digest import DigestStory

    shared = article(1, also_in=[("ru", "https://ru.example/1"), ("zh", None)])
    changes = [
        DigestChange(change("topic:ukraine"), trend([0, 5]), [shared, article(2)]),
        DigestChange(change("topic:world_order", count=4), trend([0, 4]), [shared]),
    ]
    stories = [DigestStory([shared, article(2)], ["topic:ukraine", "topic:world_order"])]
    digest = build_change_digest(
        changes,
        web_base_url=WEB,
        generated_at=NOW,
        labels={"topic:world_order": "World order"},
        stories=stories,
    )
    assert_within_limits(digest)
    text = render_plain(digest)
    blocks = all_blocks_text(digest)
    for shown in (text, blocks):
        assert shown.count("https://news.example.com/1") == 1
        assert shown.count("https://news.example.com/2") == 1
    assert "1 story behind these changes" in text
    assert "Moved: Ukraine ↑ 8 vs 0.02 expected; World order ↑ 4 vs 0.02 expected" in text
    assert "also in: ru https://ru.example/1, zh" in text
    assert "also in: <https://ru.example/1|ru>, zh" in blocks
    # Without stories the old layout lists articles under each change.
    per_change = render_plain(build_change_digest(changes, web_base_url=WEB, generated_at=NOW))
    assert per_change.count("https://news.example.com/1") == 2


def test_a_series_that_changed_twice_shows_each_story_its_own_change() -> None:
    from pipeline.digest import DigestStory

    burst = FakeChange("topic:energy", NOW - timedelta(days=6), "up", 9, 1.2, "9 articles in the 24 h …")
    silence = FakeChange("topic:energy", NOW, "down", 0, 12.0, "0 articles in the 3 days …")
    changes = [DigestChange(burst, trend([0, 9]), [article(1)]), DigestChange(silence, trend([3, 0]), [])]
    digest = build_change_digest(
        changes,
        web_base_url=None,
        generated_at=NOW,
        stories=[DigestStory([article(1)], ["topic:energy"], [burst])],
    )
    assert digest.text.startswith("2 coverage changes in 1 series (1 up, 1 down)\n")
    assert "Moved: Energy ↑ 9 vs 1.2 expected\n" in digest.text
    # A story that does not say which of them it moved names both.
    digest = build_change_digest(
        changes, web_base_url=None, generated_at=NOW, stories=[DigestStory([article(1)], ["topic:energy"])]
    )
    assert "Moved: Energy ↑ 9 vs 1.2 expected, ↓ 0 vs 12 expected\n" in digest.text


def test_credentials_in_article_links_and_the_web_base_url_are_redacted() -> None:
    secret_article = article(
        1,
        url="https://paywall.example.com/story?id=7&key=sub-KEY-4242",
        title=None,
        also_in=[("ru", "https://paywall.example.com/ru/7?key=sub-KEY-4242")],
    )
    web = "https://viewer:pw-0099@summitwatch.example.org"
    for digest in (
        build_change_digest(
            [DigestChange(change(), trend([1, 8]), [secret_article])], web_base_url=web, generated_at=NOW
        ),
        build_summary_digest(
            [SeriesTotal("topic:energy", 3, 1)],
            [secret_article],
            period_start=NOW - timedelta(days=1),
            period_end=NOW,
            web_base_url=web,
        ),
    ):
        everything = all_blocks_text(digest) + digest.text + json.dumps([m.text for m in digest.messages])
        assert "sub-KEY-4242" not in everything
        assert "pw-0099" not in everything
        assert "viewer" not in everything
        assert "paywall.example.com/story?id=7&amp;key=REDACTED" in all_blocks_text(digest)
        assert "https://paywall.example.com/story?id=7&key=REDACTED" in digest.text
        assert "https://REDACTED@summitwatch.example.org/articles" in digest.text


@pytest.mark.parametrize(
    ("unit", "whole"),
    [
        ("🇷🇺🇨🇳 ", lambda cut: sum("\U0001f1e6" <= c <= "\U0001f1ff" for c in cut) % 2 == 0),
        (
            "👨‍👩‍👧‍👦",
            lambda cut: cut.count("\U0001f468") == cut.count("\U0001f466") and not cut.endswith("\u200d"),
        ),
        ("E\u0323\u0301", lambda cut: cut.count("E") == cut.count("\u0301")),  # a letter, two marks
    ],
    ids=["flags", "family", "marks"],
)
def test_a_clipped_title_keeps_whole_what_reads_as_one_character(
    unit: str, whole: Callable[[str], bool]
) -> None:
    """Slack's limits cut titles between characters, never inside a flag's two letters, an
    emoji joined from several, or a letter and its marks (a lone half of a flag shows as a
    letter in a box)."""
    from pipeline.digest import _clip, slack_length

    title = unit * 80
    for limit in range(40, 260):
        clipped = _clip(title, limit)
        assert slack_length(clipped) <= limit
        assert whole(clipped.removesuffix("…")), (limit, clipped[-6:])

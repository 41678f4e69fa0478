"""Coverage series and change detection: bins, the detector's promises, its configuration."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from pipeline.coverage import (
    Change,
    ChangeMemo,
    DetectorConfig,
    DetectorParams,
    bin_counts,
    coverage_json,
    detect_changes,
    floor_to_bin,
    load_detector_config,
    lower_tail_probability,
    parse_detector_config,
    series_name,
    unreported_changes,
    upper_tail_probability,
)
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
START = datetime(2025, 3, 3, tzinfo=UTC)
DAY = timedelta(days=1)
BIN = timedelta(hours=6)
PARAMS = DetectorParams()


def daily_bins(daily: list[int], *, start: datetime = START) -> list[tuple[datetime, int]]:
    """6-hour bins holding each day's articles in its second bin (06:00-12:00)."""
    bins = []
    for day, count in enumerate(daily):
        for quarter in range(4):
            bins.append((start + day * DAY + quarter * BIN, count if quarter == 1 else 0))
    return bins


def spread_bins(daily: list[float], rng: random.Random) -> list[tuple[datetime, int]]:
    """Poisson counts per 6-hour bin at the given daily rates."""
    bins = []
    for day, rate in enumerate(daily):
        for quarter in range(4):
            bins.append((START + day * DAY + quarter * BIN, poisson(rng, rate / 4)))
    return bins


def poisson(rng: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def detect(
    bins: list[tuple[datetime, int]],
    params: DetectorParams = PARAMS,
    *,
    history_start: datetime = START,
    series: str = "watch:power_of_siberia_2",
) -> list[Change]:
    now = bins[-1][0] + BIN + DAY
    return detect_changes(series, bins, params, history_start=history_start, now=now)


# --- bins -------------------------------------------------------------------------------


def test_bin_counts_are_aligned_complete_and_clipped() -> None:
    stamps = [
        datetime(2025, 3, 3, 1, 0, tzinfo=UTC),
        datetime(2025, 3, 3, 5, 59, tzinfo=UTC),
        datetime(2025, 3, 3, 13, 0, tzinfo=UTC),
        datetime(2025, 3, 3, 13, 0),  # naive: taken as UTC
        datetime(2025, 3, 2, 23, 0, tzinfo=UTC),  # before the range
        datetime(2025, 3, 4, 0, 0, tzinfo=UTC),  # at the end: excluded
    ]
    bins = bin_counts(
        stamps, start=datetime(2025, 3, 3, 2, tzinfo=UTC), end=datetime(2025, 3, 4, tzinfo=UTC), bin_size=BIN
    )
    assert [b[0].hour for b in bins] == [0, 6, 12, 18]  # start floored to the grid
    assert [b[1] for b in bins] == [2, 0, 2, 0]  # empty bins listed: silence is data
    assert floor_to_bin(datetime(2025, 3, 3, 17, 59, tzinfo=UTC), BIN) == datetime(2025, 3, 3, 12, tzinfo=UTC)
    assert bin_counts([], start=START, end=START, bin_size=BIN) == []


def test_coverage_json_has_the_cli_contract_shape() -> None:
    bins = daily_bins([0] * 35 + [8])
    changes = detect(bins)
    line = coverage_json("watch:power_of_siberia_2", bins, changes)
    assert line["series"] == "watch:power_of_siberia_2"
    assert line["bins"][0] == [START.isoformat(), 0]
    assert {"at", "direction", "count", "baseline", "explanation"} <= set(line["changes"][0])
    assert Change.from_json("watch:power_of_siberia_2", line["changes"][0]).key == changes[0].key


def test_series_names() -> None:
    assert series_name("topic", "energy") == "topic:energy"
    with pytest.raises(ValueError, match="series name"):
        series_name("watch", "Power Of Siberia")


# --- the detector's promises ------------------------------------------------------------


def test_burst_after_weeks_of_silence_fires_once_with_numbers() -> None:
    changes = detect(daily_bins([0] * 40 + [8] + [0] * 10))
    assert len(changes) == 1
    change = changes[0]
    assert change.direction == "up"
    assert change.count == 8
    assert change.at == START + 40 * DAY + 12 * timedelta(hours=1)  # the end of the bin that held them
    assert change.baseline < 0.05
    # Judged later, the change names its window's dates rather than "the last 24 h".
    assert change.explanation.startswith(
        "8 articles in the 24 h from 2025-04-11 12:00 to 2025-04-12 12:00 UTC "
        "after none in the previous 28 days"
    )
    assert "expected" in change.explanation
    assert change.score > 6


def test_only_a_change_at_the_latest_judged_bin_says_in_the_last() -> None:
    bins = daily_bins([0] * 40 + [8] + [0] * 10)
    burst_end = START + 40 * DAY + 12 * timedelta(hours=1)
    current = detect_changes("watch:x", bins, PARAMS, history_start=START, now=burst_end + timedelta(hours=1))
    assert current[0].explanation.startswith("8 articles in the last 24 h after none in the previous 28 days")
    # Six hours on, the next bin has been judged: the same change, worded with its dates.
    later = detect_changes("watch:x", bins, PARAMS, history_start=START, now=burst_end + timedelta(hours=7))
    assert later[0].key == current[0].key
    assert later[0].explanation.startswith(
        "8 articles in the 24 h from 2025-04-11 12:00 to 2025-04-12 12:00 UTC"
    )
    assert "in the last" not in later[0].explanation


def test_one_isolated_article_after_weeks_of_nothing_is_not_a_change() -> None:
    assert detect(daily_bins([0] * 40 + [1] + [0] * 20)) == []
    # Nor a few scattered over weeks.
    assert detect(daily_bins([0] * 40 + [1] + [0] * 6 + [1] + [0] * 9 + [1] + [0] * 10)) == []


def test_explanation_quotes_baseline_rate_and_window() -> None:
    rng = random.Random(7)
    bins = spread_bins([4.0] * 40 + [30.0] + [4.0] * 5, rng)
    ups = [c for c in detect(bins, series="topic:military") if c.direction == "up"]
    assert len(ups) == 1
    assert START + 40 * DAY < ups[0].at <= START + 41 * DAY
    # Judged as soon as the bin settled, the change is the latest: "in the last 24 h".
    now = ups[0].at + PARAMS.settle
    changes = detect_changes("topic:military", bins, PARAMS, history_start=START, now=now)
    changes = [c for c in changes if c.direction == "up"]
    assert [c.key for c in changes] == [ups[0].key]
    text = changes[0].explanation
    assert f"{changes[0].count} articles in the last 24 h" in text
    assert "/day over the previous 28 days" in text
    assert f"{changes[0].baseline:.0f} expected" in text or f"{changes[0].baseline:.1f} expected" in text


def test_step_up_is_reported_once_not_again_as_the_windows_fill() -> None:
    rng = random.Random(11)
    changes = detect(spread_bins([2.0] * 40 + [6.0] * 30, rng), series="topic:military")
    ups = [c for c in changes if c.direction == "up"]
    assert len(ups) == 1
    assert START + 40 * DAY <= ups[0].at <= START + 46 * DAY


def test_slow_climb_is_detected() -> None:
    # 1/day rising linearly to 5/day over three weeks: never a spike on any one day.
    ramp = [1.0 + 4.0 * day / 21 for day in range(21)]
    detected = 0
    for seed in range(5):
        changes = detect(
            spread_bins([1.0] * 40 + ramp + [5.0] * 10, random.Random(seed)), series="topic:energy"
        )
        ups = [c for c in changes if c.direction == "up" and c.at >= START + 40 * DAY]
        detected += bool(ups)
        assert len(ups) <= 2  # possibly once more if it keeps climbing past the first level
        assert all(c.window > DAY for c in ups[:1]) or ups[0].count >= 6
    assert detected >= 4


def test_thread_going_quiet_is_a_fall() -> None:
    changes = detect(daily_bins([4] * 40 + [0] * 20), series="topic:energy")
    downs = [c for c in changes if c.direction == "down"]
    assert len(downs) == 1
    assert START + 40 * DAY < downs[0].at <= START + 44 * DAY
    assert downs[0].count == 0
    assert "at least 4.0/day in each half" in downs[0].explanation


def news_like_bins(rate: float, days: int, rng: random.Random, *, cv: float) -> list[tuple[datetime, int]]:
    """Poisson counts at ``rate`` per day times a Gamma day factor (mean 1, this CV), with
    weekends at half the weekday level: bursty coverage with a weekly rhythm."""
    daily = []
    for day in range(days):
        weekday = (START + day * DAY).weekday()
        daily.append(rate * rng.gammavariate(1 / cv**2, cv**2) * (0.5 if weekday >= 5 else 1.2))
    return spread_bins(daily, rng)


def falls(bins: list[tuple[datetime, int]], params: DetectorParams = PARAMS) -> list[Change]:
    return [c for c in detect(bins, params, series="topic:taiwan_asia") if c.direction == "down"]


SILENT_FROM = START + 42 * DAY


def test_thread_at_two_and_a_half_a_day_going_silent_is_reported_within_four_days() -> None:
    # Six weeks of Poisson coverage at 2.5/day, then four silent days (10 expected).
    reported, delays = 0, []
    for seed in range(20):
        downs = falls(spread_bins([2.5] * 42 + [0.0] * 4, random.Random(seed)))
        in_time = [c for c in downs if SILENT_FROM < c.at <= SILENT_FROM + 4 * DAY]
        reported += bool(in_time)
        delays += [(c.at - SILENT_FROM) / DAY for c in in_time[:1]]
        assert all(c.count == 0 for c in in_time)
    # The benchmark measures about 97 % at this rate; the trend windows alone caught 9 of these 20.
    assert reported >= 18
    assert max(delays) <= 4


def test_silence_reads_as_zero_in_the_last_days_against_the_rate() -> None:
    rng = random.Random(5)
    bins = spread_bins([2.5] * 42 + [0.0] * 6, rng)
    first = falls(bins)[0]
    assert first.count == 0
    assert first.window >= 3 * DAY  # no silence shorter than min_silence is tested
    current = detect_changes(
        "topic:taiwan_asia", bins, PARAMS, history_start=START, now=first.at + PARAMS.settle
    )
    text = next(c for c in current if c.direction == "down").explanation
    days = first.window / DAY
    assert text.startswith(f"0 articles in the last {round(days, 1):g} days against ")
    assert f"{first.baseline_rate:.1f}/day over the previous 28 days" in text
    assert f"{first.baseline:.1f} expected" in text or f"{first.baseline:.0f} expected" in text
    # The expected count is a baseline rate (the whole window's or its quieter half's)
    # over the silent span, and silence needs at least ln(3 / 0.005) of it.
    assert math.log(3 / PARAMS.significance) <= first.baseline <= 1.05 * first.baseline_rate * days


def test_a_long_silence_is_one_fall_and_a_later_one_is_another() -> None:
    steady = [2, 3] * 21
    assert len(falls(daily_bins(steady + [0] * 20))) == 1  # not again as the 7-day window fills
    # Coverage comes back for 20 days and stops again: a new silence, reported as
    # promptly as the first although the first one's level (zero) still stands.
    twice = falls(daily_bins(steady + [0] * 5 + [2, 3] * 10 + [0] * 7))
    assert len(twice) == 2
    second_silence = START + (42 + 5 + 20) * DAY
    assert second_silence < twice[1].at <= second_silence + 4 * DAY


def test_sparse_series_going_silent_is_not_a_fall() -> None:
    for seed in range(10):
        assert falls(spread_bins([0.3] * 42 + [0.0] * 21, random.Random(seed))) == []
    # Even with the minimum rate lowered, a sparse silence needs ~6.4 expected articles.
    params = dataclasses.replace(PARAMS, min_drop_rate=0.0)
    assert falls(daily_bins([1, 0, 0] * 14 + [0] * 10), params) == []


def test_busy_series_with_ordinary_noise_reports_no_silence() -> None:
    for seed in range(10):
        assert falls(spread_bins([2.5] * 120, random.Random(100 + seed))) == []


def test_bursty_noise_with_a_weekly_rhythm_rarely_fires_falls() -> None:
    # Day factor with CV 0.6 and weekends at 40 % of weekdays: many quiet weekends. The
    # estimated over-dispersion and the 3-day minimum keep silences from firing on them;
    # with neither (Poisson model, silences from 6 h) the same streams fire far more often.
    streams = [news_like_bins(3.0, 120, random.Random(200 + seed), cv=0.6) for seed in range(10)]
    shipped = sum(len(falls(bins)) for bins in streams)
    naive = dataclasses.replace(
        PARAMS, estimate_dispersion=False, overdispersion=0.0, min_silence=timedelta(hours=6)
    )
    naive_count = sum(len(falls(bins, naive)) for bins in streams)
    without_silence = sum(
        len(falls(bins, dataclasses.replace(PARAMS, report_silence=False))) for bins in streams
    )
    assert shipped <= without_silence + 2  # the silence test adds next to nothing here
    assert shipped <= 8  # ten series over four months
    assert naive_count >= 3 * shipped


# Articles per day per series in a replayed installation; Taiwan & Asia falls silent.
REPLAY_RATES = {
    "topic:diplomacy": 6.0,
    "topic:ukraine": 4.0,
    "topic:energy": 3.0,
    "topic:trade_finance": 3.0,
    "topic:taiwan_asia": 2.5,
    "topic:military": 2.0,
    "topic:world_order": 2.0,
    "topic:middle_east": 1.0,
    "topic:technology": 1.0,
    "topic:people_culture": 0.8,
    "watch:peace_plan": 0.5,
    "watch:power_of_siberia_2": 0.3,
    "watch:yuan_settlement": 0.3,
    "watch:joint_exercises": 0.2,
    "watch:arctic_route": 0.1,
}


def replay(seed: int, *, days: int = 46, silent_from: int = 42) -> dict[str, list[tuple[datetime, int]]]:
    """Six weeks of every series (Poisson, weekends at 60 %), Taiwan & Asia silent at the end."""
    rng = random.Random(seed)
    streams = {}
    for series, rate in REPLAY_RATES.items():
        daily = [
            0.0
            if series == "topic:taiwan_asia" and day >= silent_from
            else rate * (0.6 if (START + day * DAY).weekday() >= 5 else 1.16)
            for day in range(days)
        ]
        streams[series] = spread_bins(daily, rng)
    return streams


def test_replayed_installation_reports_the_silent_thread_and_little_else() -> None:
    config = load_detector_config(REPO / "config" / "digest.yaml")
    reported, rises_elsewhere, falls_elsewhere = 0, [], 0
    for seed in range(5):
        streams = replay(seed)
        now = START + 46 * DAY + timedelta(hours=1)
        changes = {
            series: detect_changes(series, bins, config.params_for(series), history_start=START, now=now)
            for series, bins in streams.items()
        }
        silent = [c for c in changes.pop("topic:taiwan_asia") if c.at > SILENT_FROM]
        if silent:
            assert [c.direction for c in silent] == ["down"]
            assert silent[0].at <= SILENT_FROM + 4 * DAY
            reported += 1
        rises_elsewhere.append(sum(c.direction == "up" for cs in changes.values() for c in cs))
        falls_elsewhere += sum(c.direction == "down" for cs in changes.values() for c in cs)
    assert reported >= 4
    # Rises elsewhere are the rise test's own false alarms (no rise is tested differently
    # for this); the benchmark's replay measures at most two in 93 % of installations.
    assert sum(r <= 2 for r in rises_elsewhere) >= 4
    assert falls_elsewhere <= 1


def test_end_of_a_one_off_spike_is_not_a_fall() -> None:
    changes = detect(daily_bins([2] * 40 + [40, 35, 30] + [2] * 20), series="topic:energy")
    assert [c.direction for c in changes] == ["up"]


def test_drops_can_be_switched_off_per_series() -> None:
    params = dataclasses.replace(PARAMS, report_drops=False)
    assert detect(daily_bins([4] * 40 + [0] * 20), params) == []


def test_pure_noise_gives_few_false_alarms() -> None:
    alarms = 0
    days = 365
    for number, rate in enumerate((0.3, 1.0, 3.0, 10.0)):
        alarms += len(detect(spread_bins([rate] * days, random.Random(100 + number)), series="topic:energy"))
    # Four series-years; the benchmark measures about 0.05 false alarms per 30 days.
    assert alarms <= 4


def test_cooldown_and_reference_level() -> None:
    # A bigger burst one day after the first is the same event (cooldown).
    assert len(detect(daily_bins([0] * 40 + [8, 30] + [0] * 10))) == 1
    # Five days later, a burst no bigger than the first is not news (reference level)...
    assert len(detect(daily_bins([0] * 40 + [8, 0, 0, 0, 0, 8] + [0] * 10))) == 1
    # ...but a much bigger one is, and says what it beat.
    changes = detect(daily_bins([0] * 40 + [8, 0, 0, 0, 0, 40] + [0] * 10))
    assert len(changes) == 2
    assert "above the 8.0/day (8 in 24 h) that raised the alert of" in changes[1].explanation


def test_warm_up_counts_from_the_system_history_not_the_series() -> None:
    early = daily_bins([0] * 3 + [8] + [0] * 5)
    assert detect(early) == []  # the system has only three days of history
    # Bins that reach back before history_start do not count as history either.
    history_start = START + 30 * DAY
    assert detect(daily_bins([0] * 33 + [8] + [0] * 3), history_start=history_start) == []
    # A series silent since the first poll is a zero baseline, not a missing one.
    assert len(detect(daily_bins([0] * 10 + [8] + [0] * 3))) == 1


def test_only_settled_bins_are_judged_and_replay_is_stable() -> None:
    bins = daily_bins([0] * 40 + [8] + [0] * 10)
    burst_end = START + 40 * DAY + 12 * timedelta(hours=1)
    just_before = detect_changes(
        "watch:x", bins, PARAMS, history_start=START, now=burst_end + timedelta(minutes=30)
    )
    assert just_before == []  # the bin ended less than `settle` ago
    settled = detect_changes("watch:x", bins, PARAMS, history_start=START, now=burst_end + timedelta(hours=1))
    later = detect_changes("watch:x", bins, PARAMS, history_start=START, now=START + 60 * DAY)
    # Replaying later gives the same change at the same time; only "the last 24 h" has
    # become the window's dates.
    assert [dataclasses.replace(c, explanation="") for c in settled] == [
        dataclasses.replace(c, explanation="") for c in later
    ]
    assert len(later) == 1
    assert later == detect_changes("watch:x", bins, PARAMS, history_start=START, now=START + 90 * DAY)


def test_the_memo_answers_as_detection_does_for_every_input_it_is_asked() -> None:
    """What the web UI keeps between requests is what detection would answer now: a moment
    in the same judged bin reuses it, while the next bin, other counts, other parameters,
    another history start or another series are detected again."""
    memo = ChangeMemo(size=4)
    bins = daily_bins([0] * 40 + [8] + [0] * 10)
    burst_end = START + 40 * DAY + 12 * timedelta(hours=1)
    quieter = [(start, 1 if count else 0) for start, count in bins]
    tighter = dataclasses.replace(PARAMS, min_count=9)
    asked = [
        ("watch:x", bins, PARAMS, START, burst_end + timedelta(minutes=30)),  # not yet settled
        ("watch:x", bins, PARAMS, START, burst_end + timedelta(hours=1)),  # "in the last 24 h"
        ("watch:x", bins, PARAMS, START, burst_end + timedelta(hours=6, minutes=59)),  # same judged bin
        ("watch:x", bins, PARAMS, START, burst_end + timedelta(hours=7)),  # the next: worded with dates
        ("watch:x", quieter, PARAMS, START, burst_end + timedelta(hours=7)),
        ("watch:x", bins, tighter, START, burst_end + timedelta(hours=7)),
        ("watch:x", bins, PARAMS, START + 35 * DAY, burst_end + timedelta(hours=7)),  # still warming up
        ("topic:energy", bins, PARAMS, START, burst_end + timedelta(hours=7)),
    ]
    answers = []
    for _ in range(2):  # the second round from what is kept, where it still is
        for series, these, params, started, now in asked:
            expected = detect_changes(series, these, params, history_start=started, now=now)
            found = memo.detect(series, these, params, history_start=started, now=now)
            assert found == expected, (series, now)
            answers.append(found)
    assert len(memo) == 4  # bounded
    assert answers[0] == [] and len(answers[1]) == 1
    assert "in the last 24 h" in answers[1][0].explanation == answers[2][0].explanation
    assert "in the last" not in answers[3][0].explanation
    assert answers[4] == [] and answers[5] == [] and answers[6] == []
    assert answers[7][0].series == "topic:energy"


def test_unreported_changes_treat_a_shifted_detection_as_the_same_event() -> None:
    change = detect(daily_bins([0] * 40 + [8] + [0] * 10))[0]
    config = DetectorConfig()
    shifted = (change.series, change.at - BIN, "up")
    assert unreported_changes([change], [shifted], config) == []
    assert unreported_changes([change], [(change.series, change.at, "down")], config) == [change]
    assert unreported_changes([change], [], config) == [change]


def test_a_reported_change_stands_for_the_nearest_detection_only() -> None:
    # Reported at 06:00; a back-fill moved that event to 00:00, and another burst came a
    # cooldown after 00:00, less than a cooldown after 06:00: that one is not reported.
    config = DetectorConfig()
    reported_at = datetime(2025, 5, 6, 6, 0, tzinfo=UTC)
    moved, new = (
        Change("topic:energy", at, "up", count, 0.1, "", 5.0)
        for at, count in ((reported_at - BIN, 3), (reported_at - BIN + 2 * DAY, 30))
    )
    assert unreported_changes([moved, new], [("topic:energy", reported_at, "up")], config) == [new]
    assert unreported_changes([new], [("topic:energy", reported_at, "up")], config) == []


def test_bins_must_be_contiguous() -> None:
    bins = daily_bins([0] * 10)
    del bins[5]
    with pytest.raises(ValueError, match="contiguous"):
        detect(bins)


# --- tail probabilities -----------------------------------------------------------------


def poisson_upper(x: int, mean: float) -> float:
    return 1.0 - sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(x))


@pytest.mark.parametrize(("x", "mean"), [(10, 3.0), (3, 0.5), (40, 20.0), (1, 0.01)])
def test_negative_binomial_tails_approach_poisson(x: int, mean: float) -> None:
    exact = poisson_upper(x, mean)
    assert upper_tail_probability(x, mean, 1e7) == pytest.approx(exact, rel=1e-4)
    assert lower_tail_probability(x - 1, mean, 1e7) == pytest.approx(1 - exact, rel=1e-4)


def test_tails_are_exact_far_out_and_heavier_with_overdispersion() -> None:
    tiny = upper_tail_probability(60, 2.0, 1e7)
    assert 0 < tiny < 1e-40  # log-space sums: no underflow to 0, no 1 - 0.999… cancellation
    assert upper_tail_probability(12, 4.0, 2.0) > upper_tail_probability(12, 4.0, 1e7)
    assert upper_tail_probability(0, 4.0, 2.0) == 1.0


# --- configuration ----------------------------------------------------------------------


def test_shipped_config_loads_with_overrides() -> None:
    config = load_detector_config(REPO / "config" / "digest.yaml")
    assert config.bin_size == BIN
    assert config.defaults.recent_window == DAY
    assert config.params_for("watch:power_of_siberia_2").min_count == 2
    assert config.params_for("watch:power_of_siberia_2").report_drops is False
    assert config.defaults.report_silence is True
    assert config.defaults.min_silence == 3 * DAY
    assert config.params_for("topic:energy") == config.defaults
    assert config.digest.summary_at == time(7, 0, tzinfo=UTC)
    assert config.digest.summary_every == DAY
    assert config.digest.summary_catch_up == 7
    topics = ["energy", "military", "ukraine", "trade_finance", "world_order", "taiwan_asia"]
    topics += ["middle_east", "technology", "people_culture", "diplomacy"]
    watch = ["power_of_siberia_2", "joint_exercises", "peace_plan", "yuan_settlement", "arctic_route"]
    config.check_series([f"topic:{t}" for t in topics] + [f"watch:{w}" for w in watch])


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    assert load_detector_config(tmp_path / "absent.yaml") == DetectorConfig()


def test_the_config_file_is_parsed_once_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "digest.yaml"
    path.write_text("coverage_days: 20\n", encoding="utf-8")
    first = load_detector_config(path)
    assert first.coverage_days == 20
    assert load_detector_config(path) is first  # (not parsed again)
    path.write_text("coverage_days: 100\n", encoding="utf-8")
    assert load_detector_config(path).coverage_days == 100
    path.unlink()
    assert load_detector_config(path) == DetectorConfig()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"detectr": {}}, "'detectr'"),
        ({"detector": {"min_cout": 3}}, "'detector.min_cout'"),
        ({"series": {"topic:energy": {"cooldwn": "1d"}}}, "'series.topic:energy.cooldwn'"),
        ({"series": {"topic:energy": {"bin_size": "1h"}}}, "'series.topic:energy.bin_size'"),
        ({"series": {"Energy": {}}}, "'series.Energy'"),
        ({"detector": {"recent_window": "5h"}}, "'detector.recent_window'"),
        ({"detector": {"bin_size": "7h"}}, "'detector.bin_size'"),
        ({"detector": {"bin_size": "0.5m"}}, "'detector.bin_size'"),  # (divides a day; not whole minutes)
        ({"detector": {"cooldown": "soon"}}, "'detector.cooldown'"),
        ({"detector": {"significance": 0.9}}, "'detector.significance'"),
        ({"detector": {"min_count": 2.5}}, "'detector.min_count'"),
        ({"detector": {"min_silence": "-1d"}}, "'detector.min_silence'"),
        ({"series": {"topic:energy": {"report_silence": "no"}}}, "'series.topic:energy.report_silence'"),
        ({"digest": {"summary": {"at": "25:00"}}}, "'digest.summary.at'"),
        ({"digest": {"sumary": {}}}, "'digest.sumary'"),
        ({"digest": {"summary": {"catch_up": -1}}}, "'digest.summary.catch_up'"),
        ({"digest": {"summary": {"catch_up": "all"}}}, "'digest.summary.catch_up'"),
        ({"digest": {"summary": {"catch_up": True}}}, "'digest.summary.catch_up'"),
        ({"coverage_days": 731}, "'coverage_days': at most 730"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_detector_config(data)


def test_unknown_series_in_overrides_is_caught_against_the_registry() -> None:
    config = parse_detector_config({"series": {"watch:power_of_sibera_2": {"min_count": 2}}})
    with pytest.raises(ConfigError, match="power_of_sibera_2"):
        config.check_series(["watch:power_of_siberia_2"])


def test_unquoted_time_of_day_is_understood() -> None:
    # YAML 1.1 reads 07:30 as 450 (sexagesimal minutes).
    config = parse_detector_config({"digest": {"summary": {"at": 450, "every": "1w"}}})
    assert config.digest.summary_at == time(7, 30, tzinfo=UTC)
    assert config.digest.summary_every == timedelta(days=7)


@pytest.mark.parametrize(
    ("detector", "key"),
    [
        ({"prior_articles": float("nan")}, "prior_articles"),
        ({"overdispersion": float("nan")}, "overdispersion"),
        ({"prior_days": float("inf")}, "prior_days"),
        ({"min_ratio": float("nan")}, "min_ratio"),
        ({"baseline_window": "9999999d"}, "baseline_window"),
        ({"settle": "99999999d"}, "settle"),
        ({"bin_size": "1000000000d"}, "bin_size"),
    ],
)
def test_a_detector_number_that_is_no_finite_value_or_a_span_past_reason_is_refused(
    detector: dict[str, object], key: str
) -> None:
    """NaN passed every range check (and the detector's tail sums never ended), infinity
    and spans of millions of days failed later with a traceback: refused at start, naming
    the key."""
    with pytest.raises(ConfigError, match=key):
        parse_detector_config({"detector": detector})


def test_an_alias_bomb_in_a_config_file_is_refused_at_once(tmp_path: Path) -> None:
    """Aliases that expand a few lines into a billion values are refused when the file is
    read, before anything walks the values (a check, a hash, an error quoting one)."""
    import time

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    path = tmp_path / "digest.yaml"
    path.write_text("\n".join(lines) + "\ndetector: {bin_size: *a9}\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_detector_config(path)
    assert time.monotonic() - started < 5


def test_a_folder_in_place_of_the_config_file_is_an_error(tmp_path: Path) -> None:
    """Docker makes a folder where a file it was to mount is missing: that is no missing
    file (the defaults, in silence) but an error."""
    (tmp_path / "digest.yaml").mkdir()
    with pytest.raises(ConfigError, match="not a file"):
        load_detector_config(tmp_path / "digest.yaml")

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
    assert change.explanation.startswith("8 articles in the last 24 h after none in the previous 28 days")
    assert "expected" in change.explanation
    assert change.score > 6


def test_one_isolated_article_after_weeks_of_nothing_is_not_a_change() -> None:
    assert detect(daily_bins([0] * 40 + [1] + [0] * 20)) == []
    # Nor a few scattered over weeks.
    assert detect(daily_bins([0] * 40 + [1] + [0] * 6 + [1] + [0] * 9 + [1] + [0] * 10)) == []


def test_explanation_quotes_baseline_rate_and_window() -> None:
    rng = random.Random(7)
    bins = spread_bins([4.0] * 40 + [30.0] + [4.0] * 5, rng)
    changes = detect(bins, series="topic:military")
    assert [c.direction for c in changes] == ["up"]
    text = changes[0].explanation
    assert f"{changes[0].count} articles in the last" in text
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
    assert settled == later  # replaying later gives the same change at the same time


def test_unreported_changes_treat_a_shifted_detection_as_the_same_event() -> None:
    change = detect(daily_bins([0] * 40 + [8] + [0] * 10))[0]
    config = DetectorConfig()
    shifted = (change.series, change.at - BIN, "up")
    assert unreported_changes([change], [shifted], config) == []
    assert unreported_changes([change], [(change.series, change.at, "down")], config) == [change]
    assert unreported_changes([change], [], config) == [change]


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
    assert config.params_for("topic:energy") == config.defaults
    assert config.digest.summary_at == time(7, 0, tzinfo=UTC)
    assert config.digest.summary_every == DAY
    topics = ["energy", "military", "ukraine", "trade_finance", "world_order", "taiwan_asia"]
    topics += ["middle_east", "technology", "people_culture", "diplomacy"]
    watch = ["power_of_siberia_2", "joint_exercises", "peace_plan", "yuan_settlement", "arctic_route"]
    config.check_series([f"topic:{t}" for t in topics] + [f"watch:{w}" for w in watch])


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    assert load_detector_config(tmp_path / "absent.yaml") == DetectorConfig()


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
        ({"detector": {"cooldown": "soon"}}, "'detector.cooldown'"),
        ({"detector": {"significance": 0.9}}, "'detector.significance'"),
        ({"detector": {"min_count": 2.5}}, "'detector.min_count'"),
        ({"digest": {"summary": {"at": "25:00"}}}, "'digest.summary.at'"),
        ({"digest": {"sumary": {}}}, "'digest.sumary'"),
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

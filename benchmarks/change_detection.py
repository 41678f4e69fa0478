"""Change detection on synthetic coverage streams, beside Huginn's peak detector.

Usage: ``python benchmarks/change_detection.py [--replicas N] [--seed-base N] [--output FILE]
[--without-silence-test] [--no-write]``. Prints Markdown tables and writes
``benchmarks/results/change_detection.json``.
``--seed-base 1`` (or any non-zero value) draws other streams: parameters are chosen on
those, and the published figures come from the default streams.
``--without-silence-test`` turns the silence test off everywhere (falls come from the
trend windows alone, as before it existed): ``results/change_detection_no_silence.json``.

Streams (seeded, one per replica): 6-hour bins over 100 days; the system's history
starts at day 0 and the event starts at day 60, after warm-up and a full baseline.

* ``noise``: a constant Poisson rate, no event.
* ``news-noise``: no event either, but news-like: a day-to-day Gamma multiplier
  (coefficient of variation 0.4), weekends at 60 % and a diurnal profile.
* ``spike``: one day at ``base + max(8, 3 * base)`` articles/day (8 in a day after
  silence is the issue's example), then back to ``base``.
* ``step``: the rate becomes ``2 * base + 1`` and stays (coverage doubling after a summit;
  a thread starting at 1/day when the base is 0).
* ``climb``: the rate rises linearly from ``base`` to ``3 * base + 1`` over 14 days, then
  stays (a slow climb).
* ``drop``: the rate falls to ``0.2 * base`` and stays (a thread going quiet; only for
  bases of at least 1/day).
* ``single``: one isolated article at the onset after silence (base 0 only): not a change,
  so any alarm on it counts as a false alarm.

The falls family (a busy thread going silent, the case the trend windows alone miss):

* ``quiet``: a Poisson thread at 1, 2.5, 5 or 10 articles/day that publishes nothing for
  10 days from the onset, then resumes;
* ``news-quiet``: the same with the news-like day-to-day noise of ``news-noise``;
* ``sparse-quiet``: a 0.3/day series silent for 10 days: a lull, not a change, so any
  alarm on it counts as a false alarm.

And a replay of a whole installation (``--replay``, on by default): the ten topics and
five watch items at realistic rates, each with the per-series parameters of
``config/digest.yaml``, news-like noise with a day factor shared by all series (a busy
news day is busy everywhere), 49 days long; ``topic:taiwan_asia`` runs at 2.5/day and
falls silent from day 42. Reported: the share of replays in which the silence is
reported within 4 days, the delay, and the rises and falls raised on the other series.

Metrics per detector, scenario and base rate:

* detection rate: share of event streams with an alarm in the right direction within the
  scenario's horizon after onset (spike 3 days, step 10, climb 21, drop 14, quiet 10),
  and within 4 days;
* median delay: hours from onset to that first alarm (bins end every 6 hours);
* false alarms per 30 days: alarms during monitored time without an event (from day 7,
  when our warm-up ends, to the onset; all of it for the no-event streams; a
  ``single``-article or ``sparse-quiet`` alarm counts here too), in all and falls only;
* repeat alarms per event: further alarms (any direction) within the horizon after the
  first detection: the same event reported again.

Detectors:

* ``summitwatch``: :func:`pipeline.coverage.detect_changes` with the shipped defaults.
* ``Huginn (6 h)`` and ``Huginn (1 d)``: Huginn's PeakDetectorAgent as written
  (``app/models/agents/peak_detector_agent.rb``): on each new count, keep the points of
  the last 14 days; with at least 5 points and no peak in the last 2 days, fire when the
  newest count exceeds the mean plus 3 population standard deviations of the other points.
  Rises only. Fed the same 6-hour bins, or the daily sums.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.coverage import (  # noqa: E402
    DetectorConfig,
    DetectorParams,
    detect_changes,
    load_detector_config,
)

RESULTS = ROOT / "benchmarks" / "results" / "change_detection.json"
BIN = timedelta(hours=6)
BINS_PER_DAY = 4
DAYS = 100
ONSET_DAY = 60
MONITOR_FROM_DAY = 7
START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, so weekends fall on days 5-6, 12-13, ...
BASES = (0.0, 0.3, 1.0, 3.0, 10.0)
QUIET_BASES = (1.0, 2.5, 5.0, 10.0)
QUIET_DAYS = 10
SPARSE_BASE = 0.3
QUICK_DAYS = 4  # "reported going down within 4 days"
HORIZON_DAYS = {"spike": 3, "step": 10, "climb": 21, "drop": 14, "single": 3, "quiet": QUIET_DAYS}
ORIGINAL = ("noise", "news-noise", "spike", "step", "climb", "drop", "single")
FALLS = ("quiet", "news-quiet", "sparse-quiet")
NEWS_LIKE = ("news-noise", "news-quiet")
DIURNAL = (0.5, 1.2, 1.4, 0.9)  # relative intensity per 6-hour bin, mean 1

Alarm = tuple[int, str]  # (index of the bin at whose end the alarm fired, direction)


@dataclass(frozen=True)
class Scenario:
    name: str
    base: float
    event: bool
    direction: str = "up"


def rates_for(scenario: Scenario, rng: random.Random) -> list[float]:
    """Expected articles per 6-hour bin for one stream."""
    base = scenario.base
    per_bin: list[float] = []
    day_multiplier = 1.0
    for index in range(DAYS * BINS_PER_DAY):
        day = index / BINS_PER_DAY
        rate = base
        if scenario.name == "spike" and ONSET_DAY <= day < ONSET_DAY + 1:
            rate = base + max(8.0, 3.0 * base)
        elif scenario.name == "step" and day >= ONSET_DAY:
            rate = 2.0 * base + 1.0
        elif scenario.name == "climb" and day >= ONSET_DAY:
            target = 3.0 * base + 1.0
            rate = base + (target - base) * min(1.0, (day - ONSET_DAY) / 14.0)
        elif scenario.name == "drop" and day >= ONSET_DAY:
            rate = 0.2 * base
        elif scenario.name in FALLS and ONSET_DAY <= day < ONSET_DAY + QUIET_DAYS:
            rate = 0.0
        if scenario.name in NEWS_LIKE:
            if index % BINS_PER_DAY == 0:
                day_multiplier = rng.gammavariate(1 / 0.16, 0.16)  # mean 1, CV 0.4
            weekday = (START + timedelta(days=int(day))).weekday()
            rate *= day_multiplier * (0.6 if weekday >= 5 else 1.16) * DIURNAL[index % BINS_PER_DAY]
        per_bin.append(rate / BINS_PER_DAY)
    return per_bin


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's sampler; the per-bin means here stay far below its underflow limit."""
    if mean <= 0:
        return 0
    limit = math.exp(-mean)
    count, product = 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def stream(scenario: Scenario, seed: int | str) -> list[int]:
    rng = random.Random(seed)
    counts = [poisson(rng, mean) for mean in rates_for(scenario, rng)]
    if scenario.name == "single":
        counts[ONSET_DAY * BINS_PER_DAY] += 1
    return counts


# --- detectors --------------------------------------------------------------------------


def summitwatch_detector(
    params: DetectorParams, series: str = "topic:bench"
) -> Callable[[list[int]], list[Alarm]]:
    def detect(counts: list[int]) -> list[Alarm]:
        bins = [(START + i * BIN, count) for i, count in enumerate(counts)]
        end = START + len(counts) * BIN + timedelta(days=1)
        changes = detect_changes(series, bins, params, history_start=START, now=end)
        return [(round((change.at - START) / BIN) - 1, change.direction) for change in changes]

    return detect


def huginn_peaks(values: Sequence[float], spacing_points: int, window_points: int) -> list[int]:
    """Indices where Huginn's PeakDetectorAgent fires (times are point indices)."""
    peaks: list[int] = []
    for index in range(len(values)):
        # Memory holds the points newer than (newest time - window), the newest included.
        data = values[max(0, index - window_points + 1) : index + 1]
        if len(data) <= 4:  # min_events default 4: needs at least 5 points
            continue
        if peaks and not peaks[-1] < index - spacing_points:
            continue
        others = data[:-1]
        mean = sum(others) / len(others)
        deviation = math.sqrt(sum((v - mean) ** 2 for v in others) / len(others))
        if data[-1] > mean + 3 * deviation:
            peaks.append(index)
            peaks = [p for p in peaks if p > index - window_points]
    return peaks


def huginn_six_hour(counts: list[int]) -> list[Alarm]:
    return [(i, "up") for i in huginn_peaks(counts, 2 * BINS_PER_DAY, 14 * BINS_PER_DAY)]


def huginn_daily(counts: list[int]) -> list[Alarm]:
    daily = [
        sum(counts[d * BINS_PER_DAY : (d + 1) * BINS_PER_DAY]) for d in range(len(counts) // BINS_PER_DAY)
    ]
    # A daily point is known at the end of its day, i.e. after its last 6-hour bin.
    return [((day + 1) * BINS_PER_DAY - 1, "up") for day in huginn_peaks(daily, 2, 14)]


# --- scoring ----------------------------------------------------------------------------


@dataclass
class Tally:
    events: int = 0
    detected: int = 0
    delays_h: list[float] = field(default_factory=list)
    false_alarms: int = 0
    false_falls: int = 0
    quiet_days: float = 0.0
    repeats: int = 0

    def summary(self) -> dict[str, Any]:
        quick = sum(1 for d in self.delays_h if d <= QUICK_DAYS * 24)
        return {
            "events": self.events,
            "detection_rate": round(self.detected / self.events, 3) if self.events else None,
            "detection_rate_4d": round(quick / self.events, 3) if self.events else None,
            "median_delay_h": round(statistics.median(self.delays_h), 1) if self.delays_h else None,
            "false_alarms_per_30d": round(30 * self.false_alarms / self.quiet_days, 3)
            if self.quiet_days
            else None,
            "false_falls_per_30d": round(30 * self.false_falls / self.quiet_days, 3)
            if self.quiet_days
            else None,
            "repeat_alarms_per_event": round(self.repeats / self.detected, 2) if self.detected else None,
        }

    def false_alarm(self, direction: str) -> None:
        self.false_alarms += 1
        self.false_falls += direction == "down"


def score(scenario: Scenario, alarms: list[Alarm], tally: Tally) -> None:
    onset = ONSET_DAY * BINS_PER_DAY
    first_monitored = MONITOR_FROM_DAY * BINS_PER_DAY - 1
    total = DAYS * BINS_PER_DAY
    if not scenario.event:
        quiet_until = onset if scenario.name == "single" else total
        if scenario.name == "single":
            quiet_until = onset + HORIZON_DAYS["single"] * BINS_PER_DAY
        for i, direction in alarms:
            if first_monitored <= i < quiet_until:
                tally.false_alarm(direction)
        tally.quiet_days += (quiet_until - first_monitored) / BINS_PER_DAY
        return
    tally.events += 1
    for i, direction in alarms:
        if first_monitored <= i < onset:
            tally.false_alarm(direction)
    tally.quiet_days += (onset - first_monitored) / BINS_PER_DAY
    family = "quiet" if scenario.name in FALLS else scenario.name
    horizon = onset + HORIZON_DAYS[family] * BINS_PER_DAY
    hits = [i for i, direction in alarms if onset <= i < horizon and direction == scenario.direction]
    if hits:
        tally.detected += 1
        first = hits[0]
        tally.delays_h.append((first + 1 - onset) * 6.0)
        tally.repeats += sum(1 for i, _ in alarms if first < i < horizon)


def scenarios() -> list[Scenario]:
    result = []
    for base in BASES:
        result.append(Scenario("noise", base, event=False))
        if base > 0:
            result.append(Scenario("news-noise", base, event=False))
        result.append(Scenario("spike", base, event=True))
        result.append(Scenario("step", base, event=True))
        result.append(Scenario("climb", base, event=True))
        if base >= 1:
            result.append(Scenario("drop", base, event=True, direction="down"))
    result.append(Scenario("single", 0.0, event=False))
    # Appended, so the streams of the scenarios above keep their seeds.
    for base in QUIET_BASES:
        result.append(Scenario("quiet", base, event=True, direction="down"))
        result.append(Scenario("news-quiet", base, event=True, direction="down"))
    result.append(Scenario("sparse-quiet", SPARSE_BASE, event=False))
    return result


def seed_for(seed_base: int, number: int, replica: int) -> int | str:
    """The published streams use ``1_000_003 * number + replica``; other bases draw others."""
    if seed_base == 0:
        return 1_000_003 * number + replica
    return f"{seed_base}:{number}:{replica}"


def run(replicas: int, params: DetectorParams, seed_base: int = 0) -> dict[str, Any]:
    detectors: dict[str, Callable[[list[int]], list[Alarm]]] = {
        "summitwatch": summitwatch_detector(params),
        "Huginn (6 h)": huginn_six_hour,
        "Huginn (1 d)": huginn_daily,
    }
    rows = []
    timings = dict.fromkeys(detectors, 0.0)
    for number, scenario in enumerate(scenarios()):
        tallies = {name: Tally() for name in detectors}
        for replica in range(replicas):
            counts = stream(scenario, seed=seed_for(seed_base, number, replica))
            for name, detect in detectors.items():
                started = time.perf_counter()
                alarms = detect(counts)
                timings[name] += time.perf_counter() - started
                score(scenario, alarms, tallies[name])
        rows.append(
            {
                "scenario": scenario.name,
                "base_per_day": scenario.base,
                "direction": scenario.direction if scenario.event else None,
                "detectors": {name: tally.summary() for name, tally in tallies.items()},
            }
        )
    streams = replicas * len(rows)
    return {
        "rows": rows,
        "totals": _totals(rows, list(detectors)),
        "ms_per_stream": {name: round(1000 * seconds / streams, 2) for name, seconds in timings.items()},
    }


def _totals(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Unweighted means over the rows, so every scenario and rate counts the same.

    The first four figures are over the original scenarios only, so they compare with
    earlier runs; the ``falls_`` figures are over the falls family.
    """
    totals: dict[str, Any] = {}
    original = [r for r in rows if r["scenario"] in ORIGINAL]
    falls = [r for r in rows if r["scenario"] in FALLS]
    for name in names:
        event_rows = [r["detectors"][name] for r in original if r["direction"]]
        up_rows = [r["detectors"][name] for r in original if r["direction"] == "up"]
        noise_rows = [r["detectors"][name] for r in original if r["scenario"] in ("noise", "news-noise")]
        all_fa = [r["detectors"][name]["false_alarms_per_30d"] for r in original]
        quiet_rows = [r["detectors"][name] for r in falls if r["direction"]]
        sparse_rows = [r["detectors"][name] for r in falls if not r["direction"]]
        totals[name] = {
            "mean_detection_rate_all_events": round(
                statistics.mean(r["detection_rate"] for r in event_rows), 3
            ),
            "mean_detection_rate_rises": round(statistics.mean(r["detection_rate"] for r in up_rows), 3),
            "mean_false_alarms_per_30d": round(statistics.mean(all_fa), 3),
            "mean_false_alarms_per_30d_noise_only": round(
                statistics.mean(r["false_alarms_per_30d"] for r in noise_rows), 3
            ),
            "mean_false_falls_per_30d_noise_only": round(
                statistics.mean(r["false_falls_per_30d"] for r in noise_rows), 3
            ),
            "falls_mean_detection_rate": round(statistics.mean(r["detection_rate"] for r in quiet_rows), 3),
            "falls_mean_detection_rate_4d": round(
                statistics.mean(r["detection_rate_4d"] for r in quiet_rows), 3
            ),
            "falls_false_alarms_per_30d_sparse": round(
                statistics.mean(r["false_alarms_per_30d"] for r in sparse_rows), 3
            ),
        }
    return totals


# --- a replayed installation ------------------------------------------------------------

REPLAY_DAYS = 49
REPLAY_ONSET_DAY = 42
SILENT_SERIES = "topic:taiwan_asia"
# Articles per day, roughly what the shipped feeds give each series.
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
SHARED_CV = 0.25  # the day's overall news volume, shared by every series
OWN_CV = 0.3  # each series' own day-to-day swing


def replay_streams(rng: random.Random) -> dict[str, list[int]]:
    """One installation's 6-hour counts per series (news-like, shared day factor)."""
    shared = [_gamma_unit(rng, SHARED_CV) for _ in range(REPLAY_DAYS)]
    result = {}
    for series, base in REPLAY_RATES.items():
        counts = []
        for day in range(REPLAY_DAYS):
            own = _gamma_unit(rng, OWN_CV)
            weekday = (START + timedelta(days=day)).weekday()
            rate = base * shared[day] * own * (0.6 if weekday >= 5 else 1.16)
            if series == SILENT_SERIES and day >= REPLAY_ONSET_DAY:
                rate = 0.0
            counts += [poisson(rng, rate * DIURNAL[q] / BINS_PER_DAY) for q in range(BINS_PER_DAY)]
        result[series] = counts
    return result


def _gamma_unit(rng: random.Random, cv: float) -> float:
    """A Gamma draw with mean 1 and this coefficient of variation."""
    return rng.gammavariate(1 / cv**2, cv**2)


def run_replay(replicas: int, config: DetectorConfig, seed_base: int = 0) -> dict[str, Any]:
    """Replay ``replicas`` installations through the detector with this configuration."""
    onset = REPLAY_ONSET_DAY * BINS_PER_DAY
    first_monitored = MONITOR_FROM_DAY * BINS_PER_DAY - 1
    delays: list[float] = []
    rises_elsewhere: list[int] = []
    falls_elsewhere: list[int] = []
    early_alarms = 0
    for replica in range(replicas):
        rng = random.Random(f"replay:{replica}" if seed_base == 0 else f"replay:{seed_base}:{replica}")
        rises = falls = 0
        for series, counts in replay_streams(rng).items():
            detect = summitwatch_detector(config.params_for(series), series)
            alarms = [(i, d) for i, d in detect(counts) if i >= first_monitored]
            if series == SILENT_SERIES:
                early_alarms += sum(1 for i, _ in alarms if i < onset)
                hits = [i for i, d in alarms if i >= onset and d == "down"]
                if hits:
                    delays.append((hits[0] + 1 - onset) * 6.0)
            else:
                rises += sum(1 for _, d in alarms if d == "up")
                falls += sum(1 for _, d in alarms if d == "down")
        rises_elsewhere.append(rises)
        falls_elsewhere.append(falls)
    quick = sum(1 for d in delays if d <= QUICK_DAYS * 24)
    return {
        "replicas": replicas,
        "days": REPLAY_DAYS,
        "onset_day": REPLAY_ONSET_DAY,
        "silent_series": SILENT_SERIES,
        "rates_per_day": REPLAY_RATES,
        "fall_reported_within_4d": round(quick / replicas, 3),
        "fall_reported_by_end": round(len(delays) / replicas, 3),
        "median_delay_h": statistics.median(delays) if delays else None,
        "max_delay_h": max(delays) if delays else None,
        "alarms_on_silent_series_before_onset": early_alarms,
        "rises_on_other_series_mean": round(statistics.mean(rises_elsewhere), 2),
        "rises_on_other_series_max": max(rises_elsewhere),
        "replays_with_at_most_2_rises_elsewhere": round(
            sum(1 for r in rises_elsewhere if r <= 2) / replicas, 3
        ),
        "falls_on_other_series_mean": round(statistics.mean(falls_elsewhere), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    names = list(result["totals"])
    header = (
        "| scenario | base/day | " + " | ".join(f"{n}: det. / delay h / FA per 30 d" for n in names) + " |"
    )
    lines = [header, "|" + "---|" * (2 + len(names))]
    for row in result["rows"]:
        cells = []
        for name in names:
            s = row["detectors"][name]
            detection = "–" if s["detection_rate"] is None else f"{100 * s['detection_rate']:.0f} %"
            delay = "–" if s["median_delay_h"] is None else f"{s['median_delay_h']:.0f}"
            repeats = s["repeat_alarms_per_event"]
            repeat_text = f" (+{repeats:.1f} rep.)" if repeats else ""
            cells.append(f"{detection} / {delay} / {s['false_alarms_per_30d']:.2f}{repeat_text}")
        lines.append(f"| {row['scenario']} | {row['base_per_day']:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| detector | detection (all events) | detection (rises) | FA/30 d (all) | FA/30 d (noise) "
        "| falls FA/30 d (noise) | quiet: det. ≤ 4 d | quiet: det. ≤ 10 d | sparse lull FA/30 d |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, t in result["totals"].items():
        lines.append(
            f"| {name} | {100 * t['mean_detection_rate_all_events']:.0f} % | "
            f"{100 * t['mean_detection_rate_rises']:.0f} % | {t['mean_false_alarms_per_30d']:.2f} | "
            f"{t['mean_false_alarms_per_30d_noise_only']:.2f} | "
            f"{t['mean_false_falls_per_30d_noise_only']:.2f} | "
            f"{100 * t['falls_mean_detection_rate_4d']:.0f} % | "
            f"{100 * t['falls_mean_detection_rate']:.0f} % | "
            f"{t['falls_false_alarms_per_30d_sparse']:.2f} |"
        )
    lines.append("")
    lines.append("| falls (summitwatch) | base/day | det. ≤ 4 d | det. ≤ 10 d | median delay h |")
    lines.append("|---|---|---|---|---|")
    for row in result["rows"]:
        if row["scenario"] not in FALLS or not row["direction"]:
            continue
        s = row["detectors"]["summitwatch"]
        delay = "–" if s["median_delay_h"] is None else f"{s['median_delay_h']:.0f}"
        lines.append(
            f"| {row['scenario']} | {row['base_per_day']:g} | {100 * s['detection_rate_4d']:.0f} % | "
            f"{100 * s['detection_rate']:.0f} % | {delay} |"
        )
    replay = result.get("replay")
    if replay:
        delay = "–" if replay["median_delay_h"] is None else f"{replay['median_delay_h']:.0f}"
        lines.append("")
        lines.append(
            f"Replay ({replay['replicas']} installations, {len(replay['rates_per_day'])} series, "
            f"{replay['silent_series']} at 2.5/day silent from day {replay['onset_day']}): "
            f"reported within 4 days {100 * replay['fall_reported_within_4d']:.0f} %, "
            f"median delay {delay} h; rises on the other series "
            f"{replay['rises_on_other_series_mean']:.2f} per replay (max "
            f"{replay['rises_on_other_series_max']}, at most 2 in "
            f"{100 * replay['replays_with_at_most_2_rises_elsewhere']:.0f} %), falls on them "
            f"{replay['falls_on_other_series_mean']:.2f}"
        )
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """Durations as "6h"/"28d" so the JSON reads like config/digest.yaml."""
    if isinstance(value, timedelta):
        hours = value / timedelta(hours=1)
        return f"{hours / 24:g}d" if hours % 24 == 0 else f"{hours:g}h"
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=60, help="streams per scenario and base rate")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "digest.yaml")
    parser.add_argument(
        "--seed-base", type=int, default=0, help="0: the published streams; other values: other streams"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    parser.add_argument(
        "--without-silence-test",
        action="store_true",
        help="report_silence: false everywhere (falls from the trend windows alone)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the JSON")
    args = parser.parse_args(argv)
    config = load_detector_config(args.config)
    if args.without_silence_test:
        config = dataclasses.replace(
            config,
            defaults=dataclasses.replace(config.defaults, report_silence=False),
            series={k: dataclasses.replace(v, report_silence=False) for k, v in config.series.items()},
        )
    params = config.defaults
    started = time.perf_counter()
    result = run(args.replicas, params, args.seed_base)
    result["replay"] = run_replay(args.replicas, config, args.seed_base)
    report = {
        "benchmark": "change_detection",
        "replicas": args.replicas,
        "seed_base": args.seed_base,
        "days": DAYS,
        "onset_day": ONSET_DAY,
        "bin_hours": 6,
        "params": {name: _plain(value) for name, value in vars(params).items()},
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - started, 1),
        **result,
    }
    print(markdown(result))
    print(f"\nms per stream: {result['ms_per_stream']}")
    if not args.no_write:
        output = args.output.resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        shown = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
        print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

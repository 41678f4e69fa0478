"""Change detection on synthetic coverage streams, beside Huginn's peak detector.

Usage: ``python benchmarks/change_detection.py [--replicas N] [--no-write]``. Prints a
Markdown table and writes ``benchmarks/results/change_detection.json``.

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

Metrics per detector, scenario and base rate:

* detection rate: share of event streams with an alarm in the right direction within the
  scenario's horizon after onset (spike 3 days, step 10, climb 21, drop 14);
* median delay: hours from onset to that first alarm (bins end every 6 hours);
* false alarms per 30 days: alarms during monitored time without an event (from day 7,
  when our warm-up ends, to the onset; all of it for the no-event streams; a
  ``single``-article alarm counts here too);
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

from pipeline.coverage import DetectorParams, detect_changes, load_detector_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "change_detection.json"
BIN = timedelta(hours=6)
BINS_PER_DAY = 4
DAYS = 100
ONSET_DAY = 60
MONITOR_FROM_DAY = 7
START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday, so weekends fall on days 5-6, 12-13, ...
BASES = (0.0, 0.3, 1.0, 3.0, 10.0)
HORIZON_DAYS = {"spike": 3, "step": 10, "climb": 21, "drop": 14, "single": 3}
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
        if scenario.name == "news-noise":
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


def stream(scenario: Scenario, seed: int) -> list[int]:
    rng = random.Random(seed)
    counts = [poisson(rng, mean) for mean in rates_for(scenario, rng)]
    if scenario.name == "single":
        counts[ONSET_DAY * BINS_PER_DAY] += 1
    return counts


# --- detectors --------------------------------------------------------------------------


def summitwatch_detector(params: DetectorParams) -> Callable[[list[int]], list[Alarm]]:
    def detect(counts: list[int]) -> list[Alarm]:
        bins = [(START + i * BIN, count) for i, count in enumerate(counts)]
        end = START + len(counts) * BIN + timedelta(days=1)
        changes = detect_changes("topic:bench", bins, params, history_start=START, now=end)
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
    quiet_days: float = 0.0
    repeats: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "detection_rate": round(self.detected / self.events, 3) if self.events else None,
            "median_delay_h": round(statistics.median(self.delays_h), 1) if self.delays_h else None,
            "false_alarms_per_30d": round(30 * self.false_alarms / self.quiet_days, 3)
            if self.quiet_days
            else None,
            "repeat_alarms_per_event": round(self.repeats / self.detected, 2) if self.detected else None,
        }


def score(scenario: Scenario, alarms: list[Alarm], tally: Tally) -> None:
    onset = ONSET_DAY * BINS_PER_DAY
    first_monitored = MONITOR_FROM_DAY * BINS_PER_DAY - 1
    total = DAYS * BINS_PER_DAY
    if not scenario.event:
        quiet_until = onset if scenario.name == "single" else total
        tally.false_alarms += sum(1 for i, _ in alarms if first_monitored <= i < quiet_until)
        if scenario.name == "single":
            horizon = onset + HORIZON_DAYS["single"] * BINS_PER_DAY
            tally.false_alarms += sum(1 for i, _ in alarms if onset <= i < horizon)
            quiet_until = horizon
        tally.quiet_days += (quiet_until - first_monitored) / BINS_PER_DAY
        return
    tally.events += 1
    tally.false_alarms += sum(1 for i, _ in alarms if first_monitored <= i < onset)
    tally.quiet_days += (onset - first_monitored) / BINS_PER_DAY
    horizon = onset + HORIZON_DAYS[scenario.name] * BINS_PER_DAY
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
    return result


def run(replicas: int, params: DetectorParams) -> dict[str, Any]:
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
            counts = stream(scenario, seed=1_000_003 * number + replica)
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
    """Unweighted means over the rows, so every scenario and rate counts the same."""
    totals: dict[str, Any] = {}
    for name in names:
        event_rows = [r["detectors"][name] for r in rows if r["direction"]]
        up_rows = [r["detectors"][name] for r in rows if r["direction"] == "up"]
        noise_rows = [r["detectors"][name] for r in rows if r["scenario"] in ("noise", "news-noise")]
        all_fa = [r["detectors"][name]["false_alarms_per_30d"] for r in rows]
        totals[name] = {
            "mean_detection_rate_all_events": round(
                statistics.mean(r["detection_rate"] for r in event_rows), 3
            ),
            "mean_detection_rate_rises": round(statistics.mean(r["detection_rate"] for r in up_rows), 3),
            "mean_false_alarms_per_30d": round(statistics.mean(all_fa), 3),
            "mean_false_alarms_per_30d_noise_only": round(
                statistics.mean(r["false_alarms_per_30d"] for r in noise_rows), 3
            ),
        }
    return totals


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
        "| detector | detection (all events) | detection (rises) | FA/30 d (all) | FA/30 d (noise) |"
    )
    lines.append("|---|---|---|---|---|")
    for name, t in result["totals"].items():
        lines.append(
            f"| {name} | {100 * t['mean_detection_rate_all_events']:.0f} % | "
            f"{100 * t['mean_detection_rate_rises']:.0f} % | {t['mean_false_alarms_per_30d']:.2f} | "
            f"{t['mean_false_alarms_per_30d_noise_only']:.2f} |"
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
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the JSON")
    args = parser.parse_args(argv)
    params = load_detector_config(args.config).defaults
    started = time.perf_counter()
    result = run(args.replicas, params)
    report = {
        "benchmark": "change_detection",
        "replicas": args.replicas,
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
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Coverage series and change detection: timestamps in, counts per bin and changes out.

A pure stage: no database, no network, no clock (``now`` is an argument). The caller
(CLI ``coverage``/``digest``, the digest DAG) selects the publication times of new,
non-duplicate articles per topic or watch item, bins them with :func:`bin_counts` and
asks :func:`detect_changes` what changed.

Detection method
----------------
A count-surveillance test in the family of Farrington's algorithm (Farrington et al.
1996; Noufaily et al. 2013): compare what just happened with what the recent past
predicts, allowing for the uncertainty of that prediction and for news being burstier
than Poisson, and only flag what is both significant and large.

At the end of every complete bin ``t`` (bins are aligned to multiples of ``bin_size``
since the Unix epoch, UTC) each series is tested at several scales ``w``: the recent
window (default 24 h, for spikes) and the trend windows (default 3 and 7 days, for steps,
slow climbs and threads going quiet). The count ``X`` in ``(t - w, t]`` is compared with
the baseline window (default 28 days) that ends where the tested window starts.

* **Rate with uncertainty; silence is a baseline.** After ``Y`` articles over ``E``
  observed baseline days, the rate has the Gamma(``prior_articles + Y``,
  ``prior_days + E``) posterior (defaults 0.5 and 0: the Jeffreys prior for a Poisson
  rate). A series silent for four weeks thus has a small positive rate, 0.5 articles per
  28 days, with a large uncertainty: one article in a day is unremarkable (p ≈ 0.02),
  three are not (p ≈ 2e-5). Longer silence means a lower rate, as it should; a prior *rate*
  worth some days of data would instead bias every busy series towards it.
* **Exact tail probability.** ``X`` is tested against the posterior predictive, a
  negative binomial whose variance adds the rate uncertainty and day-to-day
  over-dispersion ``phi``: ``mu + mu^2/a + phi * (1 + 1/a) * mu^2 / w_days``, with ``a``
  the posterior shape. ``phi`` is the method-of-moments estimate from the baseline's daily
  counts, floored at ``overdispersion`` (Farrington estimates the quasi-Poisson scale from
  its baseline the same way): a series that already swings from day to day needs a bigger
  jump. The one-sided tail is summed exactly in log space (no normal approximation, no
  scipy). A window is flagged when the tail probability is below ``significance`` divided
  by the number of tests in that direction (Bonferroni: ``significance`` is per
  evaluation and direction; falls count the silence test below as one more).
* **Effect size, not just significance.** A rise also needs at least ``min_count``
  articles in the window and ``min_ratio`` times the expected count; a fall needs a
  baseline of at least ``min_drop_rate`` per day and at most ``drop_ratio`` times the
  expected count. Falls are tested on the trend windows and on the current silence (see
  below), never on the 24 h window: a quiet day is not a quiet thread.
* **Robust baseline for falls.** A fall is measured against the *lower* of the two halves
  of the baseline window, so coverage returning to normal after a one-off spike is not
  reported as a thread going quiet; only coverage that was sustained and then stopped is.
* **A thread that stops.** The fixed windows are blunt for a moderately busy thread that
  falls silent: at 2.5 articles a day, four silent days (about 10 expected) are not
  significant in a 3-day window once the over-dispersion and the quieter-half baseline
  are allowed for, and a 7-day window is still half full of normal days. So the current
  run of empty bins is tested as a window of its own, whatever its length (at least
  ``min_silence``): ``P(0 articles in the run)`` under the same posterior predictive,
  against the 28 days before the run began. The statistic grows with the run, so it
  crosses the threshold once, at the first bin where the silence is significant. Its
  baseline is the whole window when its halves agree (a one-sided binomial test on how
  their articles split, at 5 %) and the quieter half otherwise, so a burst in the
  baseline cannot make a lull look like a stop; both halves must still reach
  ``min_drop_rate``, so sparse series never report silence. Since a negative binomial
  gives zero at least the Poisson probability ``exp(-mu)``, a silence can only be
  significant once ``mu >= ln(tests / significance)``, about 6.4 expected articles at the
  defaults: the minimum expected count comes from the test itself. Runs shorter than
  ``min_silence`` (default 3 days, the shortest trend window) are not tested: the
  day-to-day model treats days as exchangeable, so it cannot know that a weekend (two
  days, and the nights around them) is quieter than the week, and would judge a quiet
  weekend too harshly.
* **One event fires once.** A silence run that began before the last reported fall is
  part of that fall and is not tested again. After an alert the same direction is silent
  for ``cooldown``, and until the baseline window has moved past the alert, a new alert
  in that direction must also beat the rate of the window that raised it (the new
  normal): a step is reported when it happens, not again when the 3- and 7-day windows
  fill up with it, and a climb is reported again only if it keeps climbing well past
  that level. An alert in one direction clears the other direction's reference level. A
  reported silence leaves a level of zero, which no window can fall below; a later
  silence run (coverage came back in between) is judged against its own baseline.
* **Warm-up is about the system, not the series.** Nothing is tested until ``warmup``
  has passed since ``history_start`` (when summitwatch started collecting), and a window
  is only tested once at least as many days of baseline exist as the window is long. A
  series with no articles at all since ``history_start`` has a zero count, not a missing
  history.
* **Late articles.** Only bins that ended at least ``settle`` before ``now`` are tested,
  so articles published shortly before a poll are counted before their bin is judged.

Why not CUSUM: a CUSUM with a moving baseline needs a frozen reference to accumulate
against, and its statistic does not turn into a sentence an analyst can check. The
multi-scale window test is a discrete scan over the chosen scales and every alert reads
"N articles in the last W against R/day over the previous D days". That wording is for
a change at the most recent judged bin; an older one (a replay, a back-fill, a summary of
yesterday) names its window's dates instead: "N articles in the 4 days from 2025-03-10
18:00 to 2025-03-14 18:00 UTC against …".
``benchmarks/change_detection.py`` measures detection delay and false alarms on steps,
spikes, slow climbs, drops and noise, beside Huginn's peak detector.

The result is deterministic and replayable: running :func:`detect_changes` over the whole
history at any later time gives the same changes (the state carried from bin to bin is
derived from the series only; only the wording of the window moves from "the last W" to
its dates), so the caller can store them keyed by ``(series, at, direction)`` and report
the ones not yet reported (see :func:`unreported_changes`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import math
import re
import threading
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline import yamlfile
from pipeline.errors import ConfigError
from pipeline.formatting import format_number
from pipeline.settings import optional_file

Direction = Literal["up", "down"]
Bins = Sequence[tuple[datetime, int]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# How far back coverage is binned and changes are detected (the baseline is 28 days; years
# are plenty), and so the most days `summitwatch coverage --days` and `coverage_days` show.
MAX_HISTORY_DAYS = 730
SERIES_PATTERN = re.compile(r"^(topic|watch):[a-z0-9][a-z0-9_]*$")
_DURATION_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$")
_DURATION_UNITS = {"m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
# Tail sums stop when the remaining terms cannot change the result at double precision.
_TAIL_EPSILON = 1e-17
_TAIL_MAX_TERMS = 200_000
# The two halves of a baseline count as one level unless a one-sided binomial test on how
# their articles split rejects that at this level (see _halves_agree).
_HALVES_AGREE = 0.05


# ---------------------------------------------------------------------------------------
# Parameters and configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorParams:
    """How one series is binned and when its coverage counts as changed.

    Rates are per day; windows and durations are multiples of ``bin_size``.
    """

    bin_size: timedelta = timedelta(hours=6)
    recent_window: timedelta = timedelta(hours=24)
    trend_windows: tuple[timedelta, ...] = (timedelta(days=3), timedelta(days=7))
    baseline_window: timedelta = timedelta(days=28)
    warmup: timedelta = timedelta(days=7)
    cooldown: timedelta = timedelta(days=2)
    settle: timedelta = timedelta(hours=1)
    significance: float = 5e-3
    min_count: int = 3
    min_ratio: float = 1.5
    drop_ratio: float = 0.5
    min_drop_rate: float = 1.0
    prior_articles: float = 0.5
    prior_days: float = 0.0
    overdispersion: float = 0.1
    estimate_dispersion: bool = True
    report_drops: bool = True
    report_silence: bool = True
    min_silence: timedelta = timedelta(days=3)
    enabled: bool = True

    def __post_init__(self) -> None:
        problems = _param_problems(self)
        if problems:
            key, message = problems[0]
            raise ValueError(f"{key}: {message}")

    @property
    def rise_windows(self) -> tuple[timedelta, ...]:
        """The windows tested for rises: the recent window, then the trend windows."""
        return _unique((self.recent_window, *self.trend_windows))

    @property
    def drop_windows(self) -> tuple[timedelta, ...]:
        """The fixed windows tested for falls (the trend windows; the silence run is extra)."""
        return _unique(self.trend_windows)


def _unique(windows: Iterable[timedelta]) -> tuple[timedelta, ...]:
    return tuple(sorted(set(windows)))


def _param_problems(params: DetectorParams) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    bin_size = params.bin_size
    # (Whole minutes: the database bins moments by their whole seconds.)
    if bin_size <= timedelta(0) or DAY % bin_size or bin_size % timedelta(minutes=1):
        problems.append(("bin_size", "must be whole minutes and divide one day (e.g. 1h, 6h, 1d)"))
        return problems
    durations = {
        "recent_window": params.recent_window,
        "baseline_window": params.baseline_window,
        **{f"trend_windows[{i}]": w for i, w in enumerate(params.trend_windows)},
    }
    for key, value in durations.items():
        if value <= timedelta(0) or value % bin_size:
            problems.append((key, f"must be a positive multiple of bin_size ({_fmt_duration(bin_size)})"))
    if not params.trend_windows:
        problems.append(("trend_windows", "must list at least one window"))
    for key in ("warmup", "cooldown", "settle", "min_silence"):
        if getattr(params, key) < timedelta(0):
            problems.append((key, "must not be negative"))
    for key in _FLOAT_FIELDS:
        if not math.isfinite(getattr(params, key)):
            # (NaN passes every comparison below, and the detector's tail sums never end.)
            problems.append((key, "must be a finite number"))
    if problems:
        return problems
    longest = timedelta(days=MAX_DURATION_DAYS)
    for key, value in {
        **durations,
        **{k: getattr(params, k) for k in ("warmup", "cooldown", "settle")},
    }.items():
        if value > longest:
            problems.append((key, f"must be at most {MAX_DURATION_DAYS}d"))
    if not 0 < params.significance < 0.5:
        problems.append(("significance", "must be between 0 and 0.5"))
    if params.min_count < 1:
        problems.append(("min_count", "must be at least 1"))
    if params.min_ratio < 1:
        problems.append(("min_ratio", "must be at least 1"))
    if not 0 <= params.drop_ratio < 1:
        problems.append(("drop_ratio", "must be at least 0 and below 1"))
    if params.min_drop_rate < 0:
        problems.append(("min_drop_rate", "must not be negative"))
    if params.prior_articles <= 0:
        problems.append(
            ("prior_articles", "must be positive (it gives a silent series a small positive rate)")
        )
    if params.prior_days < 0:
        problems.append(("prior_days", "must not be negative"))
    if params.overdispersion < 0:
        problems.append(("overdispersion", "must not be negative"))
    return problems


@dataclass(frozen=True)
class DigestSchedule:
    """What the digest shows and when the summary digest is due (read by the CLI/DAG)."""

    articles_per_change: int = 5
    trend_days: int = 14
    summary_enabled: bool = True
    summary_every: timedelta = timedelta(days=1)
    summary_at: time = time(7, 0, tzinfo=UTC)
    # Ended periods missed after the last summary built (the scheduler down, a run that
    # failed) that are still built, oldest first; 0: only the latest.
    summary_catch_up: int = 7


@dataclass(frozen=True)
class DetectorConfig:
    """``config/digest.yaml``: detector defaults, per-series overrides, digest schedule."""

    defaults: DetectorParams = field(default_factory=DetectorParams)
    series: Mapping[str, DetectorParams] = field(default_factory=dict)
    coverage_days: int = 30
    digest: DigestSchedule = field(default_factory=DigestSchedule)

    def params_for(self, series: str) -> DetectorParams:
        """The parameters for ``series`` ("topic:energy"): its override, else the defaults."""
        return self.series.get(series, self.defaults)

    @property
    def bin_size(self) -> timedelta:
        """The bin size shared by every series (overrides cannot change it)."""
        return self.defaults.bin_size

    def check_series(self, known: Iterable[str]) -> None:
        """Raise :class:`ConfigError` if an override names a series that does not exist.

        ``known`` are the series names built from the topic and watch-item registry; a
        typo in an override would otherwise silently leave the defaults in force.
        """
        known_set = set(known)
        unknown = sorted(set(self.series) - known_set)
        if unknown:
            raise ConfigError(
                f"digest config: 'series' names unknown series {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known_set))}"
            )


_TOP_KEYS = {"coverage_days", "detector", "series", "digest"}
_DIGEST_KEYS = {"articles_per_change", "trend_days", "summary"}
_SUMMARY_KEYS = {"enabled", "every", "at", "catch_up"}
_PARAM_FIELDS = {f.name: f for f in dataclasses.fields(DetectorParams)}
_DURATION_FIELDS = {
    "bin_size",
    "recent_window",
    "baseline_window",
    "warmup",
    "cooldown",
    "settle",
    "min_silence",
}
_INT_FIELDS = {"min_count"}
# (Read with the annotations as written: this module's are strings.)
_FLOAT_FIELDS = tuple(name for name, f in _PARAM_FIELDS.items() if f.type in ("float", float))
_BOOL_FIELDS = {"enabled", "estimate_dispersion", "report_drops", "report_silence"}


def load_detector_config(path: str | Path) -> DetectorConfig:
    """Read ``config/digest.yaml`` (a missing file means all defaults).

    Durations are strings like ``6h``, ``24h``, ``14d``, ``90m``, ``1w``. Unknown keys and
    invalid values raise :class:`ConfigError` naming the key (``series.watch:x.min_count``).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not optional_file(path):
        return DetectorConfig()
    # A command validates the file at start and reads it again where it reports: the
    # same file, unchanged, is parsed once.
    return _detector_config(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _detector_config(path: str, mtime_ns: int, size: int) -> DetectorConfig:
    try:
        data = yamlfile.read_file(Path(path))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if data is None:
        return DetectorConfig()
    return parse_detector_config(data, source=path)


def parse_detector_config(data: Any, *, source: str = "digest config") -> DetectorConfig:
    """Build a :class:`DetectorConfig` from already-parsed YAML (see :func:`load_detector_config`)."""
    top = _mapping(data, source, "")
    _reject_unknown(top, _TOP_KEYS, source, "")
    defaults = _parse_params(
        _mapping(top.get("detector", {}), source, "detector"), DetectorParams(), source, "detector"
    )
    series: dict[str, DetectorParams] = {}
    for name, raw in _mapping(top.get("series", {}) or {}, source, "series").items():
        key = f"series.{name}"
        if not isinstance(name, str) or not SERIES_PATTERN.match(name):
            raise ConfigError(
                f"{source}: '{key}': series names look like 'topic:energy' or 'watch:power_of_siberia_2'"
            )
        overrides = _mapping(raw or {}, source, key)
        if "bin_size" in overrides:
            raise ConfigError(
                f"{source}: '{key}.bin_size': the bin size is shared by all series; set detector.bin_size"
            )
        series[name] = _parse_params(overrides, defaults, source, key)
    coverage_days = _positive_int(top.get("coverage_days", 30), source, "coverage_days")
    if coverage_days > MAX_HISTORY_DAYS:
        raise ConfigError(
            f"{source}: 'coverage_days': at most {MAX_HISTORY_DAYS} (the history coverage is counted over)"
        )
    digest = _parse_digest(_mapping(top.get("digest", {}) or {}, source, "digest"), source)
    return DetectorConfig(defaults=defaults, series=series, coverage_days=coverage_days, digest=digest)


def _parse_params(raw: Mapping[str, Any], base: DetectorParams, source: str, prefix: str) -> DetectorParams:
    _reject_unknown(raw, set(_PARAM_FIELDS), source, prefix)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}"
        if key in _DURATION_FIELDS:
            values[key] = parse_duration(value, source=source, key=where)
        elif key == "trend_windows":
            if not isinstance(value, list):
                raise ConfigError(f"{source}: '{where}': expected a list of durations like [72h, 7d]")
            values[key] = tuple(
                parse_duration(v, source=source, key=f"{where}[{i}]") for i, v in enumerate(value)
            )
        elif key in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: '{where}': expected true or false")
            values[key] = value
        elif key in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{source}: '{where}': expected a whole number")
            values[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{source}: '{where}': expected a number")
            values[key] = float(value)
    merged = {f: getattr(base, f) for f in _PARAM_FIELDS} | values
    problems = _param_problems(_unchecked_params(merged))
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{source}: '{prefix}.{key}': {message}")
    return DetectorParams(**merged)


def _unchecked_params(values: Mapping[str, Any]) -> DetectorParams:
    # Build without __post_init__ so the loader can name the key in its own message.
    params = object.__new__(DetectorParams)
    for name, value in values.items():
        object.__setattr__(params, name, value)
    return params


def _parse_digest(raw: Mapping[str, Any], source: str) -> DigestSchedule:
    _reject_unknown(raw, _DIGEST_KEYS, source, "digest")
    base = DigestSchedule()
    articles = _positive_int(
        raw.get("articles_per_change", base.articles_per_change), source, "digest.articles_per_change"
    )
    trend_days = _positive_int(raw.get("trend_days", base.trend_days), source, "digest.trend_days")
    summary = _mapping(raw.get("summary", {}) or {}, source, "digest.summary")
    _reject_unknown(summary, _SUMMARY_KEYS, source, "digest.summary")
    enabled = summary.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{source}: 'digest.summary.enabled': expected true or false")
    every = parse_duration(summary.get("every", "1d"), source=source, key="digest.summary.every")
    if every < timedelta(hours=1):
        raise ConfigError(f"{source}: 'digest.summary.every': must be at least 1h")
    at = _parse_time_of_day(summary.get("at", "07:00"), source, "digest.summary.at")
    catch_up = summary.get("catch_up", base.summary_catch_up)
    if isinstance(catch_up, bool) or not isinstance(catch_up, int) or not 0 <= catch_up <= 366:
        raise ConfigError(f"{source}: 'digest.summary.catch_up': expected a whole number from 0 to 366")
    return DigestSchedule(
        articles_per_change=articles,
        trend_days=trend_days,
        summary_enabled=enabled,
        summary_every=every,
        summary_at=at,
        summary_catch_up=catch_up,
    )


def _parse_time_of_day(value: Any, source: str, key: str) -> time:
    # YAML 1.1 reads an unquoted 07:30 as the sexagesimal integer 450 (minutes).
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60, tzinfo=UTC)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            return time(int(match[1]), int(match[2]), tzinfo=UTC)
    raise ConfigError(f"{source}: '{key}': expected a UTC time of day like \"07:00\"")


# The longest duration a setting may name: ten years, past any history kept (a window of
# a million days would overflow every date computed with it).
MAX_DURATION_DAYS = 3650


def parse_duration(value: Any, *, source: str = "digest config", key: str = "duration") -> timedelta:
    """``"6h"`` → 6 hours. Units: m/min, h, d, w. Raises :class:`ConfigError` naming ``key``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION_PATTERN.match(value)
        if match:
            seconds = float(match[1]) * _DURATION_UNITS[match[2]]
            if seconds > MAX_DURATION_DAYS * 86400:
                raise ConfigError(f"{source}: '{key}': at most {MAX_DURATION_DAYS}d, got {value[:40]!r}")
            return timedelta(seconds=seconds)
    shown = (
        repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    )
    raise ConfigError(f"{source}: '{key}': expected a duration like 6h, 24h or 14d, got {shown[:80]}")


def _mapping(value: Any, source: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{key or '<top level>'}': expected a mapping")
    return value


def _reject_unknown(raw: Mapping[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{source}: '{where}': unknown key; allowed here: {', '.join(sorted(allowed))}")


def _positive_int(value: Any, source: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: '{key}': expected a positive whole number")
    return value


# ---------------------------------------------------------------------------------------
# Series and bins
# ---------------------------------------------------------------------------------------


def series_name(kind: Literal["topic", "watch"], slug: str) -> str:
    """The series key used everywhere: ``topic:energy``, ``watch:power_of_siberia_2``."""
    name = f"{kind}:{slug}"
    if not SERIES_PATTERN.match(name):
        raise ValueError(f"not a valid series name: {name!r}")
    return name


def floor_to_bin(moment: datetime, bin_size: timedelta) -> datetime:
    """The start of the bin holding ``moment``: bins are aligned to the Unix epoch, UTC.

    Fixed alignment means an instant always falls in the same bin whatever range a query
    asks for, so changes keyed by their time stay stable between runs.
    """
    moment = as_utc(moment)
    return moment - (moment - EPOCH) % bin_size


def bin_counts(
    timestamps: Iterable[datetime], *, start: datetime, end: datetime, bin_size: timedelta
) -> list[tuple[datetime, int]]:
    """Count ``timestamps`` per bin over ``[start, end)``: ``[(bin_start, count), …]``.

    ``start`` is floored to the epoch-aligned bin grid; the last bin is the one holding
    the instant just before ``end`` (it may be incomplete when ``end`` is now). Timestamps
    outside the range are ignored; naive datetimes are taken as UTC. Every bin is listed,
    empty ones with 0: silence is data.
    """
    if bin_size <= timedelta(0):
        raise ValueError("bin_size must be positive")
    end = as_utc(end)
    counts = Counter(bin_index(stamp, bin_size) for stamp in timestamps if as_utc(stamp) < end)
    return bins_from_counts(counts, start=start, end=end, bin_size=bin_size)


def bin_index(moment: datetime, bin_size: timedelta) -> int:
    """The index of ``moment``'s bin on the epoch-aligned grid (bin 0 starts at the epoch)."""
    return (as_utc(moment) - EPOCH) // bin_size


def bins_from_counts(
    counts: Mapping[int, int], *, start: datetime, end: datetime, bin_size: timedelta
) -> list[tuple[datetime, int]]:
    """:func:`bin_counts` from counts already made per bin index (by the database), for
    timestamps before ``end``: every bin over ``[start, end)``, empty ones with 0."""
    if bin_size <= timedelta(0):
        raise ValueError("bin_size must be positive")
    first = floor_to_bin(start, bin_size)
    end = as_utc(end)
    if end <= first:
        return []
    first_index = bin_index(first, bin_size)
    n_bins = math.ceil((end - first) / bin_size)
    return [(first + i * bin_size, counts.get(first_index + i, 0)) for i in range(n_bins)]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken to be UTC already)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------
# Changes
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A detected change in one series' coverage.

    ``at`` is the end of the last bin of the window that changed (when it became
    detectable); ``count`` is the number of articles in that window and ``baseline`` the
    number expected there from the baseline (same window, so the two compare directly);
    ``score`` is ``-log10`` of the tail probability (higher = stronger evidence).
    """

    series: str
    at: datetime
    direction: Direction
    count: int
    baseline: float
    explanation: str
    score: float
    window: timedelta = DAY
    baseline_rate: float = 0.0
    baseline_days: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        """``(series, at ISO, direction)``: the natural unique key for storing changes."""
        return (self.series, self.at.isoformat(), self.direction)

    def to_json(self) -> dict[str, Any]:
        """The change as it appears in ``summitwatch coverage --json`` (plus a few extras)."""
        return {
            "at": self.at.isoformat(),
            "direction": self.direction,
            "count": self.count,
            "baseline": round(self.baseline, 3),
            "explanation": self.explanation,
            "score": round(self.score, 2),
            "window_hours": self.window / timedelta(hours=1),
            "baseline_rate": round(self.baseline_rate, 4),
            "baseline_days": round(self.baseline_days, 2),
        }

    @classmethod
    def from_json(cls, series: str, data: Mapping[str, Any]) -> Change:
        """Rebuild a change stored with :meth:`to_json` (e.g. from the database)."""
        return cls(
            series=series,
            at=datetime.fromisoformat(data["at"]),
            direction=data["direction"],
            count=int(data["count"]),
            baseline=float(data["baseline"]),
            explanation=str(data["explanation"]),
            score=float(data.get("score", 0.0)),
            window=timedelta(hours=float(data.get("window_hours", 24))),
            baseline_rate=float(data.get("baseline_rate", 0.0)),
            baseline_days=float(data.get("baseline_days", 0.0)),
        )


def coverage_json(
    series: str,
    bins: Bins,
    changes: Sequence[Change],
    reported: Mapping[tuple[str, str, str], int] | None = None,
) -> dict[str, Any]:
    """One line of ``summitwatch coverage --json``: ``{"series", "bins", "changes"}``; each
    change with ``reported_in``, the digest that reported it (None when none has yet)."""
    return {
        "series": series,
        "bins": [[start.isoformat(), count] for start, count in bins],
        "changes": [
            {**change.to_json(), "reported_in": (reported or {}).get(change.key)}
            for change in changes
            if change.series == series
        ],
    }


@dataclass(frozen=True)
class _Reference:
    """The level that raised the last alert in one direction: the new normal to beat."""

    rate: float
    count: int
    window: timedelta
    at: datetime
    until: datetime


@dataclass
class _Candidate:
    direction: Direction
    window: timedelta
    count: int
    expected: float
    log_p: float
    baseline_rate: float
    baseline_days: float
    empty_baseline: bool
    reference: _Reference | None
    low_half_rate: float | None = None


def detect_changes(
    series: str,
    bins: Bins,
    params: DetectorParams,
    *,
    history_start: datetime,
    now: datetime,
) -> list[Change]:
    """Every change in ``bins`` (oldest first, contiguous, ``params.bin_size`` apart).

    ``history_start`` is when the system started collecting (warm-up and baseline
    exposure are measured from it, whatever the series' first article); ``now`` bounds
    which bins are complete. Pass the whole history from ``history_start`` to get the
    same result on every run; passing fewer bins treats the missing ones as unobserved.
    Each event fires once (cooldown plus reference levels); see the module docstring.
    """
    if not params.enabled or not bins:
        return []
    bin_size = params.bin_size
    starts = [as_utc(start) for start, _ in bins]
    for previous, current in itertools.pairwise(starts):
        if current - previous != bin_size:
            raise ValueError(f"{series}: bins must be contiguous and {_fmt_duration(bin_size)} apart")
    history_start = as_utc(history_start)
    now = as_utc(now)
    bin_days = bin_size / DAY
    # Prefix sums make every window count O(1); exposure is the observed part of each bin.
    count_prefix = [0]
    exposure_prefix = [0.0]
    for start, (_, count) in zip(starts, bins, strict=True):
        observed = max(timedelta(0), min(bin_size, start + bin_size - history_start)) / DAY
        count_prefix.append(count_prefix[-1] + (count if observed > 0 else 0))
        exposure_prefix.append(exposure_prefix[-1] + observed)

    # silent_bins[i]: how many bins up to and including bins[i] have no articles in a row.
    silent_bins: list[int] = []
    run = 0
    for _, count in bins:
        run = run + 1 if count == 0 else 0
        silent_bins.append(run)

    def window_sum(first: int, last: int) -> tuple[int, float]:
        """Count and observed days of bins[first:last] (clipped to the bins given)."""
        first, last = max(first, 0), max(last, 0)
        return count_prefix[last] - count_prefix[first], exposure_prefix[last] - exposure_prefix[first]

    bins_per_day = round(DAY / bin_size)

    def dispersion(first: int, last: int) -> float:
        """Over-dispersion of the daily counts in bins[first:last], floored at the configured value.

        Method of moments on whole days (counted back from ``last``), as Farrington-style
        surveillance estimates the quasi-Poisson scale from its baseline: a series whose
        coverage already swings from day to day needs a bigger jump to count as a change.
        Days inside windows that raised an alert are left out (Farrington down-weights
        past outbreaks the same way): one earlier burst is an event, not variability.
        """
        if not params.estimate_dispersion:
            return params.overdispersion
        days = []
        stop = last
        while stop - bins_per_day >= max(first, 0):
            count, observed = window_sum(stop - bins_per_day, stop)
            if observed < 1.0 - 1e-9:
                break
            if not any(alerted[stop - bins_per_day : stop]):
                days.append(count)
            stop -= bins_per_day
        if len(days) < 7:
            return params.overdispersion
        mean = sum(days) / len(days)
        if mean <= 0:
            return params.overdispersion
        variance = sum((d - mean) ** 2 for d in days) / (len(days) - 1)
        return max(params.overdispersion, (variance - mean) / mean**2)

    rise_windows = [(w, round(w / bin_size)) for w in params.rise_windows]
    drop_windows = [(w, round(w / bin_size)) for w in params.drop_windows]
    baseline_bins = round(params.baseline_window / bin_size)
    prior_shape = params.prior_articles
    last_alert: dict[Direction, datetime] = {}
    alerted = [False] * len(bins)
    references: dict[Direction, _Reference] = {}
    fired: list[tuple[datetime, _Candidate]] = []

    for index, start in enumerate(starts):
        t = start + bin_size
        if t > now - params.settle:
            break
        if t - history_start < params.warmup:
            continue
        end = index + 1
        for expired in [d for d, level in references.items() if t > level.until]:
            del references[expired]
        candidates: list[_Candidate] = []

        if not _cooling(last_alert.get("up"), t, params.cooldown):
            threshold = math.log(params.significance / len(rise_windows))
            for window, size in rise_windows:
                count, exposure = window_sum(end - size, end)
                base_count, base_days = window_sum(end - size - baseline_bins, end - size)
                window_days = size * bin_days
                if exposure < window_days - 1e-9 or base_days < window_days - 1e-9:
                    continue
                shape = prior_shape + base_count
                rate = shape / (params.prior_days + base_days)
                reference = references.get("up")
                binding = reference is not None and reference.rate > rate
                effective_rate = reference.rate if reference is not None and binding else rate
                expected = effective_rate * window_days
                if count < params.min_count or count < params.min_ratio * expected:
                    continue
                spread = dispersion(end - size - baseline_bins, end - size)
                size_eff = _effective_size(shape, spread, window_days)
                log_p = _log_upper_tail(count, expected, size_eff)
                if log_p <= threshold:
                    candidates.append(
                        _Candidate(
                            "up",
                            window,
                            count,
                            expected,
                            log_p,
                            base_count / base_days,
                            base_days,
                            base_count == 0,
                            reference if binding else None,
                        )
                    )

        if params.report_drops and not _cooling(last_alert.get("down"), t, params.cooldown):
            falls = [(window, size, False) for window, size in drop_windows]
            silence = silent_bins[index] * bin_size
            last_down = last_alert.get("down")
            # The silence test covers the current run of empty bins, however long. A run
            # that began before the last fall was reported is part of that event.
            if (
                params.report_silence
                and silence >= max(params.min_silence, bin_size)
                and (last_down is None or t - silence >= last_down)
            ):
                falls.append((silence, silent_bins[index], True))
            tests = len(drop_windows) + (1 if params.report_silence else 0)
            threshold = math.log(params.significance / tests)
            for window, size, silent in falls:
                count, exposure = window_sum(end - size, end)
                base_first = end - size - baseline_bins
                half = baseline_bins // 2
                older = window_sum(base_first, base_first + half)
                newer = window_sum(base_first + half, end - size)
                window_days = size * bin_days
                if exposure < window_days - 1e-9 or min(older[1], newer[1]) < window_days / 2:
                    continue
                # The lower half sets the level: a one-off spike in the baseline must not
                # make the return to normal look like a thread going quiet.
                (low_count, low_days), (high_count, high_days) = sorted(
                    (older, newer), key=lambda half_sum: half_sum[0] / half_sum[1]
                )
                if low_count / low_days < params.min_drop_rate:
                    continue
                level_count, level_days = low_count, low_days
                if silent and _halves_agree(low_count, low_days, high_count, high_days):
                    # A silence is judged against the whole baseline when its halves tell
                    # the same story: twice the data, and no downward bias from taking
                    # the lower of two noisy halves.
                    level_count, level_days = low_count + high_count, low_days + high_days
                shape = prior_shape + level_count
                rate = shape / (params.prior_days + level_days)
                reference = references.get("down")
                effective_rate = rate
                # A new fall must also beat the level that raised the last one. A silence
                # run that started after a reported silence follows renewed coverage, so
                # a zero reference does not block it.
                if reference is not None and not (silent and reference.rate == 0):
                    effective_rate = min(rate, reference.rate)
                expected = effective_rate * window_days
                if expected <= 0 or count > params.drop_ratio * expected:
                    continue
                spread = dispersion(base_first, end - size)
                size_eff = _effective_size(shape, spread, window_days)
                log_p = _log_lower_tail(count, expected, size_eff)
                if log_p <= threshold:
                    base_count, base_days = window_sum(base_first, end - size)
                    candidates.append(
                        _Candidate(
                            "down",
                            window,
                            count,
                            expected,
                            log_p,
                            base_count / base_days,
                            base_days,
                            base_count == 0,
                            None,
                            low_half_rate=low_count / low_days,
                        )
                    )

        for direction in ("up", "down"):
            mine = [c for c in candidates if c.direction == direction]
            if not mine:
                continue
            # The strongest evidence wins; on a tie the shorter window reads more naturally.
            best = min(mine, key=lambda c: (c.log_p, c.window))
            fired.append((t, best))
            last_alert[direction] = t
            if direction == "up":
                window_bins = round(best.window / bin_size)
                alerted[max(0, end - window_bins) : end] = [True] * (end - max(0, end - window_bins))
            # The rate of the window that fired is the new level, for every window: the
            # longer windows still hold the old level at this point, and using their own
            # rates would let them fire again for the same event once they fill up.
            references[direction] = _Reference(
                rate=best.count / (best.window / DAY),
                count=best.count,
                window=best.window,
                at=t,
                until=t + params.baseline_window,
            )
            other: Direction = "down" if direction == "up" else "up"
            references.pop(other, None)
    # "In the last 4 days" is only true of the most recent judged bin; older changes are
    # worded with their dates, so a digest or listing that shows them later stays right.
    latest = floor_to_bin(now - params.settle, bin_size)
    return [_make_change(series, t, best, current=t == latest) for t, best in fired]


def detection_lead(params: DetectorParams) -> timedelta:
    """How much history before a bin its verdict depends on, in practice: the longest
    window and the baseline before it, the cooldown and the reference level an alert leaves
    for a baseline window, and the baseline that level was measured against.

    A history cut short (the caller bins at most two years) is judged from this long
    before the cut, and the changes in that lead are left out: detected there against a
    baseline cut short and without the alerts before it, they would come and go as the
    cut moves on, and an old one that had never been detected would be reported as new.
    """
    longest = max((*params.rise_windows, *params.drop_windows, params.min_silence))
    return longest + 2 * params.baseline_window + params.cooldown


class ChangeMemo:
    """Changes :func:`detect_changes` found, kept for a long-running process (the web UI)
    that asks again and again about a history which only grows at its end.

    The answer of :func:`detect_changes` depends on the bins, the parameters, the start of
    the history and ``now`` only through the last bin it judges, so it is kept under those
    (the counts as a digest) and never goes stale: a new article, a relabelled or unlinked
    one changes the counts, and the next bin changes the key. Bounded (least recently used
    out) and safe to share between threads.
    """

    def __init__(self, size: int = 128) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self._size = size
        self._kept: OrderedDict[tuple[Any, ...], tuple[Change, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def detect(
        self, series: str, bins: Bins, params: DetectorParams, *, history_start: datetime, now: datetime
    ) -> list[Change]:
        """What ``detect_changes(series, bins, params, ...)`` returns, computed once per input."""
        counts = array("q", (count for _, count in bins))
        key = (
            series,
            params,
            as_utc(history_start),
            floor_to_bin(as_utc(now) - params.settle, params.bin_size),
            as_utc(bins[0][0]) if bins else None,
            len(counts),
            hashlib.blake2b(counts.tobytes(), digest_size=16).digest(),
        )
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
                return list(kept)
        found = detect_changes(series, bins, params, history_start=history_start, now=now)
        with self._lock:
            self._kept[key] = tuple(found)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return found


def unreported_changes(
    detected: Iterable[Change],
    reported: Iterable[tuple[str, datetime, str]],
    config: DetectorConfig,
) -> list[Change]:
    """The detected changes that are not already reported, event by event.

    ``reported`` holds ``(series, at, direction)`` of changes already sent. A detected
    change within the series' cooldown of a reported one in the same direction can be the
    same event (late-arriving articles can move the first detectable bin), so it is not
    reported again; but each reported change stands for one detected change, the nearest
    (:func:`reported_matches`), so a new event that a moved detection let through after its
    cooldown is reported.
    """
    detected = list(detected)
    matched = reported_matches(detected, reported_events(reported), config)
    return [change for change in detected if change.key not in matched]


def reported_events(reported: Iterable[tuple[str, datetime, str]]) -> dict[tuple[str, str], list[datetime]]:
    """``(series, at, direction)`` of reported changes, by series and direction."""
    sent: dict[tuple[str, str], list[datetime]] = {}
    for series, at, direction in reported:
        sent.setdefault((series, direction), []).append(as_utc(at))
    return sent


def is_reported_event(
    series: str,
    at: datetime,
    direction: str,
    sent: Mapping[tuple[str, str], Sequence[datetime]],
    config: DetectorConfig,
) -> bool:
    """Whether a change at ``at`` is within reach of one of ``sent`` (:func:`reported_events`):
    the same series and direction, within the series' cooldown."""
    return reported_moment(series, at, direction, sent, config) is not None


def reported_moment(
    series: str,
    at: datetime,
    direction: str,
    sent: Mapping[tuple[str, str], Sequence[datetime]],
    config: DetectorConfig,
) -> datetime | None:
    """The moment of a reported change of ``sent`` within reach of a change at ``at``
    (:func:`is_reported_event`), or None."""
    reach = _reach(series, config)
    return next(
        (moment for moment in sent.get((series, direction), []) if abs(as_utc(at) - moment) < reach), None
    )


def reported_matches(
    detected: Iterable[Change],
    sent: Mapping[tuple[str, str], Sequence[datetime]],
    config: DetectorConfig,
) -> dict[tuple[str, str, str], datetime]:
    """The detected changes that are reported ones (by :attr:`Change.key`), each with the
    moment it was reported at.

    A reported change is the same event as the detected change of its series and direction
    nearest to it within the series' cooldown (the earlier on a tie). Only that one: the
    detector keeps two alerts in one direction a cooldown apart, so when a back-fill moves
    a reported event's detection earlier, a new event can be detected less than a cooldown
    after the moment the first was reported at, and it is another event, not that one.
    """
    by_kind: dict[tuple[str, str], list[Change]] = {}
    for change in detected:
        by_kind.setdefault((change.series, change.direction), []).append(change)
    matched: dict[tuple[str, str, str], tuple[timedelta, datetime]] = {}
    for (series, direction), changes in by_kind.items():
        reach = _reach(series, config)
        for moment in sent.get((series, direction), []):
            nearest = min(changes, key=lambda change: (abs(as_utc(change.at) - moment), as_utc(change.at)))
            distance = abs(as_utc(nearest.at) - moment)
            if distance >= reach:
                continue
            known = matched.get(nearest.key)
            if known is None or distance < known[0]:
                matched[nearest.key] = (distance, moment)
    return {key: moment for key, (_, moment) in matched.items()}


def _reach(series: str, config: DetectorConfig) -> timedelta:
    return max(config.params_for(series).cooldown, config.bin_size)


def _cooling(last: datetime | None, t: datetime, cooldown: timedelta) -> bool:
    return last is not None and t - last < cooldown


def _make_change(series: str, at: datetime, candidate: _Candidate, *, current: bool) -> Change:
    window_text = _window_phrase(candidate.window, at, current=current)
    days_text = _fmt_days(candidate.baseline_days)
    p_text = _fmt_p(candidate.log_p)
    count_text = _plural(candidate.count, "article")
    if candidate.direction == "up":
        if candidate.empty_baseline:
            explanation = (
                f"{count_text} {window_text} after none in the previous {days_text} "
                f"({format_number(candidate.expected)} expected; p {p_text})"
            )
        else:
            explanation = (
                f"{count_text} {window_text} against "
                f"{format_number(candidate.baseline_rate)}/day over the previous {days_text} "
                f"({format_number(candidate.expected)} expected; p {p_text})"
            )
        if candidate.reference:
            previous = candidate.reference
            explanation += (
                f", and above the {format_number(previous.rate)}/day ({previous.count} in "
                f"{_fmt_window(previous.window)}) that raised the alert of {previous.at:%Y-%m-%d %H:%M} UTC"
            )
    else:
        explanation = (
            f"{count_text} {window_text} against {format_number(candidate.baseline_rate)}/day "
            f"over the previous {days_text}, at least {format_number(candidate.low_half_rate or 0.0)}/day "
            f"in each half ({format_number(candidate.expected)} expected; p {p_text})"
        )
    return Change(
        series=series,
        at=at,
        direction=candidate.direction,
        count=candidate.count,
        baseline=candidate.expected,
        explanation=explanation,
        score=-candidate.log_p / math.log(10),
        window=candidate.window,
        baseline_rate=candidate.baseline_rate,
        baseline_days=candidate.baseline_days,
    )


# ---------------------------------------------------------------------------------------
# Negative binomial tails, exact, in log space
# ---------------------------------------------------------------------------------------


def _effective_size(shape: float, overdispersion: float, window_days: float) -> float:
    """The negative binomial size matching the predictive variance (see module docstring)."""
    inverse = 1.0 / shape + overdispersion * (1.0 + 1.0 / shape) / window_days
    return 1.0 / inverse


def _nb_log_pmf(k: int, mean: float, size: float) -> float:
    if mean <= 0:
        return 0.0 if k == 0 else -math.inf
    log_total = math.log(size + mean)
    return (
        math.lgamma(k + size)
        - math.lgamma(size)
        - math.lgamma(k + 1)
        + size * (math.log(size) - log_total)
        + k * (math.log(mean) - log_total)
    )


def _log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _log_upper_tail(x: int, mean: float, size: float) -> float:
    """``log P(X >= x)`` for a negative binomial with this mean and size."""
    if x <= 0:
        return 0.0
    if x <= mean:
        # The tail is large here; the complement is accurate enough and shorter.
        lower = math.exp(_log_lower_tail(x - 1, mean, size))
        return math.log(max(1.0 - lower, 1e-300))
    q = mean / (size + mean)
    log_term = _nb_log_pmf(x, mean, size)
    terms = [0.0]
    relative = 0.0
    k = x
    for _ in range(_TAIL_MAX_TERMS):
        # Ratio of consecutive terms; below 1 for every k above the mode (mode < mean < x).
        ratio = (k + size) / (k + 1) * q
        relative += math.log(ratio)
        k += 1
        terms.append(relative)
        if relative < math.log(_TAIL_EPSILON) and ratio < 1.0:
            # The rest is bounded by a geometric series with ratio max(ratio, q).
            break
    return log_term + _log_sum_exp(terms)


def _log_lower_tail(x: int, mean: float, size: float) -> float:
    """``log P(X <= x)`` for a negative binomial with this mean and size."""
    if x < 0:
        return -math.inf
    return min(0.0, _log_sum_exp([_nb_log_pmf(k, mean, size) for k in range(x + 1)]))


def _halves_agree(low_count: int, low_days: float, high_count: int, high_days: float) -> bool:
    """Whether the busier half's share of the baseline's articles is within chance.

    Under one rate the busier half holds Binomial(n, its share of the observed days) of
    the n articles; it disagrees when that tail is below ``_HALVES_AGREE``.
    """
    total = low_count + high_count
    share = high_days / (low_days + high_days)
    return _log_binomial_upper_tail(high_count, total, share) > math.log(_HALVES_AGREE)


def _log_binomial_upper_tail(k: int, n: int, p: float) -> float:
    """``log P(X >= k)`` for X binomial (n, p), summed exactly."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q
        for j in range(k, n + 1)
    ]
    return min(0.0, _log_sum_exp(terms))


def upper_tail_probability(x: int, mean: float, size: float) -> float:
    """``P(X >= x)``, X negative binomial (mean, size); exposed for tests and benchmarks."""
    return math.exp(_log_upper_tail(x, mean, size))


def lower_tail_probability(x: int, mean: float, size: float) -> float:
    """``P(X <= x)``, X negative binomial (mean, size); exposed for tests and benchmarks."""
    return math.exp(_log_lower_tail(x, mean, size))


# ---------------------------------------------------------------------------------------
# Wording
# ---------------------------------------------------------------------------------------


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _fmt_p(log_p: float) -> str:
    log10_p = log_p / math.log(10)
    if log10_p < -300:
        return "< 1e-300"
    p = 10**log10_p
    return f"= {p:.1g}" if p >= 1e-3 else f"= {p:.0e}".replace("e-0", "e-")


def _window_phrase(window: timedelta, at: datetime, *, current: bool) -> str:
    """The window as "in the last 3 days" at the latest bin, otherwise by its dates (UTC)."""
    if current:
        return f"in the last {_fmt_window(window)}"
    return f"in the {_fmt_window(window)} from {at - window:%Y-%m-%d %H:%M} to {at:%Y-%m-%d %H:%M} UTC"


def _fmt_window(window: timedelta) -> str:
    hours = window / timedelta(hours=1)
    if hours <= 48:
        return f"{hours:g} h"
    return _fmt_days(window / DAY)


def _fmt_days(days: float) -> str:
    if days < 2:
        return f"{days * 24:.0f} h"
    rounded = round(days, 1)
    return f"{rounded:g} days"


def _fmt_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"

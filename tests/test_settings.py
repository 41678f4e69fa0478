from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults_are_safe(tmp_path: Path) -> None:
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    assert settings.db_url == "sqlite:///summitwatch.db"
    assert settings.allow_private_networks is False
    assert settings.http.max_bytes == 10_000_000
    assert settings.slack.bot_token is None


@pytest.mark.parametrize(("given", "level"), [("info", "INFO"), ("Debug", "DEBUG"), (" warning ", "WARNING")])
def test_the_log_level_is_read_in_any_case(tmp_path: Path, given: str, level: str) -> None:
    """`SUMMITWATCH_LOG_LEVEL=info` was refused: only the capitals were a level."""
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_LOG_LEVEL": given})
    assert settings.log_level == level


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("poll:\n  interval_minutes: 30\nhttp:\n  max_redirects: 2\n")
    settings = load_settings(
        {
            "SUMMITWATCH_CONFIG_DIR": str(tmp_path),
            "SUMMITWATCH_POLL__INTERVAL_MINUTES": "5",
            "SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "true",
            "SLACK_BOT_TOKEN": "xoxb-secret-token",
        }
    )
    assert settings.poll.interval_minutes == 5
    assert settings.http.max_redirects == 2
    assert settings.allow_private_networks is True
    assert settings.slack.bot_token is not None
    assert "xoxb-secret-token" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SUMMITWATCH_POLL__INTERVAL_MINUTES": "0"}, "poll.interval_minutes"),
        ({"SUMMITWATCH_ALLOW_PRIVATE_NETWORKS": "maybe"}, "allow_private_networks"),
        ({"SUMMITWATCH_DB_URL": "mysql://x"}, "db_url"),
        ({"SUMMITWATCH_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"SUMMITWATCH_LOG_LEVEL": "verbose"}, "log_level"),
        ({"SUMMITWATCH_HTTP__TIMEOUT": "3"}, "http.timeout"),
        # Each of these loaded, then failed later and elsewhere: the DAG that would not
        # parse, every feed blamed for a header the client refused, every item failed by
        # an encoder that could not load.
        ({"SUMMITWATCH_POLL__SCHEDULE": "99 99 99 99 99"}, "poll.schedule"),
        ({"SUMMITWATCH_POLL__SCHEDULE": "0 24 * * *"}, "poll.schedule"),
        ({"SUMMITWATCH_POLL__SCHEDULE": "*/0 * * * *"}, "poll.schedule"),
        ({"SUMMITWATCH_POLL__SCHEDULE": "0 7 * * mon-sun"}, "poll.schedule"),
        ({"SUMMITWATCH_HTTP__USER_AGENT": "sw\r\nX-Injected: 1"}, "http.user_agent"),
        ({"SUMMITWATCH_HTTP__USER_AGENT": "summitwatch/ü"}, "http.user_agent"),
        ({"SUMMITWATCH_ENCODER__MODEL": "bogus"}, "encoder.model"),
        ({"SUMMITWATCH_ENCODER__MODEL": "mod:"}, "encoder.model"),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), **environ})
    assert f"'{named}'" in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "value"),
    [
        ({"SUMMITWATCH_POLL__SCHEDULE": "5,35 */2 1-15 jan,jul *"}, "5,35 */2 1-15 jan,jul *"),
        ({"SUMMITWATCH_POLL__SCHEDULE": "0 7 * * mon-fri"}, "0 7 * * mon-fri"),
        ({"SUMMITWATCH_POLL__SCHEDULE": "@daily"}, "@daily"),
        ({"SUMMITWATCH_ENCODER__MODEL": "sentence-transformers:LaBSE"}, "sentence-transformers:LaBSE"),
        ({"SUMMITWATCH_ENCODER__MODEL": "my_models.big:load"}, "my_models.big:load"),
    ],
)
def test_good_schedules_and_model_names_are_taken(
    tmp_path: Path, environ: dict[str, str], value: str
) -> None:
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), **environ})
    assert value in (settings.poll.schedule, settings.encoder.model)


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("http:\n  max_byte: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path)})
    message = str(caught.value)
    assert "http.max_byte" in message
    assert "max_bytes" in message


def test_literal_error_lists_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SUMMITWATCH_CONFIG_DIR": str(tmp_path), "SUMMITWATCH_LOG_LEVEL": "LOUD"})
    assert "'DEBUG'" in str(caught.value)


def test_shipped_settings_file_is_valid() -> None:
    config = Path(__file__).resolve().parent.parent / "config"
    settings = load_settings({"SUMMITWATCH_CONFIG_DIR": str(config)})
    assert settings.poll.min_text_chars == 150


def test_encoder_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"SUMMITWATCH_CONFIG_DIR": str(tmp_path)}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert load_settings(base).encoder.cache_path == tmp_path / "xdg" / "summitwatch"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert load_settings(base).encoder.cache_path == Path.home() / ".cache" / "summitwatch"
    chosen = load_settings({**base, "SUMMITWATCH_ENCODER__CACHE_DIR": str(tmp_path / "models")})
    assert chosen.encoder.cache_path == tmp_path / "models"
    assert load_settings({**base, "SUMMITWATCH_ENCODER__CACHE_DIR": ""}).encoder.cache_path is None


def test_configuration_yaml_is_read_by_the_c_parser_with_the_same_result() -> None:
    import yaml

    from pipeline import yamlfile

    assert issubclass(yamlfile._Loader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    config = Path(__file__).resolve().parent.parent / "config"
    files = sorted(config.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yamlfile.safe_load(text) == yaml.safe_load(text), path.name
    with pytest.raises(yaml.YAMLError):
        yamlfile.safe_load("feeds: [unclosed")
    with pytest.raises(yaml.YAMLError):  # a safe loader: no Python objects
        yamlfile.safe_load("!!python/object/apply:os.system ['true']")
    with pytest.raises(yaml.YAMLError, match="found the key 'a' twice"):
        yamlfile.safe_load("a: 1\nb: 2\na: 3\n")
    assert yamlfile.safe_load("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  x: 3\n")["use"] == {"x": 3, "y": 2}

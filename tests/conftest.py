"""Shared fixtures: settings on a throw-away database, a real PostgreSQL, the fixture site."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from pipeline.db.engine import make_engine, session_factory, upgrade_schema
from pipeline.fixture_site import FixtureServer
from pipeline.settings import Settings, load_settings
from tests.optional_suites import pytest_runtest_logreport, pytest_unconfigure, require
from tests.postgres_server import temporary_cluster

# The optional-suite hooks: a run without PostgreSQL or Chromium says so in its last line.
__all__ = ["pytest_runtest_logreport", "pytest_unconfigure"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def encoder_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite's own cache folder (``encoder.cache_dir`` "auto"), for it and its subprocesses."""
    folder = tmp_path_factory.mktemp("cache")
    earlier = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if earlier is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = earlier


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server: SUMMITWATCH_TEST_PG_URL, or a cluster started here."""
    given = os.environ.get("SUMMITWATCH_TEST_PG_URL")
    if given:
        yield given
        return
    try:
        with temporary_cluster() as url:
            yield url
    except RuntimeError as exc:
        require("postgres", f"no PostgreSQL server available: {exc}")


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server, dropped afterwards."""
    name = f"sw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


def make_settings(db_url: str, **overrides: object) -> Settings:
    """Settings as a user would have them, pointing at ``db_url``, loopback allowed."""
    environ = {"SUMMITWATCH_CONFIG_DIR": str(REPO_ROOT / "config")}
    return load_settings(environ, overrides={"db_url": db_url, "allow_private_networks": True, **overrides})


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    """A session on a freshly migrated database."""
    engine = make_engine(settings.db_url)
    upgrade_schema(engine)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def fixture_site() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Airflow home (metadata database migrated on first use) for the whole session."""
    return tmp_path_factory.mktemp("airflow-home")

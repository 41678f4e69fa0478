"""A run without PostgreSQL or Chromium ends saying which suites it skipped; CI fails instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

SAMPLE = """
from tests.optional_suites import require

def test_needs_postgres_a():
    require("postgres", "initdb not found")

def test_needs_postgres_b():
    require("postgres", "initdb not found")

def test_needs_chromium():
    require("chromium", "no /usr/bin/chromium")

def test_plain():
    assert 1 + 1 == 2
"""


def run_sample(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.optional_suites", "-p", "no:cacheprovider", "-q", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_skipped_suites_are_named_in_the_last_line(tmp_path: Path) -> None:
    result = run_sample(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("SKIPPED SUITES")
    assert "PostgreSQL (2 tests)" in last and "SUMMITWATCH_TEST_PG_URL" in last
    assert "Chromium (web UI in a browser) (1 test)" in last and "apt-get install chromium" in last
    assert "1 passed, 3 skipped" in result.stdout


def test_missing_components_fail_in_ci(tmp_path: Path) -> None:
    result = run_sample(tmp_path, ci=True)
    assert result.returncode == 1
    assert "3 failed, 1 passed" in result.stdout
    assert "PostgreSQL is required in CI: initdb not found" in result.stdout
    assert "SKIPPED SUITES" not in result.stdout

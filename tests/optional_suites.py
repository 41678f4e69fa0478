"""Suites that need something outside Python: skipped locally when it is missing, required in CI.

A test that needs PostgreSQL, Chromium or the shared extraction benchmark calls
:func:`require`. Without the component it is skipped (or fails when ``CI`` is set), and
the run ends with one line naming each skipped suite and how to run it.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

import pytest

_REASON_PREFIX = "optional suite "


@dataclass(frozen=True)
class Suite:
    name: str
    how_to_run: str


SUITES = {
    "postgres": Suite(
        "PostgreSQL",
        "install the PostgreSQL server (initdb and pg_ctl; Debian: apt-get install postgresql) "
        "or set SUMMITWATCH_TEST_PG_URL to a server where the tests may create databases",
    ),
    "chromium": Suite(
        "Chromium (web UI in a browser)", "install Debian's chromium (apt-get install chromium)"
    ),
    "extraction-benchmark": Suite(
        "extraction benchmark", "put the shared extraction-benchmark/ folder next to the repository"
    ),
}
_skipped: Counter[str] = Counter()


def require(suite: str, missing: str) -> NoReturn:
    """Stop the current test because ``missing``: a skip locally, a failure in CI."""
    name = SUITES[suite].name
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI: {missing}")
    pytest.skip(f"{_REASON_PREFIX}{suite}: {missing}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(_REASON_PREFIX):
            _skipped[reason[len(_REASON_PREFIX) :].split(":", 1)[0]] += 1


def summary_line() -> str | None:
    """One line naming the skipped suites and how to run them, or ``None``."""
    if not _skipped:
        return None
    parts = [
        f"{SUITES[key].name} ({count} test{'s' if count != 1 else ''}): {SUITES[key].how_to_run}"
        for key, count in sorted(_skipped.items())
        if key in SUITES
    ]
    return "SKIPPED SUITES, not run on this machine (CI runs them all): " + "; ".join(parts) + "."


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own summary, so it is the last line of the run.
    line = summary_line()
    if line:
        sys.stdout.write(f"\n{line}\n")
        sys.stdout.flush()

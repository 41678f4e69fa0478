"""summitwatch: news monitoring for Russia-China summitry.

Importing this package creates nothing (no connections, no models, no threads): Airflow
parses DAG files that import it constantly. Build settings with :func:`load_settings`
and pass them down.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DatabaseError, ItemError, SummitwatchError

if TYPE_CHECKING:
    from pipeline.settings import Settings, load_settings

__all__ = ["ConfigError", "DatabaseError", "ItemError", "Settings", "SummitwatchError", "load_settings"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # The settings module (pydantic, YAML) loads on first use: `summitwatch --help` and
    # every submodule import stay cheap.
    if name in ("Settings", "load_settings"):
        from pipeline import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")

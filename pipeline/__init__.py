"""summitwatch: news monitoring for Russia-China summitry.

Importing this package creates nothing (no connections, no models, no threads): Airflow
parses DAG files that import it constantly. Build settings with :func:`load_settings`
and pass them down.
"""

from __future__ import annotations

import logging

from pipeline.errors import ConfigError, DatabaseError, ItemError, SummitwatchError
from pipeline.settings import Settings, load_settings

__all__ = ["ConfigError", "DatabaseError", "ItemError", "Settings", "SummitwatchError", "load_settings"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

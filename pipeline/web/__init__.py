"""The read-only web UI behind ``summitwatch serve``: a thin layer over the database queries.

Importing this package creates nothing; :func:`create_app` builds the application and its
lifespan owns the database engine.
"""

from __future__ import annotations

from pipeline.web.app import create_app

__all__ = ["create_app"]

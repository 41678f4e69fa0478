"""Alembic environment: the engine comes from the caller (``upgrade_schema``)."""

from __future__ import annotations

from alembic import context

from pipeline.db.schema import Base

engine = context.config.attributes.get("engine")
if engine is None:
    # Plain `alembic` CLI use: build the engine from the validated settings.
    from pipeline.db.engine import make_engine
    from pipeline.settings import load_settings

    engine = make_engine(load_settings().db_url)

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()

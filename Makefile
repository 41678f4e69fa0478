# Everything runs through uv with the committed lock file. A fresh machine needs only
# python3 with pip and venv: uv itself is installed into .uv/ on first use.
UV_VERSION := 0.13.8
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --frozen

.PHONY: demo test test-fast lint typecheck sync bytecode airflow bench clean

demo: .venv/.synced bytecode
	$(RUN) summitwatch demo

test: .venv/.synced bytecode lint typecheck
	$(RUN) pytest

test-fast: .venv/.synced bytecode
	$(RUN) pytest -m "not slow"

lint: .venv/.synced
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: .venv/.synced
	$(RUN) mypy

sync: .venv/.synced bytecode

bench: .venv/.synced
	$(RUN) python benchmarks/extraction.py

$(UV):
	python3 -m venv .uv
	.uv/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled once at install: every `summitwatch` start would otherwise compile the
# libraries' sources again wherever .pyc files cannot be written (PYTHONDONTWRITEBYTECODE).
.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode
	touch $@

# The project's own packages are installed in place (editable), which --compile-bytecode
# leaves alone: where .pyc files cannot be written on import, every start would compile
# them again (0.17 s of CPU for all of pipeline/). compileall writes them anyway and
# skips what is up to date.
bytecode: .venv/.synced
	$(RUN) python -m compileall -q pipeline dags

clean:
	rm -rf .venv .uv .pytest_cache .mypy_cache .ruff_cache

# A local Airflow (API server, scheduler, DAG processor, triggerer in one process) with
# this project's DAGs and config, on SQLite: http://localhost:8080 (login printed at start).
airflow: .venv/.synced
	AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False SUMMITWATCH_CONFIG_DIR=$(CURDIR)/config \
	SUMMITWATCH_DB_URL=sqlite:///$(CURDIR)/summitwatch.db \
	sh -c '$(RUN) summitwatch init && exec $(RUN) airflow standalone'

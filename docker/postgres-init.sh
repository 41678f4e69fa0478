#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first created: a database and role for
# summitwatch next to Airflow's own metadata database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE summitwatch LOGIN PASSWORD '${POSTGRES_SUMMITWATCH_PASSWORD}';
CREATE DATABASE summitwatch OWNER summitwatch;
SQL

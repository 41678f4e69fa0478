# The official Airflow 3 image, extended with the summitwatch package, its config and DAGs.
# Build: docker compose build   (see README, "Production with docker compose")
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}-python3.11

ARG AIRFLOW_VERSION
ENV SUMMITWATCH_CONFIG_DIR=/opt/summitwatch/config \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --chown=airflow:root pyproject.toml README.md /opt/summitwatch/
COPY --chown=airflow:root pipeline /opt/summitwatch/pipeline
COPY --chown=airflow:root config /opt/summitwatch/config
COPY --chown=airflow:root sql /opt/summitwatch/sql
# Pinning apache-airflow alongside keeps pip from moving the image's Airflow.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /opt/summitwatch

COPY --chown=airflow:root dags /opt/airflow/dags
# Where digests are written when Slack is not configured (a volume in docker-compose.yml):
# made here, so that the volume starts owned by the user the tasks run as.
RUN mkdir -p /opt/airflow/digests

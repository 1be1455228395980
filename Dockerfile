# The official Airflow 3.3.2 image plus this project's pinned requirements.
FROM apache/airflow:3.3.2-python3.11

USER root
# curl for health checks of the sandbox-free deployment; nothing else is needed at the OS level.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:0 requirements.txt constraints.txt build-constraints.txt /opt/airflow/project/
# Pin apache-airflow so pip never moves the image's Airflow; the build constraint lets
# ibm-schematics' sdist build (it needs setuptools<72).
RUN pip install --no-cache-dir "pip==26.3" \
    && pip install --no-cache-dir "apache-airflow==3.3.2" \
        -r /opt/airflow/project/requirements.txt \
        -c /opt/airflow/project/constraints.txt \
        --build-constraint /opt/airflow/project/build-constraints.txt

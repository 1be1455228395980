# The official Airflow 3.3.2 image plus this project's runtime requirements, and nothing else:
# no test tools, no sandbox (they live in requirements-dev.txt and run beside a deployment).
FROM apache/airflow:3.3.2-python3.11

USER root
# curl for health checks of the sandbox-free deployment; nothing else is needed at the OS level.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:0 requirements.txt build-constraints.txt /opt/airflow/project/
COPY --chown=airflow:0 deploy/check-secrets.sh /opt/airflow/project/check-secrets.sh
# The IBM Cloud provider (ibm_cloud_airflow only, not gpu_pipeline), installed as a package so that
# `airflow providers list` shows it and the UI offers its connection types. It comes before the
# mounted plugins/ on sys.path: rebuild the image (`docker compose build`) after changing it.
COPY --chown=airflow:0 plugins/pyproject.toml /opt/airflow/project/provider/pyproject.toml
COPY --chown=airflow:0 plugins/ibm_cloud_airflow /opt/airflow/project/provider/ibm_cloud_airflow
# Constraints, chosen deliberately: the image's packages were installed under Airflow's own tested
# constraint set for 3.3.2, and pinning apache-airflow keeps pip from moving them. The project's
# constraints.txt is NOT used here: it locks the development venv (test tools included: moto pins
# a botocore that the image's aiobotocore refuses). Our own packages are pinned in requirements.txt;
# `pip check` fails the build if anything they pull in conflicts with the image.
# The build constraint only lets ibm-schematics' sdist build (it needs setuptools<72).
RUN pip install --no-cache-dir "pip==26.3" \
    && pip install --no-cache-dir "apache-airflow==3.3.2" \
        -r /opt/airflow/project/requirements.txt \
        /opt/airflow/project/provider \
        --build-constraint /opt/airflow/project/build-constraints.txt \
    && rm -rf /opt/airflow/project/provider \
    && pip check

"""`make cluster` runs Airflow with the compose file's configuration: only hosts and ports differ.

The cluster itself (PostgreSQL, Redis, two schedulers, two triggerers, two Celery workers, through
crashes and a backfill) is exercised by `make cluster-test`, which `.ci/run` runs after this suite.
"""

from __future__ import annotations

import shutil

import pytest

from scripts.cluster import HOST_SETTINGS, CeleryCluster, compose_airflow_settings


@pytest.fixture
def cluster(tmp_path):
    made = CeleryCluster(tmp_path / "home", connections={"AIRFLOW_CONN_X": "{}"})
    yield made
    made._http.close()
    shutil.rmtree(made.services, ignore_errors=True)


def test_every_compose_setting_reaches_the_cluster_unchanged_but_hosts(cluster):
    compose = compose_airflow_settings()
    assert compose["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for key, value in compose.items():
        if key not in HOST_SETTINGS:
            assert cluster.env[key] == value, key
    # the hosts of the compose network become the local servers
    assert cluster.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert "@127.0.0.1:" in cluster.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert cluster.env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")
    assert cluster.env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://127.0.0.1:")
    assert cluster.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{cluster.base_url}/execution/"
    assert not any(key.startswith("AIRFLOW__CORE__SIMPLE_AUTH") for key in cluster.env)
    assert cluster.env["AIRFLOW_CONN_X"] == "{}"


def test_airflow_runs_from_the_runtime_environment_alone(cluster):
    # .venv-cluster holds requirements.txt + requirements-cluster.txt: no sandbox, no test tools
    assert cluster.python.endswith("/.venv-cluster/bin/python")
    assert cluster.env["PATH"].startswith(cluster.python.removesuffix("/python"))


def test_the_compose_layout_with_ports_of_their_own(cluster):
    names = list(cluster.specs)
    assert names.count("api-server") == names.count("dag-processor") == 1
    for kind in ("scheduler", "triggerer", "worker"):
        assert sum(name.startswith(f"{kind}-") for name in names) == 2, kind
    # components of one kind share a host: each serves its health check or logs on its own port
    ports = [port for _, env in cluster.specs.values() for port in env.values()]
    assert len(ports) == len(set(ports)) == 6

"""docker-compose.yaml follows the official Airflow 3 layout and keeps secrets out of the file.

There is no Docker engine on CI machines, so the file is checked by parsing it, as Compose would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
}
LONG_RUNNING = AIRFLOW_SERVICES - {"airflow-init"} | {"postgres", "redis"}
SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|TOKEN|API_?KEY|FERNET|_CONN_|SQL_ALCHEMY_CONN|BACKEND|BROKER", re.I
)
INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_official_services_are_present(compose):
    assert AIRFLOW_SERVICES | {"postgres", "redis"} <= set(compose["services"])


def test_airflow_services_build_from_the_dockerfile_with_the_project_requirements(compose):
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2\b", dockerfile, re.M)
    assert "requirements.txt" in dockerfile and "apache-airflow==3.3.2" in dockerfile
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name].get("build") == ".", name


def test_project_folders_are_mounted_in_every_airflow_service(compose):
    for name in AIRFLOW_SERVICES:
        targets = {v.rsplit(":", 1)[1] for v in compose["services"][name]["volumes"]}
        for folder in ("dags", "plugins", "terraform", "workload"):
            assert f"/opt/airflow/{folder}" in targets, (name, folder)


def test_every_long_running_service_has_a_healthcheck(compose):
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"


def test_executor_and_shared_execution_api(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080")


def _env_items(compose: dict):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env if "=" in e)
        for key, value in items:
            yield name, key, str(value)


def test_no_secret_is_written_inline(compose):
    # Every secret-looking setting must come from the env file through ${...} interpolation.
    checked = 0
    for service, key, value in _env_items(compose):
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            checked += 1
            secretish = INTERPOLATION.sub("", value)
            assert not re.search(r":[^:@/]+@", secretish), f"{service}.{key} has an inline password"
            assert key.endswith(("_URL", "BACKEND", "_CONN")) or INTERPOLATION.search(value), (
                f"{service}.{key} is set inline"
            )
    assert checked >= 3
    for service in AIRFLOW_SERVICES:
        assert compose["services"][service]["env_file"], service


def test_credentials_come_from_a_git_ignored_env_file():
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".env" in ignored
    example = (REPO / ".env.example").read_text()
    assert "AIRFLOW_CONN_IBM_CLOUD_DEFAULT" in example and "AIRFLOW_CONN_IBM_COS_DEFAULT" in example
    assert "<IBM Cloud API key>" in example  # a placeholder, never a key

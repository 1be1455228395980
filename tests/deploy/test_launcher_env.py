"""The local launchers pass the caller's Airflow and OpenLineage settings on, but those they own.

`make demo` (scripts/local_run.py), `make airflow` (scripts/local_airflow.py), `make cluster`
(scripts/cluster.py) and the bench build their Airflow's environment here. A deployment with the
OpenLineage provider configures it through AIRFLOW__OPENLINEAGE__* and OPENLINEAGE_* variables:
those reach the local Airflow; home, database, folders, executor, login and ports stay the
launcher's.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from scripts import local_run
from scripts.cluster import CeleryCluster
from scripts.local_airflow import AirflowCluster
from scripts.local_run import airflow_env, passed_through

TRANSPORT = '{"type": "file", "log_file_path": "/tmp/ol.jsonl"}'


@pytest.fixture
def caller(monkeypatch):
    """The caller's environment: OpenLineage's settings, a tuning knob, and some the launcher owns."""
    settings = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": TRANSPORT,
        "OPENLINEAGE_NAMESPACE": "team-ml",
        "AIRFLOW__CORE__PARALLELISM": "3",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /prod/secret",
        "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
        "AIRFLOW__API__PORT": "9999",
        "AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER": "True",
        "AIRFLOW_CONN_IBM_CLOUD_DEFAULT": '{"conn_type": "ibm_cloud", "password": "prod-key"}',
        "AIRFLOW_CONFIG": "/prod/airflow.cfg",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    local_run._announced.clear()
    return settings


def test_the_caller_settings_pass_but_those_the_launcher_owns(caller, tmp_path, capsys):
    env = airflow_env(tmp_path, {"AIRFLOW_CONN_IBM_COS_DEFAULT": "{}"})

    assert env["AIRFLOW__OPENLINEAGE__TRANSPORT"] == TRANSPORT
    assert env["OPENLINEAGE_NAMESPACE"] == "team-ml"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert env["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "DEBUG"  # the caller's, over the default INFO
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path}/airflow.db"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" not in env  # would not win, but is not passed
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    # connections, variables and config files are the launcher's alone
    assert "AIRFLOW_CONN_IBM_CLOUD_DEFAULT" not in env and "AIRFLOW_CONFIG" not in env
    assert env["AIRFLOW_CONN_IBM_COS_DEFAULT"] == "{}"

    said = capsys.readouterr().err
    assert "passing through your settings" in said and "AIRFLOW__OPENLINEAGE__TRANSPORT" in said
    assert "OPENLINEAGE_NAMESPACE" in said and "SQL_ALCHEMY_CONN" not in said
    assert "team-ml" not in said and "/tmp/ol.jsonl" not in said  # names, never values
    airflow_env(tmp_path, {})
    assert capsys.readouterr().err == ""  # said once


def test_without_caller_settings_nothing_is_said(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(local_run.os, "environ", {"PATH": "/usr/bin", "HOME": "/root"})
    local_run._announced.clear()
    env = airflow_env(tmp_path, {})
    assert env["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "INFO" and env["PATH"] == "/usr/bin"
    assert capsys.readouterr().err == ""


def test_an_owned_setting_is_held_in_its_cmd_and_secret_forms():
    environ = {"AIRFLOW__X__Y_CMD": "c", "AIRFLOW__X__Y_SECRET": "s", "AIRFLOW__X__Z": "z", "OTHER": "o"}
    assert passed_through({"AIRFLOW__X__Y"}, environ) == {"AIRFLOW__X__Z": "z"}


def test_demo_runs_keep_worker_endings_whatever_the_caller_says(caller, tmp_path, monkeypatch):
    """dag.test() cannot resume a task that a trigger ended: start_run owns this one setting."""
    started, real_popen = {}, subprocess.Popen

    def popen(cmd, **kwargs):
        started.update(kwargs["env"])
        return real_popen(["true"])

    monkeypatch.setattr(local_run.subprocess, "Popen", popen)
    local_run.start_run(
        home=tmp_path, connections={}, conf={}, result=tmp_path / "r.json", log=tmp_path / "log"
    ).wait()
    assert started["AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER"] == "False"
    assert started["AIRFLOW__OPENLINEAGE__TRANSPORT"] == TRANSPORT


def test_make_airflow_keeps_its_executor_ports_and_login(caller, tmp_path):
    cluster = AirflowCluster(tmp_path, default_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    cluster._http.close()
    env = cluster.env
    assert env["AIRFLOW__OPENLINEAGE__TRANSPORT"] == TRANSPORT
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"  # a default: the caller's wins
    assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__API__PORT"] == str(cluster.port) != "9999"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")
    assert env["AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER"] == "True"  # the real scheduler honours it


def test_make_cluster_keeps_its_hosts_and_executor(caller, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "false")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", "redis://prod:6379/0")
    cluster = CeleryCluster(tmp_path / "home")
    said = capsys.readouterr().err
    assert said.count("passing through") == 1 and "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE" in said
    assert "BROKER_URL" not in said and "EXECUTOR" not in said
    cluster._http.close()
    shutil.rmtree(cluster.services, ignore_errors=True)
    env = cluster.env
    assert env["AIRFLOW__OPENLINEAGE__TRANSPORT"] == TRANSPORT
    assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "false"  # over the compose file's
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://127.0.0.1:")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert "@127.0.0.1:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__API__PORT"] == str(cluster.port)

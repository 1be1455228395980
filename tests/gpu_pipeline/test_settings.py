"""The DAGs' deployment settings come from Airflow's configuration ([ibm_cloud]), never os.environ."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
from gpu_pipeline.settings import PipelineSettings, pipeline_settings

REPO = Path(__file__).resolve().parents[2]


class Config(ConfigParser):
    """Airflow's configuration API (``get*`` with ``fallback``) over plain text, as airflow.cfg reads."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.read_string(text)


def test_without_configuration_every_setting_has_its_default():
    assert pipeline_settings(Config("")) == PipelineSettings()
    assert PipelineSettings().workload_schedule == "0 12 * * 1"


def test_a_deployment_sets_schedules_and_intervals_in_the_ibm_cloud_section():
    settings = pipeline_settings(
        Config(
            "[ibm_cloud]\n"
            "workload_schedule = None\n"
            "workload_max_active_runs = 9\n"
            "reaper_schedule = */15 * * * *\n"
            "reaper_scheduled_dry_run = True\n"
            "schematics_poll_interval = 5\n"
            "cos_poke_interval = 0.5\n"
            "server_check_interval = 60\n"
        )
    )
    assert settings == PipelineSettings(
        workload_schedule=None,
        workload_max_active_runs=9,
        reaper_schedule="*/15 * * * *",
        reaper_scheduled_dry_run=True,
        schematics_poll_interval=5.0,
        cos_poke_interval=0.5,
        server_check_interval=60.0,
    )


def test_a_value_of_the_wrong_type_names_the_option():
    with pytest.raises(ValueError, match="ten"):
        pipeline_settings(Config("[ibm_cloud]\nworkload_max_active_runs = ten\n"))


def test_no_dag_file_reads_the_environment():
    for path in (REPO / "dags").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not names & {"environ", "getenv"}, f"{path.name} reads os.environ"


def test_the_parsed_dags_follow_airflow_configuration_from_the_environment(airflow_db):
    """As a deployment sets them: AIRFLOW__IBM_CLOUD__* variables, read by a real DagBag."""
    probe = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "w, r = bag.dags['ibm_gpu_workload'], bag.dags['ibm_gpu_reaper']\n"
        "sensor = w.get_task('wait_for_output')\n"
        "print(json.dumps({'workload': str(w.schedule), 'runs': w.max_active_runs,\n"
        "  'reaper': str(r.schedule), 'poll': w.get_task('apply').poll_interval,\n"
        "  'poke': sensor.poke_interval, 'errors': list(bag.import_errors)}))\n"
    )
    env = {
        **os.environ,
        "AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE": "None",
        "AIRFLOW__IBM_CLOUD__WORKLOAD_MAX_ACTIVE_RUNS": "7",
        "AIRFLOW__IBM_CLOUD__REAPER_SCHEDULE": "@daily",
        "AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": "12",
        "AIRFLOW__IBM_CLOUD__COS_POKE_INTERVAL": "3",
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed == {
        "workload": "None",
        "runs": 7,
        "reaper": "@daily",
        "poll": 12.0,
        "poke": 3.0,
        "errors": [],
    }

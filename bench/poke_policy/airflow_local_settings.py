"""The benchmark's baseline: the same DAG with its COS sensor in poke mode (a cluster policy).

The production DAG has no switch for this. The poke-mode scenarios put this folder on the
PYTHONPATH of their Airflow, which imports ``airflow_local_settings`` at start and applies
``task_policy`` to every task it parses: the sensor then waits on a worker slot, poking every
``BENCH_POKE_SECONDS`` (Airflow's default poke interval is 60 s), as a sensor without a triggerer
would.
"""

from __future__ import annotations

import os
from typing import Any

SENSOR = ("ibm_gpu_workload", "wait_for_output")


def task_policy(task: Any) -> None:
    if (task.dag_id, task.task_id) != SENSOR:
        return
    task.deferrable = False
    task.start_from_trigger = False
    task.mode = "poke"
    task.poke_interval = float(os.environ.get("BENCH_POKE_SECONDS", "60"))

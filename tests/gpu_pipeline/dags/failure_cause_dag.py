"""DAG for tests/gpu_pipeline/test_failure_cause.py (dag.test() needs the DAG in a bundle file).

``flaky`` fails three tries with three different errors, as an apply does when its first try meets
a zone without capacity and the later ones meet what the first left behind; like the Schematics
operators, it records each try's error while the try runs. ``plain`` fails once, recording nothing:
its failure callback takes the exception.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from ibm_cloud_airflow.utils.failure_cause import explain_failure, record_try

ERRORS = {
    1: "Schematics apply job a1 ended FAILED: [ERROR] Instance (0717-x) went into failed state during "
    'the operation ([{"code": "cannot_start_capacity", "message": "Can\'t start instance because '
    'resource capacity is unavailable."}])',
    2: "Schematics apply job a2 ended FAILED: reserved IP r006-y is already bound to 0717-x-nic0",
    3: "Waiting for Schematics apply job a3 failed: 409 workspace locked",
}

with DAG(
    dag_id="failure_cause_dag",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=0),
        "on_failure_callback": explain_failure,
    },
):

    @task
    def flaky(ti=None, **context) -> None:
        error = RuntimeError(ERRORS[ti.try_number] + "\nLast lines of the job log:\n(tail)")
        record_try({**context, "ti": ti}, error)
        raise error

    @task(retries=0)
    def plain() -> None:
        raise ValueError("image: 'ibm-ubuntu-18-04' does not exist")

    flaky()
    plain()

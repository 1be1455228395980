"""The run's ``why`` names the error that caused a failure, not a later try's secondary error.

A real Airflow run (``dag.test()``) of a task whose three tries fail three ways: each try's error is
kept in ``task_state_store``, the failure callback logs the first try's cause as the task's last
line and pushes it as XCom ``failure_cause``, and the run's ``why`` (run-report.json, the demo) is
built from it.
"""

from __future__ import annotations

import json
import logging
import runpy
from pathlib import Path
from typing import Any

from gpu_pipeline.failure_cause import report_why, run_why

from ibm_cloud_airflow.utils.failure_cause import XCOM_KEY

DAGS = Path(__file__).parent / "dags"


def test_the_runs_why_is_its_first_failed_task_in_pipeline_order():
    causes = {"apply": {"cause": "no capacity"}, "destroy": {"cause": "destroy failed"}}
    assert run_why(["run_verdict", "destroy", "apply"], causes) == "apply: no capacity"
    # the first failed task pushed no cause: its state is what is known, not a later task's error
    assert run_why(["wait_for_output", "destroy"], causes) == "wait_for_output: failed (see its log)"
    assert run_why([], causes) is None


class FakeTi:
    def __init__(self, causes: dict[str, Any]) -> None:
        self.causes, self.pulled = causes, []

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        self.pulled.append((task_ids, key))
        return self.causes.get(task_ids)


def test_the_report_reads_its_first_failed_tasks_cause_by_its_id_in_the_dag():
    ti = FakeTi({"grp.apply": {"cause": "no capacity"}, "grp.destroy": {"cause": "later"}})
    tasks = {
        "destroy": {"state": "failed"},
        "apply": {"state": "failed"},
        "wait_for_output": {"state": "upstream_failed"},  # did not run: not a cause
    }
    assert report_why(ti, tasks, {"apply": "grp.apply", "destroy": "grp.destroy"}) == "apply: no capacity"
    assert ti.pulled == [("grp.apply", XCOM_KEY)]
    assert report_why(FakeTi({}), {"apply": {"state": "success"}}, {}) is None


def test_the_demo_says_the_reports_why_when_it_knows_the_cause():
    from scripts.demo import _why

    failures = {"apply": "Waiting for ... failed: 409 workspace locked\nmore"}
    assert _why({"report": {"why": "apply: no capacity"}, "failures": failures}) == "apply: no capacity"
    unknown = {"report": {"why": "apply: failed (see its log)"}, "failures": failures}
    assert _why(unknown) == "apply: Waiting for ... failed: 409 workspace locked"
    assert (
        _why({"report": None, "failures": failures}) == "apply: Waiting for ... failed: 409 workspace locked"
    )


def test_a_real_task_reports_its_first_tries_cause(airflow_db: Path, monkeypatch, caplog: Any, capfd: Any):
    from airflow.dag_processing.dagbag import DagBag

    bundle = {
        "name": "failure-cause-tests",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(DAGS), "refresh_interval": 0},
    }
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    errors = runpy.run_path(str(DAGS / "failure_cause_dag.py"))["ERRORS"]

    with caplog.at_level(logging.INFO):
        dr = bag.get_dag("failure_cause_dag").test()
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert states == {"flaky": "failed", "plain": "failed"}

    flaky = dr.get_task_instance("flaky")
    assert flaky.try_number == 3
    pushed = flaky.xcom_pull(task_ids="flaky", key=XCOM_KEY)
    assert pushed["cause"] == errors[1]  # not try 3's "409 workspace locked"
    assert pushed["try"] == 1 and pushed["kind"] == "capacity"
    assert [t["error"] for t in pushed["tries"]] == [errors[1], errors[2], errors[3]]
    plain = dr.get_task_instance("plain").xcom_pull(task_ids="plain", key=XCOM_KEY)
    assert plain["cause"] == "image: 'ibm-ubuntu-18-04' does not exist" and len(plain["tries"]) == 1

    # The last line the failed task logged is its cause (dag.test() runs the task in this process
    # and prints its log, or hands the records to pytest, depending on what configured logging).
    out, err = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records] + (out + err).splitlines()
    said = [line for line in lines if "The cause of this failure" in line]
    assert len(said) >= 2, lines[-40:]
    assert f"The cause of this failure: {plain['cause']}" in said[-2]
    assert f"The cause of this failure (try 1 of 3): {errors[1]}" in said[-1]

    assert run_why(["apply"], {"apply": pushed}) == f"apply: {errors[1]}"

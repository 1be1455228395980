"""One run under a real Airflow: api-server, scheduler (LocalExecutor), dag-processor and triggerer.

``dag.test()`` runs every task in its own process and ignores ``start_from_trigger``; only a real
scheduler hands the plan, the sensor and the destroy straight to the triggerer, and only a real
triggerer renders their fields (natively, from validate's plan) and ends them there, writing their
XComs through the Task SDK. This test proves that path against the sandbox, with the benchmark's
harness.
"""

from __future__ import annotations

import pytest

from bench.concurrent import ScenarioConfig, run_scenario


@pytest.mark.timeout(900)
def test_under_a_real_scheduler_the_plan_sensor_and_destroy_never_use_a_worker(tmp_path):
    cfg = ScenarioConfig(
        mode="deferrable",
        runs=1,
        schematics_poll_s=2,
        conf={"epochs": 3, "progress_stall_minutes": 5},
        timeout_s=600,
    )
    result = run_scenario(cfg, tmp_path, log=print)

    run = result["per_run"][0]
    assert run["state"] == "success", run["tasks"]
    assert result["leaked_resources"] == []
    # On success the hold is skipped by the scheduler: nothing runs between the sensor and destroy.
    assert run["tasks"]["hold_on_failure"] == "skipped"
    logs = tmp_path / "airflow/logs/dag_id=ibm_gpu_workload" / f"run_id={run['run_id']}"
    # The sensor waited in the triggerer and ended there, and the plan and the destroy were
    # submitted and waited for there: no worker ever ran them (a worker writes attempt=1.log).
    for task_id in ("plan", "wait_for_output", "destroy"):
        names = sorted(p.name for p in (logs / f"task_id={task_id}").iterdir())
        assert names and all(".log.trigger." in name for name in names), (task_id, names)
    assert result["slots"]["slot_seconds_all_running_sensors"] == 0
    # The destroy was submitted after the workload's _SUCCESS (and so, the servers' teardown).
    assert run["teardown_latency_s"] is not None and run["teardown_latency_s"] > 0
    # The request budget kept every Schematics answer clear of 429.
    assert result["api"]["http_429"] == 0
    # The XComs of tasks that ended in the triggerer arrive as they were pushed: the apply's
    # outputs and job summaries as objects (Airflow's own TaskSuccessEvent path would have stored
    # them as JSON text), which the report read to count what was created and destroyed.
    report = run["report"]
    assert isinstance(report, dict), report
    assert isinstance(report["outputs"]["terraform"], dict) and report["outputs"]["terraform"]["vpc_id"]
    created, destroyed = report["resources"]["created"], report["resources"]["destroyed"]
    assert isinstance(created, int) and created > 0 and destroyed == created, report["resources"]
    assert report["leak_check"]["passed"] is True and report["cost"]["usd"] > 0

"""One run under a real Airflow: api-server, scheduler (LocalExecutor), dag-processor and triggerer.

``dag.test()`` runs every task in its own process and ignores ``start_from_trigger``; only a real
scheduler hands the sensor and the destroy straight to the triggerer, only a real triggerer renders
their fields (natively, from validate's plan), and only there do deferred Schematics jobs end their tasks,
writing their XComs through the Task SDK. This test proves those paths against the sandbox, with
the benchmark's harness. Its Schematics jobs take a few seconds (``slow_jobs``), as IBM's take
minutes: each outlives the operator's first check, so every job is waited for in the triggerer.
"""

from __future__ import annotations

import pytest

from bench.concurrent import ScenarioConfig, run_scenario


@pytest.mark.timeout(900)
def test_under_a_real_scheduler_the_sensor_destroy_and_job_waits_never_use_a_worker(tmp_path):
    cfg = ScenarioConfig(
        mode="deferrable",
        runs=1,
        schematics_poll_s=2,
        conf={"epochs": 3, "progress_stall_minutes": 5},
        timeout_s=600,
        faults={"slow_jobs": {"seconds": 3}},
    )
    result = run_scenario(cfg, tmp_path, log=print)

    run = result["per_run"][0]
    assert run["state"] == "success", run["tasks"]
    assert result["leaked_resources"] == []
    # On success the hold is skipped by the scheduler: nothing runs between the sensor and destroy.
    assert run["tasks"]["hold_on_failure"] == "skipped"
    logs = tmp_path / "airflow/logs/dag_id=ibm_gpu_workload" / f"run_id={run['run_id']}"

    def log_files(task_id: str) -> list[str]:
        return sorted(p.name for p in (logs / f"task_id={task_id}").iterdir())

    # The sensor and the destroy started in the triggerer and ended there: no worker ever ran them
    # (a worker writes attempt=1.log, a trigger attempt=1.log.trigger.<id>.log).
    for task_id in ("wait_for_output", "destroy"):
        names = log_files(task_id)
        assert names and all(".log.trigger." in name for name in names), (task_id, names)
    # Plan and apply were submitted on a worker, outlived their first check there, and were waited
    # for and ended in the triggerer: nothing ran on a worker after the submission.
    for task_id in ("plan", "apply"):
        names = log_files(task_id)
        assert "attempt=1.log" in names and any(".log.trigger." in n for n in names), (task_id, names)
        worker_log = (logs / f"task_id={task_id}" / "attempt=1.log").read_text()
        assert "Pausing task as DEFERRED" in worker_log, task_id
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

"""The third teardown layer and the budget gate, end to end: real Airflow, real SDKs, the sandbox.

* ``make demo FAULT=airflow_lost``: the run's Airflow is SIGKILLed mid-training and its database
  discarded; the ``ibm_gpu_reaper`` DAG, run once in a fresh Airflow, reaps everything.
* A live run's resources are left alone while the reaper runs beside it (the same metadata DB),
  and its report's cost matches what the sandbox's inventory saw of the servers' lifetime.
* ``make demo CONF='{"max_cost_usd": 0.01}'``: validate fails with the cost in its one-line reason,
  and no Schematics workspace is created.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from scripts.local_run import DEMO_BUCKET, prepare_home, read_result, start_run

pytestmark = pytest.mark.e2e


def test_a_lost_airflow_is_cleaned_up_by_the_reaper(template_db, tmp_path):
    from scripts.demo import run_demo

    summary = run_demo("airflow_lost", output_root=tmp_path, template_db=template_db)

    assert summary["live_resources_when_lost"] > 0  # the servers were up when Airflow went
    assert summary["reaper_run_state"] == "success", summary["reaper_failures"]
    assert summary["reaped_resources"] > 0
    assert summary["leaked_resources"] == 0, summary.get("leaked")
    assert summary["reaper_report"].startswith("cos://")


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_a_live_run_is_left_alone_and_its_cost_matches_the_servers_lifetime(sandbox, template_db, tmp_path):
    sandbox.ensure_bucket(DEMO_BUCKET)
    home = tmp_path / "home"
    prepare_home(home, template_db)
    # Enough epochs that the run is still training while the reaper runs beside it.
    run = start_run(
        home=home,
        connections=sandbox.airflow_connections(),
        conf={"epochs": 40, "progress_stall_minutes": 10},
        result=tmp_path / "run.json",
        log=tmp_path / "run.log",
    )
    cos = sandbox.cos_client()

    def training() -> bool:
        listing = cos.list_objects_v2(Bucket=DEMO_BUCKET, Prefix="gpu-runs/ibm_gpu_workload/")
        return any(o["Key"].endswith("/progress.json") for o in listing.get("Contents", []))

    try:
        wait_for(training, 600, "training", run)
        # The reaper shares the run's metadata DB, as it would share a deployment's.
        reaper = start_run(
            home=home,
            connections=sandbox.airflow_connections(),
            conf={"dry_run": False, "grace_minutes": 0, "bucket": DEMO_BUCKET},
            result=tmp_path / "reaper.json",
            log=tmp_path / "reaper.log",
            dag_id="ibm_gpu_reaper",
        )
        reaper.wait(timeout=600)
        result = read_result(tmp_path / "reaper.json", tmp_path / "reaper.log")
        assert result["dag_run_state"] == "success", result["failures"]
        report = result["report"]
        (verdict,) = report["runs"]
        assert not verdict["orphan"] and "live" in verdict["reason"], verdict
        assert report["reaped_resources"] == 0 and report["removed"] == []
        # Nothing was destroyed through the workspace, nothing deleted directly.
        assert result["tasks"]["destroy_orphan_workspaces"] == "skipped", result["tasks"]
        assert not any(k.startswith("vpc DELETE") for k in sandbox.request_counts())
        run.wait(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
    outcome = read_result(tmp_path / "run.json", tmp_path / "run.log")
    # The run trained, wrote its results and cleaned up after itself, undisturbed.
    assert outcome["dag_run_state"] == "success", outcome["failures"]
    assert sandbox.inventory.list() == []

    # The report's cost: the servers' lifetime (end of apply to end of destroy) x the list price,
    # against what the inventory saw (instance created during apply, deleted during destroy).
    cost = outcome["report"]["cost"]
    events = [e for e in sandbox.inventory.events() if e["kind"] == "ibm_is_instance"]
    created = next(e["time"] for e in events if e["event"] == "created")
    deleted = next(e["time"] for e in events if e["event"] == "deleted")
    assert cost["lifetime_s"] == pytest.approx(deleted - created, abs=15)
    # to the report's precision: USD with 4 decimals, from an hourly rate with 4 decimals
    assert cost["usd"] == pytest.approx(cost["hourly_usd"] * cost["lifetime_s"] / 3600, abs=1.5e-4)
    assert 0 < cost["teardown_share"] < 1 and cost["teardown_s"] < cost["lifetime_s"]
    up = datetime.fromisoformat(cost["servers_up"]).timestamp()
    assert created - 15 <= up <= created + 15


def test_an_over_budget_run_creates_nothing_and_the_demo_says_why(template_db, tmp_path: Path):
    from scripts.demo import run_demo

    summary = run_demo(None, conf={"max_cost_usd": 0.01}, output_root=tmp_path, template_db=template_db)

    assert summary["dag_run_state"] == "failed" and "validate" in summary["failed_tasks"]
    assert summary["workspaces_created"] == 0  # no Schematics create call at all
    # One line with the numbers and the fix.
    assert summary["why"].startswith("validate: Invalid run, nothing was created. Fix: max_cost_usd:")
    assert "the worst case is" in summary["why"] and "over the budget of 0.01 USD" in summary["why"]
    assert "Raise max_cost_usd" in summary["why"]
    assert summary["leaked_resources"] == 0

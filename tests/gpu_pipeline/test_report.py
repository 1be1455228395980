"""The run report after a clear: phases from the run's own timestamps (never negative), Airflow's
negative task durations named rather than shown, ``resumed_from_epoch``, and the checkpoints deleted
only once the results are final.

``write_run_report`` runs against the sandbox (COS and the VPC API through the real SDKs). The task
instance is a stand-in with the two calls the report makes of Airflow's runtime task instance
(``get_task_breadcrumbs``, ``xcom_pull``): it returns what Airflow 3.3.2 returns for a run whose
triggerer-started tasks were cleared, a negative ``duration`` (see gpu_pipeline/phases.py for the
Airflow code); building that state in Airflow needs a scheduler and a triggerer (the e2e tests).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from gpu_pipeline.checkpoints import finish_checkpoints, stale_markers
from gpu_pipeline.params import PARAMS
from gpu_pipeline.phases import run_phases, task_durations
from gpu_pipeline.report import write_run_report
from gpu_pipeline.run_plan import build_run_plan

from ibm_cloud_airflow.hooks.cos import CosHook

pytestmark = pytest.mark.sandbox

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BUCKET = "report-bucket"


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _job(start: float, end: float) -> dict:
    return {
        "activity_id": f"act-{start}",
        "status": "COMPLETED",
        "started_at": _at(start),
        "ended_at": _at(end),
    }


JOBS = {"plan": _job(10, 25), "apply": _job(30, 90), "destroy": _job(400, 460)}


class ClearedTaskInstance:
    """The report's view of Airflow after ``wait_for_output`` and ``destroy`` (both start in the
    triggerer) were cleared and ran again: Airflow kept their first try's end dates."""

    dag_id = "ibm_gpu_workload"
    run_id = "manual__2026-12-01T12:00:00+00:00"

    def __init__(self, jobs: dict) -> None:
        self.jobs = jobs

    def get_task_breadcrumbs(self, dag_id: str, run_id: str):
        return [
            {"task_id": "plan", "map_index": -1, "state": "success", "duration": 16.2},
            {"task_id": "apply", "map_index": -1, "state": "success", "duration": 61.0},
            {"task_id": "wait_for_output", "map_index": -1, "state": "success", "duration": -23.97},
            {"task_id": "destroy", "map_index": -1, "state": "success", "duration": -26.6},
        ]

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        if key == "job":
            return self.jobs.get(task_ids)
        return None


@pytest.fixture
def box(sandbox_factory, monkeypatch):
    sbx = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0.0)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    sbx.ensure_bucket(BUCKET)
    return sbx


def _plan(**overrides):
    params = {name: param.value for name, param in PARAMS.items()}
    params.update(bucket=BUCKET, **overrides)
    return build_run_plan(
        params,
        dag_id="ibm_gpu_workload",
        run_id=ClearedTaskInstance.run_id,
        now=T0,
        cos_endpoint="https://s3.direct.us-south.cloud-object-storage.appdomain.cloud",
        cos_instance_crn="crn:v1:bluemix:public:cloud-object-storage:global:a/abc:def::",
    )


def _server_objects(box, plan, marker: str) -> list[str]:
    """What a resumed server leaves: its results, its marker and its two checkpoint slots."""
    client = box.cos_client()
    server = plan["server_prefixes"][0]
    metrics = {"test_accuracy": 0.9, "resumed_from_epoch": 2, "epochs_trained": 2, "epochs_completed": 4}
    client.put_object(Bucket=BUCKET, Key=f"{server}metrics.json", Body=json.dumps(metrics).encode())
    client.put_object(Bucket=BUCKET, Key=f"{server}{marker}", Body=b"x")
    checkpoints = [
        f"{server}checkpoints/slot-{s}/{n}" for s in (0, 1) for n in ("state.npz", "manifest.json")
    ]
    for key in checkpoints:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"checkpoint")
    return checkpoints


def _report(box, plan, jobs=JOBS, clear_number=1):
    dag_run = SimpleNamespace(run_after=T0, start_date=T0 + timedelta(hours=5), clear_number=clear_number)
    report = write_run_report(
        plan,
        dag_run=dag_run,
        ti=ClearedTaskInstance(jobs),
        cos_conn_id="ibm_cos_default",
        ibm_conn_id="ibm_cloud_default",
    )
    stored = json.loads(box.cos_client().get_object(Bucket=BUCKET, Key=plan["report_key"])["Body"].read())
    assert stored["phases_s"] == report["phases_s"]
    return report


def test_after_a_clear_every_phase_comes_from_the_runs_own_timestamps(box):
    plan = _plan()
    checkpoints = _server_objects(box, plan, "_SUCCESS")
    report = _report(box, plan)

    phases = report["phases_s"]
    assert (phases["plan"], phases["apply"], phases["destroy"]) == (15.0, 60.0, 60.0)
    # train: from the servers being up (apply's end) to the marker, whatever Airflow says
    marker = CosHook(cos_conn_id="ibm_cos_default").head(BUCKET, plan["marker_keys"][0])["LastModified"]
    assert phases["train"] == pytest.approx((marker - (T0 + timedelta(seconds=90))).total_seconds(), abs=1e-3)
    assert all(v is None or v >= 0 for v in phases.values())
    # The queue of a cleared run is the clear's, not the run's: not measured, and said so.
    assert phases["queue"] is None and "cleared" in report["phase_problems"]["queue"]
    assert report["phase_times"]["apply"] == {
        "start": (T0 + timedelta(seconds=30)).isoformat(),
        "end": (T0 + timedelta(seconds=90)).isoformat(),
    }
    # Airflow's negative durations are not shown as durations; the note says where they come from.
    sensor = report["tasks"]["wait_for_output"]
    assert sensor["duration_s"] is None and "-23.970 s" in sensor["duration_note"]
    assert report["tasks"]["apply"]["duration_s"] == 61.0
    assert not any(
        isinstance(t["duration_s"], int | float) and t["duration_s"] < 0 for t in report["tasks"].values()
    )

    assert report["resumed_from_epoch"] == {"vm-0": 2}
    assert report["metrics"]["vm-0"]["epochs_trained"] == 2
    # The results are final and the run does not keep its checkpoints: they are gone.
    assert report["checkpoints"]["state"] == "deleted" and report["checkpoints"]["objects"] == 4
    remaining = box.cos_client().list_objects_v2(Bucket=BUCKET, Prefix=plan["prefix"]).get("Contents", [])
    assert not {o["Key"] for o in remaining} & set(checkpoints)
    assert plan["marker_keys"][0] in {o["Key"] for o in remaining}


def test_a_run_that_keeps_its_checkpoints_keeps_them(box):
    plan = _plan(keep_checkpoints=True)
    checkpoints = _server_objects(box, plan, "_SUCCESS")
    report = _report(box, plan, clear_number=0)
    assert report["checkpoints"]["state"] == "kept" and report["checkpoints"]["reason"] == "keep_checkpoints"
    keys = {o["Key"] for o in box.cos_client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert set(checkpoints) <= keys
    assert report["phases_s"]["queue"] == 5 * 3600.0  # a run never cleared: run_after -> start


def test_a_failed_run_keeps_its_checkpoints_for_the_clear_that_resumes_it(box):
    plan = _plan()
    checkpoints = _server_objects(box, plan, "_FAILED")
    report = _report(box, plan)
    assert report["checkpoints"]["state"] == "kept" and "not final" in report["checkpoints"]["reason"]
    keys = {o["Key"] for o in box.cos_client().list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert set(checkpoints) <= keys


def test_a_phase_whose_clocks_disagree_is_none_and_named_not_clamped(box):
    plan = _plan()
    _server_objects(box, plan, "_SUCCESS")
    # the apply "ended" an hour after the marker was written: a clock is wrong somewhere
    jobs = {**JOBS, "apply": _job(30, 3600 * 24 * 365 * 10)}
    report = _report(box, plan, jobs=jobs)
    assert report["phases_s"]["train"] is None
    assert "before it starts" in report["phase_problems"]["train"]


def test_validate_removes_markers_and_keeps_checkpoints(box):
    """What a new attempt's validate deletes (the DAG's list + filter): markers, not checkpoints."""
    plan = _plan()
    checkpoints = _server_objects(box, plan, "_FAILED")
    cos = CosHook(cos_conn_id="ibm_cos_default")
    stale = stale_markers(cos.list_keys(BUCKET, plan["prefix"]))
    assert stale == [f"{plan['server_prefixes'][0]}_FAILED"]
    cos.delete_keys(BUCKET, stale)
    left = set(cos.list_keys(BUCKET, plan["prefix"]))
    assert set(checkpoints) <= left and f"{plan['server_prefixes'][0]}metrics.json" in left


def test_finish_checkpoints_without_any_is_a_no_op_and_a_cos_error_is_reported(box):
    plan = _plan()
    assert finish_checkpoints(CosHook(cos_conn_id="ibm_cos_default"), plan, final=True)["state"] == "none"
    missing = {**plan, "bucket": "no-such-bucket"}
    out = finish_checkpoints(CosHook(cos_conn_id="ibm_cos_default"), missing, final=True)
    assert out["state"] == "error" and "NoSuchBucket" in out["reason"]


# -- pure functions ---------------------------------------------------------------------------------


def test_run_phases_measure_between_the_jobs_and_the_marker():
    out = run_phases(
        run_after=T0,
        run_started=T0 + timedelta(seconds=3),
        cleared=False,
        plan_job=JOBS["plan"],
        apply_job=JOBS["apply"],
        destroy_job=None,  # never reached
        work_ended=_at(300),
    )
    assert out["phases_s"] == {"queue": 3.0, "plan": 15.0, "apply": 60.0, "train": 210.0, "destroy": None}
    assert out["problems"] == {}


def test_task_durations_name_a_negative_duration():
    out = task_durations({"destroy": {"state": "success", "duration_s": -26.6}, "plan": {"duration_s": 3}})
    assert out["destroy"]["duration_s"] is None and "end_date" in out["destroy"]["duration_note"]
    assert out["plan"] == {"duration_s": 3}

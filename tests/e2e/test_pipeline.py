"""The whole pipeline, end to end, against the sandbox: success, every named fault, concurrency.

Each test runs the real DAG with ``dag.test()`` (a child process with its own metadata DB), the real
IBM SDKs against the sandbox's emulated services, and the real workload (bootstrap.sh + TensorFlow
on the CPU) in the simulated servers. Every test ends by counting what is left in the sandbox.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e

WORK = ("validate", "approve", "create_workspace", "plan", "apply", "wait_for_output")


def object_keys(sandbox, bucket: str, prefix: str) -> set[str]:
    import ibm_boto3

    creds = sandbox.endpoints["cos_hmac"]
    cos = ibm_boto3.client(
        "s3",
        endpoint_url=sandbox.endpoints["cos"],
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
    )
    keys: set[str] = set()
    for page in cos.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys |= {obj["Key"][len(prefix) :] for obj in page.get("Contents", [])}
    return keys


def workspace_creates(sandbox) -> int:
    return sandbox.request_counts().get("schematics POST /v1/workspaces", 0)


def assert_nothing_left(sandbox) -> None:
    assert sandbox.inventory.list() == [], "resources leaked"


def assert_cleanup_ran(result: dict[str, Any]) -> None:
    tasks = result["tasks"]
    assert tasks["destroy"] == "success", tasks
    assert tasks["delete_workspace"] == "success", tasks
    assert tasks["report"] == "success", tasks  # it fails when anything of the run is still live


def test_happy_path_trains_reports_and_destroys_everything(sandbox, run_pipeline):
    (result,) = run_pipeline(sandbox)

    assert result["dag_run_state"] == "success", result["failures"]
    tasks = result["tasks"]
    assert all(tasks[t] == "success" for t in WORK), tasks
    assert tasks["run_verdict"] == "success"
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)

    plan = result["plan"]
    keys = object_keys(sandbox, plan["bucket"], plan["prefix"])
    for name in (
        "progress.json",
        "model.keras",
        "metrics.json",
        "training-curve.png",
        "manifest.json",
        "_SUCCESS",
    ):
        assert f"vm-0/{name}" in keys, keys
    assert "run-report.json" in keys and "bundle/workload.tar.gz" in keys

    report = result["report"]
    assert report["succeeded"] is True
    assert report["leak_check"]["passed"] is True
    assert report["metrics"]["vm-0"]["test_accuracy"] > 0.5
    assert all(report["phases_s"][p] is not None for p in ("plan", "apply", "train", "destroy"))
    # One workspace was created and it is gone again.
    assert workspace_creates(sandbox) == 1

    # The verdict announced the model: one event on the model asset, saying where it is and how good.
    (event,) = result["asset_events"]
    assert event["asset"] == "ibm_gpu_workload.model"
    extra = event["extra"]
    assert extra["model_uri"] == f"cos://{plan['bucket']}/{plan['prefix']}vm-0/model.keras"
    assert extra["metrics"]["test_accuracy"] == report["metrics"]["vm-0"]["test_accuracy"]
    assert extra["cost"] == report["cost"] and extra["run_id"] == result["run_id"]
    assert f"vm-0/{extra['model_key'].rsplit('/', 1)[-1]}" in keys


@pytest.mark.parametrize(
    "fault",
    ["api_errors", "rate_limited", "workspace_locked", "destroy_fails_once", "short_tokens", "slow_jobs"],
)
def test_the_pipeline_survives(fault, sandbox_factory, run_pipeline):
    sandbox = sandbox_factory(faults=[fault])
    (result,) = run_pipeline(sandbox)

    assert result["dag_run_state"] == "success", (fault, result["failures"])
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)


RUN_FAILING = {
    # fault: (the work task that fails, what its error says, tasks that must not have run)
    "plan_fails": ("plan", "plan", ("apply", "wait_for_output")),
    "apply_fails_midway": ("apply", "apply", ("wait_for_output",)),
    "workload_fails": ("wait_for_output", "_FAILED", ()),
    "workload_hangs": ("wait_for_output", "progress", ()),
    # api_key_missing_policy fails the apply like apply_fails_midway (208 s here, apply retries
    # included): tested through ibm-schematics in tests/sandbox/ibm/test_iam_enforcement.py instead.
}


@pytest.mark.parametrize("fault", sorted(RUN_FAILING))
def test_a_failing_run_still_destroys_everything(fault, sandbox_factory, run_pipeline):
    failed_task, message, not_run = RUN_FAILING[fault]
    sandbox = sandbox_factory(faults=[fault])
    # A short stall timeout: the hung workload is caught 30 s after its last progress report.
    (result,) = run_pipeline(sandbox, conf={"progress_stall_minutes": 0.5})

    assert result["dag_run_state"] == "failed"
    assert result["tasks"][failed_task] == "failed", result["tasks"]
    assert message.lower() in result["failures"][failed_task].lower(), result["failures"]
    for task_id in not_run:
        assert result["tasks"][task_id] in ("upstream_failed", "skipped"), result["tasks"]
    assert result["tasks"]["run_verdict"] == "failed"
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)
    if failed_task == "apply":
        # Not a capacity error: retried where it was, never moved to another zone.
        attempts = result["report"]["placement"]["attempts"]
        assert {a["zone"] for a in attempts} == {"us-south-1"} and attempts[-1]["outcome"] == "failed"


def test_five_concurrent_runs_keep_to_their_own_resources(sandbox, run_pipeline):
    # Five trainings share two CPU cores here: epochs are slow, so no stall timeout should bite.
    results = run_pipeline(sandbox, count=5, conf={"progress_stall_minutes": 10})

    assert [r["dag_run_state"] for r in results] == ["success"] * 5, [r["failures"] for r in results]
    prefixes = {r["plan"]["prefix"] for r in results}
    workspaces = {r["plan"]["workspace_name"] for r in results}
    assert len(prefixes) == 5 and len(workspaces) == 5
    for r in results:
        assert "vm-0/_SUCCESS" in object_keys(sandbox, r["plan"]["bucket"], r["plan"]["prefix"])
    assert_nothing_left(sandbox)


def test_invalid_parameters_are_rejected_before_anything_is_created(sandbox, run_pipeline):
    (rejected,) = run_pipeline(sandbox, conf={"vm_count": 0})
    assert rejected["dag_run_state"] == "rejected"
    assert "vm_count" in rejected["reason"]

    (invalid,) = run_pipeline(sandbox, conf={"zone": "eu-de-1"})
    assert invalid["dag_run_state"] == "failed"
    assert invalid["tasks"]["validate"] == "failed"
    assert "zone" in invalid["failures"]["validate"]
    assert invalid["tasks"]["create_workspace"] == "upstream_failed"

    assert workspace_creates(sandbox) == 0
    assert_nothing_left(sandbox)


def test_an_unknown_parameter_is_refused_at_validate_with_the_closest_name(sandbox, run_pipeline):
    """Airflow takes any conf key as a parameter: `{"epoch": 2}` would train the default 5 epochs."""
    (result,) = run_pipeline(sandbox, conf={"epoch": 2})

    assert result["dag_run_state"] == "failed"
    assert result["tasks"]["validate"] == "failed"
    assert "unknown parameter 'epoch': did you mean 'epochs'?" in result["failures"]["validate"]
    assert result["tasks"]["create_workspace"] == "upstream_failed"
    assert workspace_creates(sandbox) == 0
    assert_nothing_left(sandbox)


def test_a_read_only_trusted_profile_fails_the_run_at_once_and_says_why(sandbox, run_pipeline):
    """The servers may read but not write: their first write is denied, they power off, the sensor
    sees a stopped server through the VPC API and names the denied access from IAM's policies."""
    from scripts.demo import _why

    (result,) = run_pipeline(sandbox, conf={"cos_profile_roles": ["Object Reader"]})

    assert result["dag_run_state"] == "failed"
    assert result["tasks"]["wait_for_output"] == "failed", result["tasks"]
    why = _why(result)
    assert why.startswith("wait_for_output: Server ") and "is stopped without a marker" in why, why
    assert "COS access denied" in why and "['Object Reader']" in why, why
    assert "without cloud-object-storage.object.put" in why, why
    plan = result["plan"]
    keys = object_keys(sandbox, plan["bucket"], plan["prefix"])
    assert not any(k.startswith("vm-0/") for k in keys), keys  # not one object got through
    # the server's own log (left by the sandbox): its first write, progress.json, got COS's 403
    [log] = sandbox.state_dir.glob("servers/*/root/var/log/gpu-workload/bootstrap.log")
    text = log.read_text()
    assert "AccessDenied" in text and "PutObject" in text, text[-3000:]
    assert "no marker could be written" in text and "powering off" in text, text[-3000:]
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)

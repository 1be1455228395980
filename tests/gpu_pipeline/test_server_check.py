"""The training wait's server check: a server that cannot write to COS powers off, and one lost with
its host is gone; the wait sees either through the VPC API (the provider's COS watch runs the check
by import path) and explains a stopped one from the trusted profile's IAM policies. Real SDKs
against the sandbox, nothing mocked but where said.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException
from gpu_pipeline.access import explain_stopped_servers
from gpu_pipeline.recovery import TrainingWaitSensor
from gpu_pipeline.server_check import GONE, STOPPED, find_lost, liveness_check

from ibm_cloud_airflow.triggers.cos import CosKeyTrigger
from ibm_cloud_airflow.utils.cos_watch import LivenessCheck, WatchResult, WatchStatus
from ibm_cloud_airflow.utils.plan import plan_field_template

SLUG = "manual-2026-iam-0badc0de"
PREFIX = f"results/dag/{SLUG}"
BUCKET = "results-iam"
KEYS = [f"{PREFIX}/vm-0/_SUCCESS", f"{PREFIX}/vm-1/_SUCCESS"]


# -- the check on a listing (no API) ---------------------------------------------------------------


def test_only_the_servers_of_folders_still_at_work_count_stopped_first():
    servers = [
        {"name": f"{SLUG}-vm-0", "status": "stopped"},
        {"name": f"{SLUG}-vm-1", "status": "running"},
        {"name": f"{SLUG}-vm-3", "status": "stopping"},
    ]
    assert find_lost(servers, SLUG, [f"{PREFIX}/vm-1"]) is None
    lost = find_lost(servers, SLUG, [f"{PREFIX}/vm-0", f"{PREFIX}/vm-2", f"{PREFIX}/vm-3"])
    assert lost.status is WatchStatus.LOST and lost.reason == STOPPED
    assert lost.lost == (f"{SLUG}-vm-0", f"{SLUG}-vm-3")
    assert lost.message == (
        f"Server {SLUG}-vm-0 is stopped without a marker in {PREFIX}/vm-0/ (and 1 more): "
        "it powers itself off when it cannot write to COS"
    )
    gone = find_lost(servers, SLUG, [f"{PREFIX}/vm-2"])
    assert gone.reason == GONE and gone.lost == (f"{SLUG}-vm-2",)


def test_the_sensor_checks_the_plans_run_and_takes_the_profile_from_the_apply():
    sensor = TrainingWaitSensor(
        task_id="wait", plan_task_id="validate", outputs_task_id="apply", server_check_interval=12
    )
    assert (
        sensor.liveness_check
        == liveness_check("ibm_cloud_default", plan_field_template("validate", "slug"), 12).to_dict()
    )
    assert sensor.slug == plan_field_template("validate", "slug")
    assert sensor.trusted_profile_id == plan_field_template("apply", "trusted_profile_id")
    assert {"slug", "trusted_profile_id", "liveness_check"} <= set(sensor.template_fields)


def test_the_check_travels_in_the_serialized_dag_to_the_triggerer():
    """The scheduler hands the triggerer the serialized task's trigger kwargs (start_from_trigger)."""
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import BaseSerialization, DagSerialization

    with DAG("server_check_probe", schedule=None) as dag:
        TrainingWaitSensor(
            task_id="wait", plan_task_id="validate", start_from_trigger=True, server_check_interval=7
        )
    data = json.loads(json.dumps(DagSerialization.to_dict(dag)))
    task = DagSerialization.from_dict(data).get_task("wait")
    kwargs = BaseSerialization.deserialize(task.start_trigger_args.trigger_kwargs)
    expected = liveness_check("ibm_cloud_default", plan_field_template("validate", "slug"), 7)
    assert LivenessCheck.from_dict(kwargs["liveness_check"]) == expected


# -- against the sandbox ---------------------------------------------------------------------------


@pytest.fixture
def box(sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    sbx = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0.01)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    sbx.ensure_bucket(BUCKET)
    return sbx


def add_servers(box: Any, roles: list[str], stopped: tuple[int, ...] = (0,)) -> str:
    """Two servers of the run with a trusted profile, as the Terraform engine records them."""
    profile = "Profile-0000-iam"
    for i in range(2):
        vm = box.inventory.add("ibm_is_instance", f"{SLUG}-vm-{i}", attrs={"trusted_profile_id": profile})
        if i in stopped:
            box.inventory.update_attrs(vm["id"], status="stopped")
    box.inventory.add(
        "ibm_iam_trusted_profile_policy",
        f"{SLUG}-policy",
        attrs={
            "iam_id": f"iam-{profile}",
            "roles": roles,
            "resources": [
                {
                    "service": "cloud-object-storage",
                    "resource_instance_id": box.cos_instance_crn.split(":")[7],
                    "resource_type": "bucket",
                    "resource": BUCKET,
                }
            ],
        },
    )
    return profile


def run_trigger(**kwargs: Any) -> dict[str, Any]:
    """The provider's trigger with the pipeline's check, due at once (interval 0)."""
    trigger = CosKeyTrigger(
        bucket_name=BUCKET,
        bucket_key=KEYS,
        poke_interval=0.05,
        liveness_check=liveness_check("ibm_cloud_default", SLUG, 0.0).to_dict(),
        **{"wait_timeout": 20, **kwargs},
    )

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(first())


def test_trigger_reports_a_stopped_server_whose_marker_is_missing(box):
    add_servers(box, ["Object Reader"])
    event = run_trigger()
    assert event["status"] == "lost" and event["reason"] == STOPPED
    assert event["lost"] == [f"{SLUG}-vm-0"]
    assert f"Server {SLUG}-vm-0 is stopped without a marker in {PREFIX}/vm-0/" in event["message"]


def test_a_stopped_server_that_wrote_its_marker_is_fine(box):
    add_servers(box, ["Object Writer", "Object Reader"])
    cos = box.cos_client()
    for key in KEYS:
        cos.put_object(Bucket=BUCKET, Key=key, Body=b"sha")
    assert run_trigger()["status"] == "success"


def test_explanation_names_the_denied_access_from_the_profiles_policies(box):
    profile = add_servers(box, ["Object Reader"])
    why = explain_stopped_servers("ibm_cloud_default", profile, BUCKET)
    assert why.startswith(
        f"COS access denied: trusted profile Profile-0000-iam holds ['Object Reader'] on bucket {BUCKET}"
    )
    assert "without cloud-object-storage.object.put" in why


def test_explanation_when_the_roles_do_allow_the_writes(box):
    profile = add_servers(box, ["Object Writer", "Object Reader"])
    why = explain_stopped_servers("ibm_cloud_default", profile, BUCKET)
    assert "include the workload's actions" in why and "denied" not in why


def test_explanation_of_a_profile_without_policy(box):
    why = explain_stopped_servers("ibm_cloud_default", "Profile-none", BUCKET)
    assert "holds no roles" in why


def rendered_sensor(profile: str) -> TrainingWaitSensor:
    """The training wait, its fields as the worker renders them from the plan and the apply."""
    sensor = TrainingWaitSensor(
        task_id="wait", plan_task_id="validate", server_check_interval=0, deferrable=False, retries=0
    )
    sensor.bucket_name, sensor.bucket_key, sensor.watch_prefixes = BUCKET, KEYS, None
    sensor.stall_timeout, sensor.wait_timeout = None, 60
    sensor.slug, sensor.trusted_profile_id = SLUG, profile
    sensor.liveness_check = liveness_check("ibm_cloud_default", SLUG, 0).to_dict()
    return sensor


def test_sensor_fails_with_the_reason_in_one_line(box):
    profile = add_servers(box, ["Content Reader"])
    with pytest.raises(AirflowFailException) as err:
        rendered_sensor(profile).poke({})
    message = str(err.value)
    assert "\n" not in message
    assert f"{SLUG}-vm-0 is stopped" in message and "COS access denied" in message
    assert "['Content Reader']" in message


def test_a_server_denied_cos_is_not_replaced_and_any_other_is(box):
    profile = add_servers(box, ["Content Reader"])
    sensor = rendered_sensor(profile)
    stopped = WatchResult(
        WatchStatus.LOST, f"Server {SLUG}-vm-0 is stopped", lost=(f"{SLUG}-vm-0",), reason=STOPPED
    )
    # Replacing servers applies the workspace (tests/e2e/test_recovery.py): here only whether it is asked.
    with mock.patch.object(TrainingWaitSensor, "_recover", return_value="replaced") as recover:
        with pytest.raises(AirflowFailException, match="COS access denied"):
            sensor.execute_complete({}, stopped.to_event())
        recover.assert_not_called()
        gone = WatchResult(WatchStatus.LOST, "gone", lost=(f"{SLUG}-vm-1",), reason=GONE)
        assert sensor.execute_complete({}, gone.to_event()) == "replaced"
        recover.assert_called_once_with({}, "gone", servers=[f"{SLUG}-vm-1"])


def test_trigger_reports_a_server_that_is_gone_before_its_marker(box):
    # vm-1 is running; vm-0 was deleted (by hand, or with a lost host): no marker will ever come.
    vm = box.inventory.add("ibm_is_instance", f"{SLUG}-vm-1", attrs={})
    event = run_trigger()
    assert event["status"] == "lost" and event["reason"] == GONE
    assert event["lost"] == [f"{SLUG}-vm-0"]
    assert f"Server {SLUG}-vm-0 is gone without a marker in {PREFIX}/vm-0/" in event["message"]
    # Once vm-0's marker is there, its server may go: only vm-1's work counts, and it still runs.
    box.cos_client().put_object(Bucket=BUCKET, Key=KEYS[0], Body=b"sha")
    box.inventory.update_attrs(vm["id"], status="running")
    assert run_trigger(wait_timeout=1)["status"] == "timeout"

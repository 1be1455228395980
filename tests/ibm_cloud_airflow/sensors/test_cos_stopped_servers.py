"""A server that cannot write to COS powers off: the sensor sees it through the VPC API and explains
it from the trusted profile's IAM policies. Real SDKs against the sandbox, nothing mocked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from ibm_cloud_airflow.hooks.iam import explain_stopped_servers
from ibm_cloud_airflow.sensors.cos import CosKeySensor
from ibm_cloud_airflow.triggers.cos import CosKeyTrigger

from ..test_sandbox_integration import start_box

pytestmark = pytest.mark.sandbox

SLUG = "manual-2026-iam-0badc0de"
PREFIX = f"results/dag/{SLUG}"
BUCKET = "results-iam"
KEYS = [f"{PREFIX}/vm-0/_SUCCESS", f"{PREFIX}/vm-1/_SUCCESS"]


@pytest.fixture
def box(sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    box = start_box(sandbox_factory, monkeypatch)
    box.ensure_bucket(BUCKET)
    return box


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
    trigger = CosKeyTrigger(
        bucket_name=BUCKET,
        bucket_key=KEYS,
        poke_interval=0.05,
        ibm_conn_id="ibm_cloud_default",
        server_name_prefix=SLUG,
        server_check_interval=0.0,
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
    assert event["status"] == "server_stopped"
    assert event["servers"] == [f"{SLUG}-vm-0"]
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


def test_sensor_fails_with_the_reason_in_one_line(box):
    profile = add_servers(box, ["Content Reader"])
    sensor = CosKeySensor(
        task_id="wait",
        bucket_name=BUCKET,
        bucket_key=KEYS,
        ibm_conn_id="ibm_cloud_default",
        server_name_prefix=SLUG,
        trusted_profile_id=profile,
        server_check_interval=0,
        deferrable=False,
        stall_timeout=None,
    )
    with pytest.raises(AirflowFailException) as err:
        sensor.poke({})
    message = str(err.value)
    assert "\n" not in message
    assert f"{SLUG}-vm-0 is stopped" in message and "COS access denied" in message
    assert "['Content Reader']" in message


def test_trigger_reports_a_server_that_is_gone_before_its_marker(box):
    # vm-1 is running; vm-0 was deleted (by hand, or with a lost host): no marker will ever come.
    vm = box.inventory.add("ibm_is_instance", f"{SLUG}-vm-1", attrs={})
    event = run_trigger()
    assert event["status"] == "server_missing"
    assert event["servers"] == [f"{SLUG}-vm-0"]
    assert f"Server {SLUG}-vm-0 is gone without a marker in {PREFIX}/vm-0/" in event["message"]
    # Once vm-0's marker is there, its server may go: only vm-1's work counts, and it still runs.
    box.cos_client().put_object(Bucket=BUCKET, Key=KEYS[0], Body=b"sha")
    box.inventory.update_attrs(vm["id"], status="running")
    assert run_trigger(wait_timeout=1)["status"] == "timeout"

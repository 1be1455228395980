"""The reaper's finding, deciding and deleting against the sandbox: real SDKs over HTTP, nothing mocked.

The resources are planted in the sandbox's inventory the way its Terraform engine records them (names,
tags, references), which is quicker than an apply that boots simulated servers. The Airflow run
look-up is a plain function here; the end-to-end tests use Airflow's own (tests/e2e/test_reaper.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpu_pipeline import reaper
from gpu_pipeline.naming import format_deadline

from ibm_cloud_airflow.exceptions import VpcResourceInUseError
from ibm_cloud_airflow.hooks.schematics import SchematicsHook
from ibm_cloud_airflow.hooks.vpc import VpcHook, delete_resource
from ibm_cloud_airflow.utils.run_identity import run_description, run_slug

pytestmark = pytest.mark.sandbox

TF = Path(__file__).parents[1] / "ibm_cloud_airflow" / "fixtures" / "tf_small"
PAST = datetime.now(UTC) - timedelta(hours=2)
FUTURE = datetime.now(UTC) + timedelta(hours=2)


@pytest.fixture
def box(sandbox_factory, monkeypatch):
    sbx = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0.0)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    return sbx


def plant_run(sbx, slug: str, ttl: datetime, *, tagged: bool = True) -> list[dict]:
    """What the Terraform creates for one server, as the engine records it."""
    inv = sbx.inventory
    tags = [f"airflow-run:{slug}", f"ttl:{format_deadline(ttl)}"] if tagged else []
    vpc = inv.add("ibm_is_vpc", f"{slug}-vpc", tags=tags)
    pgw = inv.add("ibm_is_public_gateway", f"{slug}-pgw", tags=tags, attrs={"vpc": vpc["id"]})
    subnet = inv.add(
        "ibm_is_subnet", f"{slug}-subnet", tags=tags, attrs={"vpc": vpc["id"], "public_gateway": pgw["id"]}
    )
    sg = inv.add("ibm_is_security_group", f"{slug}-vm-sg", tags=tags, attrs={"vpc": vpc["id"]})
    inv.add("ibm_is_security_group_rule", "egress_https", attrs={"group": sg["id"]})
    profile = inv.add(
        "ibm_iam_trusted_profile",
        f"{slug}-vm-profile",
        attrs={"description": f"GPU servers of Airflow run {slug}: write outputs to COS bucket b."},
        resource_id=f"Profile-{slug}",
    )
    inv.add("ibm_iam_trusted_profile_policy", "", attrs={"profile_id": profile["id"]})
    vm = inv.add(
        "ibm_is_instance",
        f"{slug}-vm-0",
        tags=tags,
        attrs={
            "vpc": vpc["id"],
            "subnet": subnet["id"],
            "primary_network_interface": [{"security_groups": [sg["id"]]}],
        },
    )
    inv.add("boot_volume", f"{slug}-vm-0-boot", tags=tags, attrs={"instance_id": vm["id"]})
    return inv.list()


def never_asked(dag_id, run_id):
    raise AssertionError("no workspace names a run: Airflow is not asked")


def test_the_vpc_api_refuses_what_ibm_refuses_and_deletes_with_ibm_status_codes(box):
    plant_run(box, "lost-run-0badf00d", PAST)
    hook = VpcHook()
    by_name = {r["name"]: r for r in box.inventory.list()}
    with pytest.raises(VpcResourceInUseError, match="409"):  # a VPC that still has subnets
        delete_resource(hook, "vpc", by_name["lost-run-0badf00d-vpc"]["id"])
    with pytest.raises(VpcResourceInUseError, match="still use it"):  # an instance uses the subnet
        delete_resource(hook, "subnet", by_name["lost-run-0badf00d-subnet"]["id"])
    instance = hook.client.delete("instances", by_name["lost-run-0badf00d-vm-0"]["id"], timeout=10)
    assert instance.get_status_code() == 204
    assert "lost-run-0badf00d-vm-0-boot" not in {r["name"] for r in box.inventory.list()}  # went with it
    subnet = hook.client.delete("subnets", by_name["lost-run-0badf00d-subnet"]["id"], timeout=10)
    assert subnet.get_status_code() == 202
    assert delete_resource(hook, "subnet", by_name["lost-run-0badf00d-subnet"]["id"]) is False  # 404: gone


def test_an_orphan_past_its_ttl_is_deleted_in_dependency_order_and_verified(box):
    plant_run(box, "lost-run-0badf00d", PAST)
    verdicts = reaper.find_orphans(
        ibm_conn_id="ibm_cloud_default", grace=timedelta(0), lookup_run=never_asked
    )

    (verdict,) = verdicts
    assert verdict["orphan"] and "ttl passed" in verdict["reason"]
    assert verdict["outlived_ttl_s"] >= 2 * 3600 - 5
    kinds = sorted(r["kind"] for r in verdict["resources"])
    assert kinds == sorted(
        ["vpc", "public_gateway", "subnet", "security_group", "instance", "volume", "trusted_profile"]
    )
    outcome = reaper.reap_leftovers(verdicts, ibm_conn_id="ibm_cloud_default", dry_run=False, pass_wait_s=0.1)
    assert outcome["errors"] == [] and outcome["left"] == []
    assert box.inventory.list() == []  # rules and policies went with their group and profile
    report = reaper.build_report(verdicts, outcome, dry_run=False, started_at="t")
    assert report["reaped_resources"] == 7


def test_a_resource_with_the_prefix_but_not_the_tag_is_left_alone(box):
    plant_run(box, "hand-made-0badf00d", PAST, tagged=False)
    before = box.inventory.list()
    verdicts = reaper.find_orphans(
        ibm_conn_id="ibm_cloud_default", grace=timedelta(0), lookup_run=never_asked
    )
    # Only the trusted profile (no tags; named and described for the run) is the pipeline's; the
    # untagged VPC resources are not, so the VPC they live in is never deleted from under them.
    assert [r["kind"] for v in verdicts for r in v["resources"]] == ["trusted_profile"]
    assert all(v["reason"] == "no workspace names its run and its ttl has not passed" for v in verdicts)
    reaper.reap_leftovers(verdicts, ibm_conn_id="ibm_cloud_default", dry_run=False, pass_wait_s=0.1)
    assert box.inventory.list() == before


def test_a_dry_run_deletes_nothing_and_says_why(box):
    plant_run(box, "lost-run-0badf00d", PAST)
    before = box.inventory.list()
    verdicts = reaper.find_orphans(
        ibm_conn_id="ibm_cloud_default", grace=timedelta(0), lookup_run=never_asked
    )
    outcome = reaper.reap_leftovers(verdicts, ibm_conn_id="ibm_cloud_default", dry_run=True)
    assert box.inventory.list() == before
    assert outcome["removed"] == [] and {r["why"] for r in outcome["left"]} == {"dry run"}
    assert not any(k.startswith("vpc DELETE") for k in box.request_counts())


def test_a_live_run_is_never_touched_whatever_its_ttl_says(box):
    run_id = "manual__2026-12-02T00:00:00+00:00"
    slug = run_slug("ibm_gpu_workload", run_id)
    plant_run(box, slug, PAST)
    SchematicsHook().create_workspace(
        f"airflow-{slug}",
        TF,
        tags=[f"airflow-run:{slug}", f"ttl:{format_deadline(PAST)}"],
        description=run_description("ibm_gpu_workload", run_id),
        reuse_existing=False,
    )
    asked = []

    def live(dag_id, rid):
        asked.append((dag_id, rid))
        return {"state": "running", "end_date": None}

    verdicts = reaper.find_orphans(ibm_conn_id="ibm_cloud_default", grace=timedelta(0), lookup_run=live)
    assert asked == [("ibm_gpu_workload", run_id)]
    (verdict,) = verdicts
    assert not verdict["orphan"] and "live" in verdict["reason"]
    before = box.inventory.list()
    reaper.reap_leftovers(verdicts, ibm_conn_id="ibm_cloud_default", dry_run=False)
    assert box.inventory.list() == before

    # The same run, gone from Airflow: its workspace and everything else goes.
    verdicts = reaper.find_orphans(
        ibm_conn_id="ibm_cloud_default", grace=timedelta(0), lookup_run=lambda d, r: None
    )
    assert verdicts[0]["orphan"] and "no longer exists" in verdicts[0]["reason"]
    outcome = reaper.reap_leftovers(verdicts, ibm_conn_id="ibm_cloud_default", dry_run=False, pass_wait_s=0.1)
    assert outcome["left"] == [] and box.inventory.list() == []
    assert SchematicsHook().find_workspace_by_name(f"airflow-{slug}") is None


@pytest.mark.parametrize(
    ("run", "orphan", "reason"),
    [
        # ended_ago, not an end date: the end is computed when the test runs, not at collection
        ({"state": "success", "ended_ago": timedelta(hours=2)}, True, "ended (success)"),
        ({"state": "failed", "ended_ago": timedelta(minutes=5)}, False, "less than"),
        ({"state": "queued", "ended_ago": None}, False, "live"),
        (None, True, "no longer exists"),
    ],
)
def test_a_run_that_ended_is_an_orphan_only_after_the_grace_period(run, orphan, reason):
    now = datetime.now(UTC)
    if run is not None:
        ago = run["ended_ago"]
        run = {"state": run["state"], "end_date": now - ago if ago else None}
    slug = run_slug("ibm_gpu_workload", "scheduled__2026-12-01T12:00:00+00:00")
    workspace = {
        "id": "us-south.workspace.x",
        "slug": slug,
        "ttl": format_deadline(FUTURE),
        "description": run_description("ibm_gpu_workload", "scheduled__2026-12-01T12:00:00+00:00"),
    }
    (verdict,) = reaper.decide(
        [workspace],
        [],
        set(),
        now=now,
        grace=timedelta(minutes=30),
        lookup_run=lambda d, r: run,
    )
    assert verdict.orphan is orphan and reason in verdict.reason, verdict
    assert verdict.outlived_ttl_s is None  # its TTL has not passed


def test_the_runs_of_a_leased_workspace_are_never_touched():
    resource = reaper.Resource(
        "vpc", "r006-1", "adopted-run-0badf00d-vpc", "adopted-run-0badf00d", "20200101T000000Z"
    )
    (verdict,) = reaper.decide(
        [],
        [resource],
        {"adopted-run-0badf00d"},
        now=datetime.now(UTC),
        grace=timedelta(0),
        lookup_run=never_asked,
    )
    assert not verdict.orphan and "lease" in verdict.reason

"""Capacity and quotas as IBM Cloud has them, and Terraform's replacement of a tainted instance.

Engine-level (no HTTP) against the project's real ``terraform/`` folder: a server that cannot start
is tainted and replaced by the next apply, destroy first, which releases its reserved IP; a zone
without capacity stays without it across applies; the region's vCPU, memory and GPU quotas refuse a
create with IBM's ``over_quota`` error. Sources: docs/sandbox.md, "Capacity, quotas and tainted
instances".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import FaultSet
from sandbox.ibm.capacity import CAPACITY_REASONS, Quotas
from sandbox.ibm.provider import IbmProvider
from sandbox.ibm.vpc_rules import DEFAULT_QUOTAS, delete_instance
from sandbox.inventory import Inventory
from sandbox.terraform import TerraformEngine, TerraformError, TerraformRun

TEMPLATE = Path(__file__).resolve().parents[3] / "terraform"
COS_CRN = "crn:v1:bluemix:public:cloud-object-storage:global:a/sandbox0account:0f1e2d3c-guid::"


def make_run(workspace: str = "ws-1", **overrides: Any) -> TerraformRun:
    values = {
        "run_id": f"cap-{workspace}",
        "run_ttl": "2026-12-01T17:03:00Z",
        "region": "us-south",
        "zone": "us-south-1",
        "cos_bucket": "gpu-results",
        "cos_endpoint": "http://127.0.0.1:9000",
        "cos_prefix": f"runs/ibm_gpu_workload/{workspace}",
        "cos_instance_crn": COS_CRN,
        "workload_bundle_key": f"runs/ibm_gpu_workload/{workspace}/bundle/workload.tar.gz",
        "vm_count": "1",
        **overrides,
    }
    lines: list[str] = []
    variables = {k: {"value": str(v), "type": None, "secure": False} for k, v in values.items()}
    run = TerraformRun(workspace, TEMPLATE, variables, {}, lines.append)
    run.lines = lines  # type: ignore[attr-defined]
    return run


def engine_with(faults: dict | None = None, quotas: Quotas = DEFAULT_QUOTAS) -> TerraformEngine:
    fault_set = FaultSet()
    fault_set.set(faults or {})
    return TerraformEngine(
        IbmProvider(inventory=Inventory(), faults=fault_set, resource_delay_s=0, quotas=quotas)
    )


def state_of(run: TerraformRun, rtype: str) -> list[dict]:
    return [e for e in run.state["resources"] if e["type"] == rtype]


def kinds(engine: TerraformEngine, kind: str) -> list[dict]:
    return engine.provider.inventory.list(kind=kind)


# -- taint, then replace: destroy first, releasing every binding ---------------------------------


def test_a_failed_instance_is_replaced_destroy_first_and_its_reserved_ip_is_released():
    engine = engine_with({"no_capacity": {"zones": ["us-south-1"]}})
    run = make_run()
    with pytest.raises(TerraformError, match="cannot_start_capacity"):
        engine.apply(run)
    [failed] = state_of(run, "ibm_is_instance")
    [reserved] = state_of(run, "ibm_is_subnet_reserved_ip")
    nic = failed["attrs"]["primary_network_interface"][0]["id"]
    assert failed["tainted"] is True
    assert failed["attrs"]["status"] == "failed"
    assert reserved["attrs"]["target"] == nic  # IBM bound the address to the failed server's NIC
    [ip_record] = kinds(engine, "ibm_is_subnet_reserved_ip")
    assert ip_record["attrs"]["target"] == nic
    assert len(kinds(engine, "boot_volume")) == 1

    engine.provider.faults.set([])  # capacity came back
    run.lines.clear()
    engine.apply(run)

    [vm] = kinds(engine, "ibm_is_instance")
    assert vm["id"] != failed["id"] and vm["attrs"]["status"] == "running"
    assert engine.provider.inventory.get(failed["id"]) is None
    [volume] = kinds(engine, "boot_volume")  # the failed server's boot volume went with it
    assert volume["attrs"]["instance_id"] == vm["id"]
    new_nic = vm["attrs"]["primary_network_interface"][0]["id"]
    [ip_record] = kinds(engine, "ibm_is_subnet_reserved_ip")
    assert ip_record["id"] == reserved["inventory_ids"][0]  # the same reserved IP, bound again
    assert ip_record["attrs"]["target"] == new_nic
    assert vm["attrs"]["primary_ip"] == reserved["attrs"]["address"]
    # Terraform's default order for a replacement: the destroy comes before the create
    address = "ibm_is_instance.vm[0]"
    lines = run.lines
    assert f"{address}: tainted, so must be replaced" in lines
    destroyed = lines.index(f"{address}: Destroying... [id={failed['id']}]")
    assert destroyed < lines.index(f"{address}: Creating...")
    assert "Apply complete! Resources: 1 added, 0 changed, 1 destroyed." in lines

    engine.destroy(run)
    assert engine.provider.inventory.list() == []


def test_create_before_destroy_creates_the_replacement_first(tmp_path):
    # With lifecycle { create_before_destroy = true } Terraform creates the new object first: the
    # reserved IP is still bound to the failed server then, and the VPC API refuses a second binding.
    (tmp_path / "main.tf").write_text(
        """
resource "ibm_is_vpc" "v" {
  name = "c-vpc"
}
resource "ibm_is_subnet" "s" {
  name = "c-subnet"
  vpc = ibm_is_vpc.v.id
  zone = "us-south-1"
  ipv4_cidr_block = "10.240.0.0/28"
}
resource "ibm_is_subnet_reserved_ip" "ip" {
  subnet = ibm_is_subnet.s.id
}
data "ibm_is_image" "i" {
  name = "ibm-ubuntu-24-04-6-minimal-amd64-3"
}
resource "ibm_is_instance" "vm" {
  name = "c-vm"
  image = data.ibm_is_image.i.id
  profile = "gx3-16x80x1l4"
  vpc = ibm_is_vpc.v.id
  zone = "us-south-1"
  primary_network_interface {
    subnet = ibm_is_subnet.s.id
    primary_ip {
      reserved_ip = ibm_is_subnet_reserved_ip.ip.reserved_ip
    }
  }
  lifecycle {
    create_before_destroy = true
  }
}
"""
    )
    engine = engine_with({"no_capacity": {}})  # the default: no capacity in the region's first zone
    run = TerraformRun("ws-cbd", tmp_path, {}, {}, lambda _line: None)
    with pytest.raises(TerraformError, match="cannot_start_capacity"):
        engine.apply(run)
    engine.provider.faults.set([])
    with pytest.raises(TerraformError, match="is already bound to"):
        engine.apply(run)


def test_deleting_an_instance_releases_what_was_bound_to_it():
    inventory = Inventory()
    nic = "0717-abc-nic0"
    vm = inventory.add(
        "ibm_is_instance", "vm", attrs={"primary_network_interface": [{"id": nic}], "status": "running"}
    )
    kept_ip = inventory.add("ibm_is_subnet_reserved_ip", "ip", attrs={"target": nic, "auto_delete": False})
    gone_ip = inventory.add("ibm_is_subnet_reserved_ip", "ip2", attrs={"target": nic, "auto_delete": True})
    other_ip = inventory.add("ibm_is_subnet_reserved_ip", "ip3", attrs={"target": "0717-other-nic0"})
    fip = inventory.add("ibm_is_floating_ip", "fip", attrs={"target": nic})
    boot = inventory.add("boot_volume", "boot", attrs={"instance_id": vm["id"], "auto_delete_volume": True})
    data = inventory.add("boot_volume", "data", attrs={"instance_id": vm["id"], "auto_delete_volume": False})

    removed = delete_instance(inventory, vm["id"])

    assert set(removed) == {vm["id"], gone_ip["id"], boot["id"]}
    assert inventory.get(kept_ip["id"])["attrs"]["target"] == ""  # unbound, kept (auto_delete false)
    assert inventory.get(fip["id"])["attrs"]["target"] == ""  # "implicitly disassociated"
    assert inventory.get(other_ip["id"])["attrs"]["target"] == "0717-other-nic0"
    assert inventory.get(data["id"])["attrs"]["instance_id"] == ""  # kept, detached
    assert delete_instance(inventory, vm["id"]) == []


# -- capacity per (zone, profile) ----------------------------------------------------------------


def test_a_zone_without_capacity_stays_without_it_and_another_zone_has_some():
    engine = engine_with({"no_capacity": {"zones": ["us-south-1"]}})
    run = make_run("ws-1")
    for _ in range(3):  # every try fails the same way: capacity does not come back between tries
        with pytest.raises(TerraformError) as err:
            engine.apply(run)
        assert "cannot_start_capacity" in str(err.value) and "already bound" not in str(err.value)
        assert "zone us-south-1, profile gx3-16x80x1l4" in str(err.value)
    [vm] = kinds(engine, "ibm_is_instance")  # each try replaced the failed server: one is left
    assert vm["attrs"]["status"] == "failed"
    assert vm["attrs"]["status_reasons"][0] == {
        "code": "cannot_start_capacity",
        "message": CAPACITY_REASONS["cannot_start_capacity"],
        "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-instance-status-messages",
    }
    assert len(kinds(engine, "ibm_is_subnet_reserved_ip")) == 1

    other = make_run("ws-2", zone="us-south-2")
    engine.apply(other)
    assert [v["attrs"]["status"] for v in kinds(engine, "ibm_is_instance")] == ["failed", "running"]

    engine.destroy(run)
    engine.destroy(other)
    assert engine.provider.inventory.list() == []


def test_capacity_is_per_profile_and_can_be_partial():
    engine = engine_with({"no_capacity": {"zones": "all", "profiles": ["gx3-16x80x1l4"], "available": 1}})
    # one server of the profile starts anywhere, the second does not: 1 of 2 is a failed apply
    run = make_run("ws-1", zone="us-south-2", vm_count=2)
    with pytest.raises(TerraformError, match=r"ibm_is_instance\.vm\[1\].*zone us-south-2"):
        engine.apply(run)
    statuses = sorted(v["attrs"]["status"] for v in kinds(engine, "ibm_is_instance"))
    assert statuses == ["failed", "running"]
    # another profile has capacity in the same zone
    engine.apply(make_run("ws-2", zone="us-south-2", gpu_profile="gx3-24x120x1l40s"))


@pytest.mark.parametrize("reason", sorted(CAPACITY_REASONS))
def test_each_capacity_reason_is_reported_as_the_provider_reports_it(reason):
    engine = engine_with({"no_capacity": {"reason": reason}})
    with pytest.raises(TerraformError) as err:
        engine.apply(make_run())
    text = str(err.value)
    assert text.startswith("[ERROR] Instance (") and "went into failed state during the operation" in text
    assert f'"code": "{reason}"' in text and CAPACITY_REASONS[reason] in text
    assert "Running terraform apply again will remove the tainted instance" in text


def test_an_unknown_capacity_reason_is_refused():
    engine = engine_with({"no_capacity": {"reason": "cannot_start_typo"}})
    with pytest.raises(TerraformError, match="unknown reason 'cannot_start_typo'"):
        engine.apply(make_run())


def test_a_profile_the_zone_does_not_offer_is_refused_at_create():
    engine = engine_with({"profile_not_offered": {"zones": ["us-south-1"], "profiles": ["gx3-16x80x1l4"]}})
    run = make_run()
    with pytest.raises(TerraformError) as err:
        engine.apply(run)
    assert (
        "CreateInstanceWithContext failed: Instance profile gx3-16x80x1l4 is not available in zone "
        in str(err.value)
    )
    assert "code instance_profile_not_available" in str(err.value)
    assert state_of(run, "ibm_is_instance") == []  # refused, not created: nothing is tainted
    engine.apply(make_run("ws-2", zone="us-south-3"))


# -- quotas per region ---------------------------------------------------------------------------


def test_the_defaults_are_ibms():
    assert Quotas(vcpu=200, memory_gb=5600, gpus=16) == DEFAULT_QUOTAS


@pytest.mark.parametrize(
    ("quotas", "name", "allocated", "requested", "limit"),
    [
        (Quotas(vcpu=40, memory_gb=5600, gpus=16), "instance-vcpu", 32, 16, 40),
        (Quotas(vcpu=200, memory_gb=200, gpus=16), "instance-memory", 160, 80, 200),
        (Quotas(vcpu=200, memory_gb=5600, gpus=2), "instance-gpu", 2, 1, 2),
    ],
)
def test_each_quota_refuses_the_instance_that_would_pass_it(quotas, name, allocated, requested, limit):
    engine = engine_with(quotas=quotas)
    run = make_run(vm_count=3)  # gx3-16x80x1l4: 16 vCPU, 80 GB, 1 GPU each
    with pytest.raises(TerraformError) as err:
        engine.apply(run)
    text = str(err.value)
    assert text.startswith(
        "CreateInstanceWithContext failed: Creating a new instance will put the user over quota"
    )
    assert f"({name}). Allocated: {allocated}, Requested: {requested}, Quota: {limit}" in text
    assert "(status 400, code over_quota)" in text and "vpc?topic=vpc-quotas" in text
    assert len(state_of(run, "ibm_is_instance")) == allocated // requested  # refused: not created
    engine.destroy(run)
    assert engine.provider.inventory.list() == []


def test_quotas_count_every_workspace_of_the_region():
    engine = engine_with(quotas=Quotas(vcpu=200, memory_gb=5600, gpus=16))
    engine.apply(make_run("ws-1", gpu_profile="gx3d-160x1792x8h100"))  # 160 vCPU, 8 GPUs
    with pytest.raises(
        TerraformError, match=r"\(instance-vcpu\). Allocated: 160, Requested: 160, Quota: 200"
    ):
        engine.apply(make_run("ws-2", gpu_profile="gx3d-160x1792x8h100"))

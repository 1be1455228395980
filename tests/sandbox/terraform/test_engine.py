"""The sandbox Terraform engine against the real terraform/ folder (in-memory, no HTTP)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.faults import FaultSet
from sandbox.ibm.provider import IbmProvider
from sandbox.ibm.vpc_rules import delete_instance
from sandbox.inventory import Inventory
from sandbox.terraform import TerraformEngine, TerraformError, TerraformRun, declared_variables
from sandbox.terraform.expr import Evaluator, HclError, Scope, parse_expression

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "terraform"
COS_CRN = "crn:v1:bluemix:public:cloud-object-storage:global:a/sandbox0account:0f1e2d3c-guid::"
RUN_ENV_KEYS = [
    "RUN_ID", "RUN_DEADLINE", "INSTANCE_INDEX", "INSTANCE_COUNT", "COS_ENDPOINT", "COS_BUCKET",
    "COS_OUTPUT_PREFIX", "WORKLOAD_BUNDLE_KEY", "COS_AUTH", "TRUSTED_PROFILE_ID", "DATASET", "EPOCHS",
    "BATCH_SIZE", "LEARNING_RATE", "SEED", "CHECKPOINT_EVERY_EPOCHS", "DISTRIBUTION", "CLUSTER_HOSTS",
    "TRAINING_PORT", "COLLECTIVE_TIMEOUT_S", "EXPECTED_GPU_COUNT", "NVSWITCH",
]  # fmt: skip
HMAC_KEYS = ["COS_HMAC_ACCESS_KEY_ID", "COS_HMAC_SECRET_ACCESS_KEY"]
BASE_RESOURCES = 9  # vpc, gateway, subnet, sg, 3 egress rules, trusted profile, policy
PER_SERVER = 2  # the instance and its reserved private IP


def variables(**overrides: Any) -> dict[str, dict]:
    values = {
        "run_id": "nightly-a1b2c3d4",
        "run_ttl": "2026-12-01T17:03:00Z",
        "region": "us-south",
        "zone": "us-south-1",
        "cos_bucket": "gpu-results",
        "cos_endpoint": "http://127.0.0.1:9000",
        "cos_prefix": "runs/ibm_gpu_workload/nightly-a1b2c3d4",
        "cos_instance_crn": COS_CRN,
        "workload_bundle_key": "runs/ibm_gpu_workload/nightly-a1b2c3d4/bundle/workload.tar.gz",
        "vm_count": "2",
        "epochs": "3",
    }
    values.update(overrides)
    secure = {"cos_hmac_access_key_id", "cos_hmac_secret_access_key"}
    return {k: {"value": str(v), "type": None, "secure": k in secure} for k, v in values.items()}


class FakeLauncher:
    def __init__(self) -> None:
        self.started: list[tuple[dict, str]] = []
        self.stopped: list[str] = []

    def start(self, record: dict, user_data: str) -> None:
        self.started.append((record, user_data))

    def stop(self, instance_id: str) -> None:
        self.stopped.append(instance_id)


@pytest.fixture
def inventory() -> Inventory:
    return Inventory()


@pytest.fixture
def faults() -> FaultSet:
    return FaultSet()


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def engine(inventory: Inventory, faults: FaultSet, launcher: FakeLauncher) -> TerraformEngine:
    return TerraformEngine(
        IbmProvider(inventory=inventory, faults=faults, launcher=launcher, resource_delay_s=0)
    )


def make_run(workspace: str = "ws-1", template: Path = TEMPLATE, **overrides: Any) -> TerraformRun:
    lines: list[str] = []
    run = TerraformRun(workspace, template, variables(**overrides), {}, lines.append)
    run.lines = lines  # type: ignore[attr-defined]
    return run


def run_env(user_data: str) -> dict[str, str]:
    doc = yaml.safe_load(user_data)
    entry = next(f for f in doc["write_files"] if f["path"] == "/etc/gpu-workload/run.env")
    return dict(line.split("=", 1) for line in entry["content"].splitlines() if line)


# -- plan ----------------------------------------------------------------------------------------


def test_plan_counts_resources_without_touching_the_inventory(engine, inventory):
    run = make_run()
    assert engine.plan(run) == {"add": BASE_RESOURCES + 2 * PER_SERVER, "change": 0, "destroy": 0}
    assert inventory.list() == []
    assert run.state == {}
    assert "Plan: 13 to add, 0 to change, 0 to destroy." in run.lines


def test_plan_after_apply_has_no_changes_and_follows_vm_count(engine):
    run = make_run()
    engine.apply(run)
    assert engine.plan(run) == {"add": 0, "change": 0, "destroy": 0}
    run.variables = variables(vm_count="3")
    assert engine.plan(run) == {"add": PER_SERVER, "change": 0, "destroy": 0}


# -- apply ---------------------------------------------------------------------------------------


def test_apply_creates_tagged_named_resources_in_dependency_order(engine, inventory):
    run = make_run()
    outputs = engine.apply(run)
    resources = inventory.list(workspace_id="ws-1")
    kinds = sorted(r["kind"] for r in resources)
    assert kinds.count("ibm_is_instance") == 2
    assert kinds.count("boot_volume") == 2
    assert kinds.count("ibm_is_security_group_rule") == 3
    assert "ibm_is_floating_ip" not in kinds and "ibm_is_ssh_key" not in kinds
    taggable = {"ibm_is_vpc", "ibm_is_subnet", "ibm_is_public_gateway", "ibm_is_security_group",
                "ibm_is_instance", "boot_volume"}  # fmt: skip
    for r in resources:
        if r["kind"] in taggable:
            assert r["tags"] == ["airflow-run:nightly-a1b2c3d4", "ttl:20261201T170300Z"], r
            assert r["name"].startswith("nightly-a1b2c3d4-"), r
    names = {r["name"] for r in resources}
    assert {"nightly-a1b2c3d4-vpc", "nightly-a1b2c3d4-vm-0", "nightly-a1b2c3d4-vm-1"} <= names

    created = [e["kind"] for e in inventory.events() if e["event"] == "created"]
    assert (
        created.index("ibm_is_vpc") < created.index("ibm_is_public_gateway") < created.index("ibm_is_subnet")
    )
    assert created.index("ibm_iam_trusted_profile_policy") < created.index("ibm_is_instance")
    assert created.index("ibm_is_security_group") < created.index("ibm_is_instance")

    vm = next(r for r in resources if r["name"] == "nightly-a1b2c3d4-vm-1")
    attrs = vm["attrs"]
    assert attrs["profile"] == "gx3-16x80x1l4"
    assert attrs["zone"] == "us-south-1"
    assert attrs["vpc"] == outputs["vpc_id"]["value"]
    assert attrs["primary_ip"] == outputs["private_ips"]["value"][1]
    assert attrs["trusted_profile_id"] == outputs["trusted_profile_id"]["value"]
    assert attrs["trusted_profile_id"].startswith("Profile-")
    assert attrs["metadata_service"] == [{"enabled": True, "protocol": "https", "response_hop_limit": 1}]
    assert attrs["boot_volume"][0]["auto_delete_volume"] is True

    assert set(outputs) == {
        "vpc_id", "subnet_id", "security_group_id", "instance_ids", "instance_names",
        "private_ips", "trusted_profile_id", "image_id", "debug_floating_ips",
    }  # fmt: skip
    assert outputs["instance_ids"]["value"] == [r["id"] for r in resources if r["kind"] == "ibm_is_instance"]
    assert outputs["debug_floating_ips"]["value"] == []
    assert outputs["vpc_id"] == {"value": outputs["vpc_id"]["value"], "type": "string", "sensitive": False}
    assert not any(o["sensitive"] for o in outputs.values())
    assert run.state["outputs"] == outputs
    assert "Apply complete! Resources: 13 added, 0 changed, 0 destroyed." in run.lines
    assert "ibm_is_vpc.vpc: Creating..." in run.lines


def test_apply_starts_one_server_per_instance_with_its_user_data(engine, launcher, inventory):
    engine.apply(make_run())
    assert len(launcher.started) == 2
    for index, (record, user_data) in enumerate(sorted(launcher.started, key=lambda s: s[0]["name"])):
        assert record["kind"] == "ibm_is_instance"
        assert record["attrs"]["user_data"] == user_data
        assert run_env(user_data)["INSTANCE_INDEX"] == str(index)


def test_user_data_implements_the_boot_contract(engine, inventory):
    outputs = engine.apply(make_run())
    vms = sorted(inventory.list(kind="ibm_is_instance"), key=lambda r: r["name"])
    for index, vm in enumerate(vms):
        user_data = vm["attrs"]["user_data"]
        assert user_data.startswith("#cloud-config\n")
        doc = yaml.safe_load(user_data)
        assert set(doc) == {"write_files", "runcmd"}
        assert doc["runcmd"] == [["/opt/gpu-workload/bootstrap.sh", "/etc/gpu-workload/run.env"]]
        files = {f["path"]: f for f in doc["write_files"]}
        assert set(files) == {"/etc/gpu-workload/run.env", "/opt/gpu-workload/bootstrap.sh"}
        script = files["/opt/gpu-workload/bootstrap.sh"]
        assert script["encoding"] == "b64" and script["permissions"] == "0755"
        assert base64.b64decode(script["content"]) == (REPO / "workload" / "bootstrap.sh").read_bytes()
        env = run_env(user_data)
        assert list(env) == RUN_ENV_KEYS
        assert env == {
            "RUN_ID": "nightly-a1b2c3d4",
            "RUN_DEADLINE": "2026-12-01T17:03:00Z",
            "INSTANCE_INDEX": str(index),
            "INSTANCE_COUNT": "2",
            "COS_ENDPOINT": "http://127.0.0.1:9000",
            "COS_BUCKET": "gpu-results",
            "COS_OUTPUT_PREFIX": f"runs/ibm_gpu_workload/nightly-a1b2c3d4/vm-{index}",
            "WORKLOAD_BUNDLE_KEY": "runs/ibm_gpu_workload/nightly-a1b2c3d4/bundle/workload.tar.gz",
            "COS_AUTH": "trusted_profile",
            "TRUSTED_PROFILE_ID": outputs["trusted_profile_id"]["value"],
            "DATASET": "mnist",
            "EPOCHS": "3",
            "BATCH_SIZE": "128",
            "LEARNING_RATE": "0.001",
            "SEED": "42",
            "CHECKPOINT_EVERY_EPOCHS": "1",
            "DISTRIBUTION": "single",
            "CLUSTER_HOSTS": "10.240.0.4,10.240.0.5",  # the reserved IPs, known before boot
            "TRAINING_PORT": "23456",
            "COLLECTIVE_TIMEOUT_S": "300",
            "EXPECTED_GPU_COUNT": "1",  # the default profile, gx3-16x80x1l4
            "NVSWITCH": "0",
        }


def test_hmac_mode_has_keys_in_run_env_and_no_trusted_profile(engine, inventory):
    run = make_run(
        cos_auth_mode="hmac",
        cos_instance_crn="",
        cos_hmac_access_key_id="0123456789abcdef0123",
        cos_hmac_secret_access_key="s3cr3tS3cr3tS3cr3tS3cr3t",
    )
    assert engine.plan(run)["add"] == BASE_RESOURCES - 2 + 2 * PER_SERVER
    outputs = engine.apply(run)
    assert not inventory.list(kind="ibm_iam_trusted_profile")
    assert not inventory.list(kind="ibm_iam_trusted_profile_policy")
    vm = inventory.list(kind="ibm_is_instance")[0]
    assert vm["attrs"]["trusted_profile_id"] is None
    assert "default_trusted_profile_auto_link" not in vm["attrs"]
    env = run_env(vm["attrs"]["user_data"])
    assert list(env) == RUN_ENV_KEYS + HMAC_KEYS
    assert env["COS_AUTH"] == "hmac" and env["TRUSTED_PROFILE_ID"] == ""
    assert env["COS_HMAC_SECRET_ACCESS_KEY"] == "s3cr3tS3cr3tS3cr3tS3cr3t"
    assert outputs["trusted_profile_id"]["value"] == ""
    assert "s3cr3t" not in repr(outputs) and not any("s3cr3t" in line for line in run.lines)


def test_keyless_mode_puts_no_secret_in_user_data(engine, inventory):
    run = make_run(cos_hmac_access_key_id="0123456789abcdef0123", cos_hmac_secret_access_key="s3cr3tS3cr3tXX")
    engine.apply(run)
    for vm in inventory.list(kind="ibm_is_instance"):
        assert "s3cr3t" not in vm["attrs"]["user_data"]
        assert not set(HMAC_KEYS) & set(run_env(vm["attrs"]["user_data"]))


@pytest.mark.parametrize("debug", [False, True])
def test_inbound_rule_and_floating_ips_only_in_debug_mode(engine, inventory, debug):
    extra = (
        {"debug_mode": "true", "debug_allowed_cidr": "203.0.113.7/32",
         "debug_ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample dev@example"}
        if debug else {}
    )  # fmt: skip
    outputs = engine.apply(make_run(**extra))
    rules = inventory.list(kind="ibm_is_security_group_rule")
    inbound = [r for r in rules if r["attrs"]["direction"] == "inbound"]
    fips = inventory.list(kind="ibm_is_floating_ip")
    keys = inventory.list(kind="ibm_is_ssh_key")
    vms = inventory.list(kind="ibm_is_instance")
    if not debug:
        assert inbound == [] and fips == [] and keys == []
        assert all(vm["attrs"]["keys"] == [] for vm in vms)
    else:
        assert len(inbound) == 1
        rule = inbound[0]["attrs"]
        assert (rule["remote"], rule["protocol"], rule["port_min"], rule["port_max"]) == (
            "203.0.113.7/32",
            "tcp",
            22,
            22,
        )
        assert len(fips) == 2 and len(keys) == 1
        nic_ids = {vm["attrs"]["primary_network_interface"][0]["id"] for vm in vms}
        assert {f["attrs"]["target"] for f in fips} == nic_ids
        assert all(vm["attrs"]["keys"] == [keys[0]["id"]] for vm in vms)
        assert outputs["debug_floating_ips"]["value"] == [f["attrs"]["address"] for f in fips]
        for r in fips + keys:
            assert "airflow-run:nightly-a1b2c3d4" in r["tags"]
    egress = {
        (r["attrs"]["protocol"], r["attrs"]["port_min"])
        for r in rules
        if r["attrs"]["direction"] == "outbound"
    }
    assert egress == {("tcp", 443), ("tcp", 80), ("udp", 53)}


def test_two_runs_coexist_and_destroy_only_their_own(engine, inventory):
    a = make_run("ws-a", run_id="nightly-aaaaaaaa")
    b = make_run("ws-b", run_id="nightly-bbbbbbbb", vm_count="1")
    engine.apply(a)
    engine.apply(b)
    engine.destroy(a)
    assert inventory.list(workspace_id="ws-a") == []
    left = inventory.list(workspace_id="ws-b")
    assert len(left) == BASE_RESOURCES + 3  # one instance, its boot volume and its reserved IP
    assert all("airflow-run:nightly-bbbbbbbb" in r["tags"] for r in left if r["tags"])


def test_reapply_is_idempotent_and_shrinks_with_vm_count(engine, inventory, launcher):
    run = make_run()
    engine.apply(run)
    engine.apply(run)
    assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in run.lines
    assert len(inventory.list(kind="ibm_is_instance")) == 2
    run.variables = variables(vm_count="1")
    engine.apply(run)
    assert "Apply complete! Resources: 0 added, 0 changed, 2 destroyed." in run.lines
    assert [r["name"] for r in inventory.list(kind="ibm_is_instance")] == ["nightly-a1b2c3d4-vm-0"]
    assert len(launcher.stopped) == 1


# -- destroy -------------------------------------------------------------------------------------


def test_destroy_empties_the_inventory_in_reverse_order(engine, inventory, launcher):
    run = make_run()
    engine.apply(run)
    instance_ids = [r["id"] for r in inventory.list(kind="ibm_is_instance")]
    engine.destroy(run)
    assert inventory.list() == []
    assert run.state["resources"] == []
    assert sorted(launcher.stopped) == sorted(instance_ids)
    deleted = [e["kind"] for e in inventory.events() if e["event"] == "deleted"]
    assert deleted.index("ibm_is_instance") < deleted.index("ibm_is_subnet") < deleted.index("ibm_is_vpc")
    assert deleted[-1] == "ibm_is_vpc"
    assert "Destroy complete! Resources: 13 destroyed." in run.lines
    engine.destroy(run)  # nothing left: still fine
    assert "Destroy complete! Resources: 0 destroyed." in run.lines


def test_refresh_forgets_resources_deleted_out_of_band(engine, inventory):
    run = make_run()
    outputs = engine.apply(run)
    inventory.remove(outputs["instance_ids"]["value"][1])
    assert engine.refresh(run) == outputs
    assert len(run.state["resources"]) == BASE_RESOURCES + 2 * PER_SERVER - 1
    assert engine.plan(run) == {"add": 1, "change": 0, "destroy": 0}


def test_apply_refreshes_first_and_creates_again_a_server_deleted_out_of_band(engine, inventory, launcher):
    # Terraform's plan and apply refresh the state first (-refresh=true): a server deleted by hand
    # or lost with its host is planned and created again, and only it.
    run = make_run()
    outputs = engine.apply(run)
    lost = outputs["instance_ids"]["value"][1]
    delete_instance(inventory, lost)  # as DELETE /instances/{id} does: its bindings are released
    assert engine.plan(run) == {"add": 1, "change": 0, "destroy": 0}
    assert len(run.state["resources"]) == BASE_RESOURCES + 2 * PER_SERVER  # a plan writes no state
    again = engine.apply(run)["instance_ids"]["value"]
    assert again[0] == outputs["instance_ids"]["value"][0] and again[1] != lost
    assert inventory.get(again[1]) is not None


# -- faults --------------------------------------------------------------------------------------


def test_fault_plan_fails(engine, faults, inventory):
    faults.set(["plan_fails"])
    run = make_run()
    with pytest.raises(TerraformError, match="plan_fails"):
        engine.plan(run)
    with pytest.raises(TerraformError, match="plan_fails"):
        engine.apply(run)
    assert inventory.list() == []
    assert any(line.startswith("Error: ") for line in run.lines)


def test_fault_apply_fails_midway_keeps_state_for_destroy(engine, faults, inventory):
    faults.set({"apply_fails_midway": {"after": 12}})
    run = make_run()
    with pytest.raises(TerraformError, match="apply_fails_midway"):
        engine.apply(run)
    assert len(run.state["resources"]) == 12
    assert len(inventory.list(kind="ibm_is_instance")) == 1  # vm-0 exists, vm-1 failed
    engine.destroy(run)
    assert inventory.list() == []


def test_fault_apply_fails_midway_default_is_half(engine, faults, inventory):
    faults.set(["apply_fails_midway"])
    run = make_run()
    with pytest.raises(TerraformError):
        engine.apply(run)
    assert len(run.state["resources"]) == 7
    engine.destroy(run)
    assert inventory.list() == []


def test_fault_apply_fails_midway_fails_every_retry_too(engine, faults, inventory):
    faults.set(["apply_fails_midway"])
    run = make_run()
    for _ in range(2):
        with pytest.raises(TerraformError, match="apply_fails_midway"):
            engine.apply(run)
        assert len(run.state["resources"]) == 7  # a retry creates nothing more and fails again
    faults.set([])
    engine.apply(run)  # once capacity is back, the same state completes
    assert len(run.state["resources"]) > 7
    engine.destroy(run)
    assert inventory.list() == []


def test_fault_destroy_fails_once(engine, faults, inventory):
    run = make_run()
    engine.apply(run)
    faults.set(["destroy_fails_once"])
    with pytest.raises(TerraformError, match="destroy_fails_once"):
        engine.destroy(run)
    assert 0 < len(run.state["resources"]) < BASE_RESOURCES + 2 * PER_SERVER
    engine.destroy(run)
    assert inventory.list() == []


def test_should_stop_interrupts_apply_and_state_stays_destroyable(engine, inventory):
    run = make_run()
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    run.should_stop = stop
    with pytest.raises(TerraformError, match="stopped"):
        engine.apply(run)
    assert len(run.state["resources"]) == 3
    run.should_stop = lambda: False
    engine.destroy(run)
    assert inventory.list() == []


def test_runs_in_parallel_threads(engine, inventory):
    runs = [make_run(f"ws-{i}", run_id=f"par-{i}-0000abcd") for i in range(4)]
    errors: list[BaseException] = []

    def go(r: TerraformRun) -> None:
        try:
            engine.apply(r)
            engine.destroy(r)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and inventory.list() == []


# -- variables -----------------------------------------------------------------------------------


def test_a_zone_of_a_region_that_offers_the_profile_passes_the_variables(engine, inventory):
    """Zone names map to IBM's physical zones per account: only the region is checked here."""
    engine.plan(make_run(gpu_profile="gx3d-160x1792x8h100", zone="us-south-2"))


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"vm_count": "0"}, "vm_count"),
        ({"vm_count": "9"}, "vm_count"),
        ({"vm_count": "1.5"}, "vm_count"),
        ({"vm_count": "two"}, "vm_count"),
        ({"gpu_profile": "bx2-2x8"}, "gpu_profile"),
        ({"gpu_profile": "gp2-24x224x2"}, "gpu_profile"),
        ({"gpu_profile": "gx3d-160x1792x8h200"}, "gpu_profile"),  # no H200 in us-south at all
        ({"run_id": "Bad_Run"}, "run_id"),
        ({"run_ttl": "tomorrow"}, "run_ttl"),
        ({"run_ttl": "2026-12-01 17:03:00"}, "run_ttl"),
        ({"zone": "eu-de-1"}, "zone"),
        ({"cos_auth_mode": "apikey"}, "cos_auth_mode"),
        ({"cos_instance_crn": "not-a-crn"}, "cos_instance_crn"),
        ({"cos_auth_mode": "hmac"}, "cos_hmac_access_key_id"),
        ({"cos_endpoint": "s3.example.com"}, "cos_endpoint"),
        ({"cos_prefix": "runs/x/"}, "cos_prefix"),
        ({"debug_mode": "yes"}, "debug_mode"),
        ({"debug_mode": "true", "debug_ssh_public_key": "ssh-ed25519 AAAA x",
          "debug_allowed_cidr": "0.0.0.0/0"}, "debug_allowed_cidr"),
        ({"debug_mode": "true", "debug_ssh_public_key": "ssh-ed25519 AAAA x"}, "debug_allowed_cidr"),
        ({"debug_mode": "true", "debug_ssh_public_key": "ssh-ed25519 AAAA x",
          "debug_allowed_cidr": "300.1.1.1/32"}, "debug_allowed_cidr"),
        ({"debug_mode": "true", "debug_allowed_cidr": "198.51.100.0/24"}, "debug_ssh_public_key"),
    ],
)  # fmt: skip
def test_invalid_variables_fail_plan_naming_the_variable(engine, inventory, overrides, variable):
    run = make_run(**overrides)
    with pytest.raises(TerraformError, match=f'"{variable}"'):
        engine.plan(run)
    assert inventory.list() == []


def test_missing_required_variable(engine):
    run = make_run()
    del run.variables["cos_bucket"]
    with pytest.raises(TerraformError, match='No value for required variable "cos_bucket"'):
        engine.plan(run)


# -- reserved IPs (checks from the provider's schema and the VPC API, docs/sandbox.md) --------------


def _reserved_ip_module(tmp_path: Path, body: str) -> TerraformRun:
    (tmp_path / "main.tf").write_text(
        'resource "ibm_is_vpc" "v" {\n  name = "r-vpc"\n}\n'
        'resource "ibm_is_subnet" "s" {\n  name = "r-subnet"\n  vpc = ibm_is_vpc.v.id\n'
        '  ipv4_cidr_block = "10.240.0.0/29"\n}\n' + body
    )
    return TerraformRun("ws-ip", tmp_path, {}, {}, lambda _l: None)


def test_reserved_ips_skip_the_addresses_ibm_keeps_and_run_out(engine, tmp_path):
    # A /29 has 8 addresses; IBM keeps the first four and the last: three are left.
    body = 'resource "ibm_is_subnet_reserved_ip" "ip" {\n  count = 3\n  subnet = ibm_is_subnet.s.id\n}\n'
    run = _reserved_ip_module(tmp_path, body)
    engine.apply(run)
    got = [e["attrs"]["address"] for e in run.state["resources"] if e["type"] == "ibm_is_subnet_reserved_ip"]
    assert got == ["10.240.0.4", "10.240.0.5", "10.240.0.6"]
    run = _reserved_ip_module(tmp_path, body.replace("count = 3", "count = 4"))
    with pytest.raises(TerraformError, match="no free address"):
        engine.apply(run)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("auto_delete = true", "auto_delete must be false"),
        ('address = "10.240.0.1"', "not available"),
        ('address = "10.9.0.4"', "not available"),
        ('name = "ibm-reserved"', "invalid reserved IP name"),
        # the provider's schema refuses this one already at plan (sandbox/ibm/provider_schema.py)
        ('name = "Bad_Name"', r'"name" \("Bad_Name"\) should match regexp'),
    ],
)
def test_reserved_ip_arguments_are_checked_like_the_vpc_api(engine, tmp_path, args, says):
    body = f'resource "ibm_is_subnet_reserved_ip" "ip" {{\n  subnet = ibm_is_subnet.s.id\n  {args}\n}}\n'
    with pytest.raises(TerraformError, match=says):
        engine.apply(_reserved_ip_module(tmp_path, body))


def test_undeclared_variable_is_a_warning(engine):
    run = make_run(not_declared="x")
    engine.plan(run)
    assert any('undeclared variable "not_declared"' in line for line in run.lines)


def test_declared_variables_match_the_architecture_contract():
    declared = declared_variables(TEMPLATE)
    assert set(declared) == {
        "run_id", "run_ttl", "region", "zone", "resource_group_id", "gpu_profile", "vm_count",
        "image_name", "cos_bucket", "cos_endpoint", "cos_prefix", "cos_instance_crn",
        "workload_bundle_key", "dataset", "epochs", "batch_size", "learning_rate", "seed",
        "cos_auth_mode", "cos_hmac_access_key_id", "cos_hmac_secret_access_key", "debug_mode",
        "debug_ssh_public_key", "debug_allowed_cidr", "cos_profile_roles", "distribution", "trials",
        "training_port", "collective_timeout_seconds", "checkpoint_every_epochs",
    }  # fmt: skip
    assert declared["cos_profile_roles"]["default"] == ["Object Writer", "Object Reader"]
    assert declared["vm_count"]["type"] == "number" and declared["vm_count"]["default"] == 1
    assert declared["debug_mode"]["type"] == "bool" and declared["debug_mode"]["default"] is False
    assert declared["gpu_profile"]["default"] == "gx3-16x80x1l4"
    assert declared["cos_auth_mode"]["default"] == "trusted_profile"
    assert declared["run_id"]["required"] and "default" not in declared["run_id"]
    assert {n for n, s in declared.items() if s["sensitive"]} == {
        "cos_hmac_access_key_id",
        "cos_hmac_secret_access_key",
    }
    assert all(s["description"] for s in declared.values())


def test_complex_variable_values_are_parsed_per_type(engine, tmp_path):
    (tmp_path / "main.tf").write_text(
        """
variable "names" {
  type = list(string)
}
variable "sizes" {
  type    = map(number)
  default = { a = 1 }
}
variable "flag" {
  type = bool
}
output "joined" {
  value = "${join(",", var.names)}:${var.sizes["b"] + 1}:${var.flag}"
}
""",
        encoding="utf-8",
    )
    run = TerraformRun(
        "ws",
        tmp_path,
        {
            "names": {"value": '["x", "y"]', "type": "list(string)", "secure": False},
            "sizes": {"value": "{ b = 41 }", "type": None, "secure": False},
            "flag": {"value": "true", "type": "bool", "secure": False},
        },
        {},
        lambda _line: None,
    )
    assert engine.apply(run)["joined"]["value"] == "x,y:42:true"


# -- unsupported constructs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('module "m" {\n  source = "./m"\n}\n', "'module' blocks are not supported"),
        ('resource "ibm_is_vpc" "v" {\n  for_each = {}\n  name = "x"\n}\n', "for_each is not supported"),
        ('resource "ibm_is_vpc" "v" {\n  name = uuid()\n}\n', "unsupported function 'uuid()'"),
        ('resource "ibm_is_vpc" "v" {\n  name = var.nope\n}\n', 'undeclared input variable "nope"'),
        ('resource "ibm_is_vpc" "v" {\n  name = ibm_is_subnet.s.id\n}\n',
         "unknown reference 'ibm_is_subnet'"),
        ('resource "ibm_is_vpc" "v" {\n  provisioner "local-exec" {\n    command = "x"\n  }\n}\n',
         "'provisioner' blocks are not supported"),
        ('resource "ibm_is_vpc" "v" {\n  name = \n}\n', "syntax error"),
        ('resource "ibm_is_vpc" "a" {\n  name = ibm_is_vpc.b.id\n}\nresource "ibm_is_vpc" "b" {\n'
         '  name = ibm_is_vpc.a.id\n}\n', "Cycle"),
    ],
)  # fmt: skip
def test_unsupported_or_invalid_configuration_is_an_error(engine, tmp_path, source, message):
    (tmp_path / "main.tf").write_text(source, encoding="utf-8")
    run = TerraformRun("ws", tmp_path, {}, {}, lambda _line: None)
    with pytest.raises(TerraformError) as info:
        engine.plan(run)
    assert message in str(info.value)
    if "syntax" not in message and "Cycle" not in message:
        assert "main.tf" in str(info.value)


# -- expressions ---------------------------------------------------------------------------------


def ev(source: str, **roots: Any) -> Any:
    scope = Scope(roots=roots, base_dir=REPO, filename="test.tf")
    return Evaluator(scope).eval(parse_expression(source, "test.tf", 1))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('formatdate("YYYYMMDD\'T\'hhmmss\'Z\'", "2026-12-01T17:03:09Z")', "20261201T170309Z"),
        ('replace("2026-12-01T17:03:00Z", "/[-:]/", "")', "20261201T170300Z"),
        ('replace("a.b.c", ".", "-")', "a-b-c"),
        ('format("%s-vm-%02d", "run", 3)', "run-vm-03"),
        ('join(",", [for i in range(3) : "x${i}"])', "x0,x1,x2"),
        ('{ for k, v in { a = 1, b = 2 } : upper(k) => v * 10 if v > 1 }', {"B": 20}),
        ('length([1, 2, 3]) == 3 && !false ? "yes" : "no"', "yes"),
        ('can(regex("^[a-z]+$", "ABC"))', False),
        ('regex("^(\\\\d+)-(\\\\d+)$", "12-34")', ["12", "34"]),
        ('contains(["a", "b"], "b")', True),
        ('split(":", "crn:v1:x:y")[2]', "x"),
        ('cidrhost("10.0.0.0/24", 5)', "10.0.0.5"),
        ('can(cidrhost("nope", 0))', False),
        ('one([])', None),
        ('try(var.missing, "fallback")', "fallback"),
        ('jsonencode({ b = [1, true], a = "x" })', '{"a":"x","b":[1,true]}'),
        ('tostring(0.001)', "0.001"),
        ('7 % 3 + 10 / 4 - -1', 4.5),
        ('"a${"b"}c $${literal} %%{x}"', "abc ${literal} %{x}"),
        ('"%{ if true ~} yes %{~ else }no%{ endif }"', "yes"),
        ('"%{ for x in ["a", "b"] }<${x}>%{ endfor }"', "<a><b>"),
        ('[{ id = 1 }, { id = 2 }][*].id', [1, 2]),
        ('substr("abcdef", 1, 3)', "bcd"),
        ('startswith("us-south-1", "us-south-")', True),
    ],
)  # fmt: skip
def test_expressions(source, expected):
    assert ev(source, var={}) == expected


def test_heredoc_and_templatefile(tmp_path):
    (tmp_path / "t.tftpl").write_text(
        "a=${a}\n%{ for x in xs ~}\n- ${x}\n%{ endfor ~}\nend\n", encoding="utf-8"
    )
    scope = Scope(roots={}, base_dir=tmp_path, filename="t.tf")
    tree = parse_expression('templatefile("t.tftpl", { a = 1, xs = ["p", "q"] })', "t.tf", 1)
    assert Evaluator(scope).eval(tree) == "a=1\n- p\n- q\nend\n"
    assert ev('<<-EOT\n    hello ${"x"}\n      indented\n    EOT\n') == "hello x\n  indented\n"


def test_expression_errors_name_the_file():
    with pytest.raises(HclError, match=r"test\.tf.*unsupported attribute 'nope'"):
        ev("var.nope", var={})
    with pytest.raises(HclError, match="invalid index"):
        ev("[1][3]")


@pytest.mark.parametrize(
    ("key", "key_type"),
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample dev@example", "ed25519"),
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== me@laptop", "rsa"),
    ],
)
def test_the_debug_key_type_follows_the_key(engine, inventory, key, key_type):
    # the VPC API assumes rsa when type is unset and refuses an ed25519 key (the sandbox too)
    extra = {"debug_mode": "true", "debug_allowed_cidr": "203.0.113.7/32", "debug_ssh_public_key": key}
    engine.apply(make_run(**extra))
    [record] = inventory.list(kind="ibm_is_ssh_key")
    assert record["attrs"]["type"] == key_type

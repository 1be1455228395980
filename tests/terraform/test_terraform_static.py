"""Static checks of terraform/: parsing, variables, tags, secrets, outputs, debug-only exposure.

python-hcl2 parses every file (through the sandbox's adapter, sandbox/terraform/hcl.py); the
sandbox engine evaluates the configuration where a property depends on values (debug_mode
false/true), so "no inbound rule and no floating IP unless debug" is proved on the evaluated
resources, not only on the text.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sandbox.faults import FaultSet
from sandbox.ibm.provider import IbmProvider
from sandbox.inventory import Inventory
from sandbox.terraform import TerraformEngine, TerraformRun, declared_variables
from sandbox.terraform.config import load_module
from sandbox.terraform.expr import Evaluator, Scope, parse_template, references
from sandbox.terraform.hcl import Body, parse_config

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
TF_FILES = sorted(TF.glob("*.tf"))

# ibm provider resource types that take `tags` (user tags); the others have none
TAGGABLE = {
    "ibm_is_vpc", "ibm_is_subnet", "ibm_is_public_gateway", "ibm_is_security_group",
    "ibm_is_instance", "ibm_is_ssh_key", "ibm_is_floating_ip", "ibm_is_volume",
    "ibm_is_network_acl", "ibm_is_virtual_network_interface",
}  # fmt: skip
# ibm_is_subnet_reserved_ip has no tags argument (provider v2.5: resource_ibm_is_subnet_reserved_ip.go)
NOT_TAGGABLE = {
    "ibm_is_security_group_rule", "ibm_iam_trusted_profile", "ibm_iam_trusted_profile_policy",
    "ibm_is_subnet_reserved_ip",
}  # fmt: skip
SECRETS = {"cos_hmac_access_key_id", "cos_hmac_secret_access_key"}


def unquote(value: Any) -> Any:
    return value[1:-1] if isinstance(value, str) and value.startswith('"') and value.endswith('"') else value


def sources(body: Body) -> dict[str, Any]:
    """A block body as written: argument -> its expression's source text; nested block -> [bodies]."""
    out: dict[str, Any] = {name: attr.source for name, attr in body.attrs.items()}
    for block in body.blocks:
        out.setdefault(block.type, []).append(sources(block.body))
    return out


def parsed(path: Path) -> Body:
    return parse_config(path.read_text(), path.name)


def blocks(kind: str) -> list[tuple[str, str, dict]]:
    """(type, name, body as written) of every resource/data block across the .tf files."""
    out = []
    for path in TF_FILES:
        for block in parsed(path).blocks:
            if block.type == kind:
                out.append((block.labels[0], block.labels[1], sources(block.body)))
    return out


def architecture_variables() -> set[str]:
    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Terraform variables", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


# -- parsing and layout --------------------------------------------------------------------------


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_file_parses_with_python_hcl2(path):
    assert parsed(path).blocks


def test_expected_files_exist_and_template_parses():
    assert {p.name for p in TF_FILES} == {"versions.tf", "variables.tf", "main.tf", "outputs.tf"}
    template = (TF / "cloud-init.yaml.tpl").read_text()
    assert parse_template(template, "cloud-init.yaml.tpl")
    load_module(TF)  # the sandbox loads it without unsupported constructs


def test_bootstrap_is_a_relative_symlink_to_the_workload_script():
    link = TF / "bootstrap.sh"
    assert link.is_symlink()
    assert os.readlink(link) == "../workload/bootstrap.sh"
    assert link.resolve() == (REPO / "workload" / "bootstrap.sh").resolve()


def test_versions_pin_terraform_and_the_ibm_provider():
    (terraform,) = [b for b in parsed(TF / "versions.tf").blocks if b.type == "terraform"]
    assert unquote(terraform.body.attrs["required_version"].source) == ">= 1.13.0"
    (providers,) = [b for b in terraform.body.blocks if b.type == "required_providers"]
    ibm = Evaluator(Scope(roots={}, base_dir=TF)).eval(providers.body.attrs["ibm"].tree)
    assert ibm == {"source": "IBM-Cloud/ibm", "version": "~> 2.5.0"}


# -- variables -----------------------------------------------------------------------------------


def test_variables_are_exactly_the_architecture_contract():
    assert set(declared_variables(TF)) == architecture_variables()


def test_every_variable_has_description_and_type_and_secrets_are_sensitive():
    declared = declared_variables(TF)
    for name, spec in declared.items():
        assert spec["description"], name
        assert spec["type_source"], name
    assert {n for n, s in declared.items() if s["sensitive"]} == SECRETS
    # every variable that can be wrong is validated (debug_mode is a bool: its type suffices)
    assert {n for n, s in declared.items() if s["validations"] == 0} == {"debug_mode"}


# -- tags and names ------------------------------------------------------------------------------


def test_every_taggable_resource_is_tagged_with_the_run_and_named_after_it():
    resources = blocks("resource")
    assert resources
    for rtype, name, body in resources:
        assert rtype in TAGGABLE | NOT_TAGGABLE, f"classify {rtype} as taggable or not"
        if rtype in TAGGABLE:
            assert body.get("tags") == "local.tags", f"{rtype}.{name} is not tagged with local.tags"
        if "name" in body:
            assert unquote(body["name"]).startswith("${var.run_id}-"), f"{rtype}.{name}"
    vm = next(body for rtype, _, body in resources if rtype == "ibm_is_instance")
    assert vm["boot_volume"][0]["tags"] == "local.tags"
    module = load_module(TF)
    assert {r[:2] for r in references(module.locals["tags"].tree)} == {
        ("var", "run_id"),
        ("local", "ttl_tag"),
    }


# -- exposure ------------------------------------------------------------------------------------


def test_inbound_rules_floating_ips_and_ssh_keys_are_counted_by_debug_mode():
    for rtype, name, body in blocks("resource"):
        rule = rtype == "ibm_is_security_group_rule"
        if rule and body.get("remote") == "ibm_is_security_group.vm.id":
            # the cluster's own traffic: multi_worker only, members of the run's group only
            assert 'var.distribution == "multi_worker"' in str(body.get("count")), name
            continue
        inbound = rule and unquote(body.get("direction")) == "inbound"
        if inbound or rtype in {"ibm_is_floating_ip", "ibm_is_ssh_key"}:
            assert "var.debug_mode" in str(body.get("count")), f"{rtype}.{name} must be debug-only"
        if rtype == "ibm_is_security_group_rule" and inbound:
            assert body["remote"] == "var.debug_allowed_cidr"
            assert (body["port_min"], body["port_max"]) == ("22", "22")


def _apply(**extra: str) -> Inventory:
    values = {
        "run_id": "static-0000abcd",
        "run_ttl": "2026-12-01T17:03:00Z",
        "cos_bucket": "bucket",
        "cos_endpoint": "https://s3.direct.us-south.cloud-object-storage.appdomain.cloud",
        "cos_prefix": "runs/dag/static-0000abcd",
        "cos_instance_crn": "crn:v1:bluemix:public:cloud-object-storage:global:a/acct:guid::",
        "workload_bundle_key": "runs/dag/static-0000abcd/bundle/workload.tar.gz",
        "vm_count": "3",
        "distribution": "multi_worker",
        **extra,
    }
    inventory = Inventory()
    engine = TerraformEngine(IbmProvider(inventory=inventory, faults=FaultSet(), resource_delay_s=0))
    run = TerraformRun("ws", TF, {k: {"value": v} for k, v in values.items()}, {}, lambda _l: None)
    engine.apply(run)
    return inventory


@pytest.mark.parametrize("debug", [False, True])
def test_evaluated_exposure_for_debug_false_and_true(debug):
    extra = (
        {"debug_mode": "true", "debug_allowed_cidr": "198.51.100.10/32",
         "debug_ssh_public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== me@laptop"}
        if debug else {"debug_mode": "false"}
    )  # fmt: skip
    inventory = _apply(**extra)
    (group,) = inventory.list(kind="ibm_is_security_group")
    all_rules = inventory.list(kind="ibm_is_security_group_rule")
    # Between the run's own servers only: TCP in and out, remote = their security group.
    cluster = sorted(
        (r["attrs"]["direction"], r["attrs"]["protocol"], r["attrs"]["port_min"], r["attrs"]["port_max"])
        for r in all_rules
        if r["attrs"]["remote"] == group["id"]
    )
    assert cluster == [("inbound", "tcp", 1, 65535), ("outbound", "tcp", 1, 65535)]
    rules = [r for r in all_rules if r["attrs"]["remote"] != group["id"]]
    inbound = [r["attrs"] for r in rules if r["attrs"]["direction"] == "inbound"]
    outbound = sorted(
        (r["attrs"]["protocol"], r["attrs"]["port_min"], r["attrs"]["port_max"], r["attrs"]["remote"])
        for r in rules
        if r["attrs"]["direction"] == "outbound"
    )
    assert outbound == [
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("udp", 53, 53, "161.26.0.0/16"),
    ]
    fips = inventory.list(kind="ibm_is_floating_ip")
    keys = inventory.list(kind="ibm_is_ssh_key")
    if debug:
        assert [(r["protocol"], r["port_min"], r["port_max"], r["remote"]) for r in inbound] == [
            ("tcp", 22, 22, "198.51.100.10/32")
        ]
        assert (len(fips), len(keys)) == (3, 1)
    else:
        assert (inbound, fips, keys) == ([], [], [])
    # every tagged record carries the run's tags
    for record in inventory.list():
        if record["kind"] in TAGGABLE | {"boot_volume"}:
            assert record["tags"] == ["airflow-run:static-0000abcd", "ttl:20261201T170300Z"], record


def test_instances_use_https_metadata_trusted_profile_and_auto_delete():
    for vm in _apply().list(kind="ibm_is_instance"):
        attrs = vm["attrs"]
        assert attrs["metadata_service"][0]["enabled"] is True
        assert attrs["metadata_service"][0]["protocol"] == "https"
        assert attrs["boot_volume"][0]["auto_delete_volume"] is True
        assert attrs["default_trusted_profile_auto_link"] is True
        assert attrs["trusted_profile_id"].startswith("Profile-")
        assert len(attrs["user_data"].encode()) < 64 * 1024  # IBM VPC user_data limit


def _run_env(vm: dict) -> dict[str, str]:
    lines = vm["attrs"]["user_data"].split("content: |", 1)[1].split("  - path:", 1)[0]
    return dict(line.strip().split("=", 1) for line in lines.strip().splitlines())


def test_every_server_has_a_reserved_ip_and_knows_the_whole_cluster_before_boot():
    inventory = _apply()
    reserved = {r["attrs"]["reserved_ip"]: r for r in inventory.list(kind="ibm_is_subnet_reserved_ip")}
    assert len(reserved) == 3
    vms = sorted(inventory.list(kind="ibm_is_instance"), key=lambda r: r["name"])
    addresses = [vm["attrs"]["primary_ip"] for vm in vms]
    for vm in vms:
        ip = vm["attrs"]["primary_network_interface"][0]["primary_ip"][0]
        assert reserved[ip["reserved_ip"]]["attrs"]["address"] == ip["address"]
        env = _run_env(vm)
        assert env["CLUSTER_HOSTS"] == ",".join(addresses)  # every server, in index order
        assert (env["DISTRIBUTION"], env["TRAINING_PORT"]) == ("multi_worker", "23456")
    assert len(set(addresses)) == 3


def test_a_sweep_gives_each_server_its_own_trial_and_no_cluster_rule():
    trials = (
        '[{"learning_rate": 0.1, "batch_size": 16, "seed": 1},'
        ' {"learning_rate": 0.01, "batch_size": 32, "seed": 2}]'
    )
    inventory = _apply(vm_count="2", distribution="sweep", trials=trials)
    vms = sorted(inventory.list(kind="ibm_is_instance"), key=lambda r: r["name"])
    got = [(e["LEARNING_RATE"], e["BATCH_SIZE"], e["SEED"]) for e in map(_run_env, vms)]
    assert got == [("0.1", "16", "1"), ("0.01", "32", "2")]
    (group,) = inventory.list(kind="ibm_is_security_group")
    assert not [
        r for r in inventory.list(kind="ibm_is_security_group_rule") if r["attrs"]["remote"] == group["id"]
    ]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"vm_count": "1", "distribution": "multi_worker"}, "distribution"),
        ({"vm_count": "3", "distribution": "sweep",
          "trials": '[{"learning_rate": 0.1, "batch_size": 16, "seed": 1}]'}, "trials"),
        ({"training_port": "80"}, "training_port"),
    ],
)  # fmt: skip
def test_distribution_variables_are_validated(extra, named):
    from sandbox.terraform import TerraformError

    with pytest.raises(TerraformError, match=f'variable "{named}"'):
        _apply(**extra)


def test_trusted_profile_policy_is_least_privilege_on_the_run_prefix():
    inventory = _apply()
    (policy,) = inventory.list(kind="ibm_iam_trusted_profile_policy")
    (profile,) = inventory.list(kind="ibm_iam_trusted_profile")
    # what the workload does (upload; download the bundle, HEAD a marker) and nothing more
    assert sorted(policy["attrs"]["roles"]) == ["Object Reader", "Object Writer"]
    # iam_id, not the deprecated profile_id (provider v2.5.0 schema)
    assert policy["attrs"]["iam_id"] == f"iam-{profile['id']}" and "profile_id" not in policy["attrs"]
    assert policy["attrs"]["rule_conditions"] == [
        {
            "key": "{{resource.attributes.path}}",
            "operator": "stringMatch",
            "value": ["runs/dag/static-0000abcd/*"],
        }
    ]
    assert policy["attrs"]["pattern"] == "attribute-based-condition:resource:literal-and-wildcard"
    assert policy["attrs"]["resources"] == [
        {
            "service": "cloud-object-storage",
            "resource_instance_id": "guid",
            "resource_type": "bucket",
            "resource": "bucket",
        }
    ]


DATASET_KEY = "datasets/team-a/digits.npz"


@pytest.mark.parametrize(
    ("dataset", "key"),
    [("digits", None), ("mnist", None), ("cifar10", None), (f"cos://{DATASET_KEY}", DATASET_KEY)],
)
def test_a_cos_dataset_gets_a_read_only_policy_on_exactly_its_key(dataset, key):
    from sandbox.ibm.cos_access import classify, policies_from_terraform

    inventory = _apply(dataset=dataset)
    policies = inventory.list(kind="ibm_iam_trusted_profile_policy")
    dataset_policies = [p for p in policies if "read its dataset" in p["attrs"]["description"]]
    if key is None:  # a built-in dataset reads nothing from COS
        assert len(policies) == 1 and dataset_policies == []
        return
    (policy,) = dataset_policies
    (profile,) = inventory.list(kind="ibm_iam_trusted_profile")
    assert policy["attrs"]["iam_id"] == f"iam-{profile['id']}"
    assert policy["attrs"]["roles"] == ["Object Reader"]
    assert policy["attrs"]["rule_conditions"] == [
        {"key": "{{resource.attributes.path}}", "operator": "stringMatch", "value": [key]}
    ]
    assert policy["attrs"]["pattern"] == "attribute-based-condition:resource:literal-and-wildcard"
    assert policy["attrs"]["resources"] == [
        {
            "service": "cloud-object-storage",
            "resource_instance_id": "guid",
            "resource_type": "bucket",
            "resource": "bucket",
        }
    ]
    # the servers boot only once both policies exist (they read the dataset at start)
    created = [e["kind"] for e in inventory.events() if e["event"] == "created"]
    assert len([k for k in created[: created.index("ibm_is_instance")] if k.endswith("_policy")]) == 2

    # What the sandbox's IAM (IBM's role->action table and path conditions) lets the servers do now
    granted = policies_from_terraform(policies)

    def allowed(method: str, path: str, query: str = "") -> bool:
        request = classify(method, path, query, {})
        return any(p.grants(request, "guid") for p in granted)

    assert allowed("GET", f"/bucket/{key}") and allowed("HEAD", f"/bucket/{key}")
    assert not allowed("PUT", f"/bucket/{key}") and not allowed("DELETE", f"/bucket/{key}")
    assert not allowed("POST", f"/bucket/{key}", "uploads")  # multipart upload
    assert not allowed("GET", f"/bucket/{key}.bak")
    assert not allowed("GET", "/bucket/datasets/team-a/other.npz")
    assert not allowed("GET", f"/other-bucket/{key}")
    assert not allowed("GET", "/bucket", "prefix=datasets/")  # no listing
    # the run's own prefix keeps exactly what it had
    assert allowed("PUT", "/bucket/runs/dag/static-0000abcd/vm-0/model.keras")
    assert not allowed("PUT", "/bucket/runs/dag/other-run/vm-0/model.keras")


@pytest.mark.parametrize("dataset", ["cos:///datasets/digits.npz", "cos://datasets/*.npz", "cos://a?.npz"])
def test_a_dataset_key_must_be_an_exact_key(dataset):
    from sandbox.terraform import TerraformError

    with pytest.raises(TerraformError, match='variable "dataset"'):
        _apply(dataset=dataset)


def test_outputs_expose_no_secret():
    module = load_module(TF)
    forbidden_vars = SECRETS | {"debug_ssh_public_key"}
    for name, output in module.outputs.items():
        assert not output.sensitive, f"output {name} should not need to be sensitive"
        refs = references(output.value.tree)
        assert not {r[1] for r in refs if r[0] == "var" and len(r) > 1} & forbidden_vars, name
        flat = {".".join(r) for r in refs}
        assert not any(word in ref for ref in flat for word in ("user_data", "public_key", "hmac")), name
    for block in parsed(TF / "outputs.tf").blocks:
        name, body = block.labels[0], sources(block.body)
        assert not any(word in body["value"] for word in ("user_data", "public_key", "hmac")), name
        assert "sensitive" not in body, name


def test_cloud_init_template_writes_exactly_the_contract_keys():
    text = (TF / "cloud-init.yaml.tpl").read_text()
    keys = re.findall(r"^\s+([A-Z_]+)=\$\{", text, flags=re.M)
    assert keys == [
        "RUN_ID", "RUN_DEADLINE", "INSTANCE_INDEX", "INSTANCE_COUNT", "COS_ENDPOINT", "COS_BUCKET",
        "COS_OUTPUT_PREFIX", "WORKLOAD_BUNDLE_KEY", "COS_AUTH", "TRUSTED_PROFILE_ID", "DATASET", "EPOCHS",
        "BATCH_SIZE", "LEARNING_RATE", "SEED", "CHECKPOINT_EVERY_EPOCHS", "DISTRIBUTION", "CLUSTER_HOSTS",
        "TRAINING_PORT", "COLLECTIVE_TIMEOUT_S", "EXPECTED_GPU_COUNT", "NVSWITCH", "COS_HMAC_ACCESS_KEY_ID",
        "COS_HMAC_SECRET_ACCESS_KEY",
    ]  # fmt: skip
    assert 'if cos_auth == "hmac"' in text


# -- checkov -------------------------------------------------------------------------------------


def test_checkov_skips_carry_a_reason():
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#\s*checkov:skip=CKV2?_[A-Z0-9_]+:\S.+", line), f"{path.name}: {line}"


CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov lives in .venv-checkov (make lint creates it)")
def test_checkov_reports_no_failed_check():
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--compact", "-d", str(TF), "--framework", "terraform",
         "--output", "cli"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout, result.stdout

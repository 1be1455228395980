"""The run plan: names, keys, Terraform variables and parameter checks, before anything exists."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpu_pipeline.params import PARAMS
from gpu_pipeline.run_plan import InvalidRunParameters, build_run_plan, check_params, secure_variable_refs

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def defaults(**overrides):
    params = {name: param.value for name, param in PARAMS.items()}
    params.update(overrides)
    return params


def plan_for(run_id="manual__2026-12-01T12:00:00+00:00", **overrides):
    return build_run_plan(
        defaults(**overrides),
        dag_id="ibm_gpu_workload",
        run_id=run_id,
        now=NOW,
        cos_endpoint="https://s3.direct.us-south.cloud-object-storage.appdomain.cloud",
        cos_instance_crn="crn:v1:bluemix:public:cloud-object-storage:global:a/abc:def::",
    )


def test_terraform_variables_match_variables_tf_exactly():
    # The contract between the DAG and terraform/variables.tf: the same names on both sides.
    from sandbox.terraform import declared_variables

    declared = set(declared_variables(REPO / "terraform"))
    passed = set(plan_for()["terraform_variables"]) | set(secure_variable_refs("hmac", "ibm_cos_default"))
    assert passed == declared


def test_checkpoint_parameters_reach_the_servers_and_the_plan():
    default = plan_for()
    assert default["terraform_variables"]["checkpoint_every_epochs"] == 1  # on by default
    assert default["keep_checkpoints"] is False  # deleted once the results are final
    plan = plan_for(checkpoint_every_epochs=0, keep_checkpoints=True)
    assert plan["terraform_variables"]["checkpoint_every_epochs"] == 0
    assert plan["keep_checkpoints"] is True
    # A conf from before these parameters existed (a cleared old run) keeps the defaults.
    params = defaults()
    del params["checkpoint_every_epochs"], params["keep_checkpoints"]
    old = build_run_plan(
        params,
        dag_id="ibm_gpu_workload",
        run_id="manual__old",
        now=NOW,
        cos_endpoint="https://s3.example",
        cos_instance_crn="crn:v1:bluemix:public:cloud-object-storage:global:a/abc:def::",
    )
    assert (old["terraform_variables"]["checkpoint_every_epochs"], old["keep_checkpoints"]) == (1, False)


def test_secure_variables_are_exactly_the_sensitive_ones():
    from sandbox.terraform import declared_variables

    sensitive = {n for n, spec in declared_variables(REPO / "terraform").items() if spec.get("sensitive")}
    assert set(secure_variable_refs("hmac", "c")) == sensitive
    assert not sensitive & set(plan_for()["terraform_variables"])


def test_names_keys_and_tags_derive_from_the_run():
    plan = plan_for(vm_count=3)
    assert plan["workspace_name"] == f"airflow-{plan['slug']}"
    assert plan["prefix"] == f"gpu-runs/ibm_gpu_workload/{plan['slug']}/"
    assert plan["server_prefixes"] == [f"{plan['prefix']}vm-{i}/" for i in range(3)]
    assert plan["bundle_key"].startswith(plan["prefix"])
    assert plan["deadline"] == "2026-12-01T14:00:00Z"  # default max_runtime_minutes = 120
    assert f"airflow-run:{plan['slug']}" in plan["tags"]
    assert plan["terraform_variables"]["run_ttl"] == plan["deadline"]


def test_markers_and_variables_follow_the_distribution():
    single = plan_for()
    assert (single["distribution"], single["terraform_variables"]["distribution"]) == ("single", "single")
    assert single["marker_keys"] == [f"{single['prefix']}vm-0/_SUCCESS"]

    # auto with several servers: one training over all of them, one model and one marker (the chief's),
    # but every server's folder is watched (its _FAILED, its progress).
    multi = plan_for(vm_count=3)
    assert multi["distribution"] == "multi_worker" and multi["terraform_variables"]["trials"] == []
    assert multi["marker_keys"] == [f"{multi['prefix']}vm-0/_SUCCESS"]
    assert len(multi["server_prefixes"]) == 3
    assert multi["terraform_variables"]["collective_timeout_seconds"] == 300

    sweep = plan_for(
        vm_count=4,
        distribution="sweep",
        sweep={"learning_rate": [0.01, 0.001], "seed": [1, 2]},
        batch_size=32,
    )
    assert sweep["marker_keys"] == [f"{sweep['prefix']}vm-{i}/_SUCCESS" for i in range(4)]
    assert sweep["trials"] == [
        {"learning_rate": 0.01, "batch_size": 32, "seed": 1},
        {"learning_rate": 0.01, "batch_size": 32, "seed": 2},
        {"learning_rate": 0.001, "batch_size": 32, "seed": 1},
        {"learning_rate": 0.001, "batch_size": 32, "seed": 2},
    ]
    assert sweep["terraform_variables"]["trials"] == sweep["trials"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"vm_count": 2, "distribution": "sweep", "sweep": {"learning_rate": [0.1, 0.01, 0.001]}},
         "the grid has 3 combination(s) (3 learning_rate x 1 batch_size x 1 seed) but vm_count is 2"),
        ({"vm_count": 1, "distribution": "sweep", "sweep": {"learning_rate": [0.1]}}, "vm_count 2 or more"),
        ({"vm_count": 1, "distribution": "multi_worker"}, "multi_worker needs vm_count 2"),
        ({"vm_count": 2, "distribution": "sweep"}, "needs a grid"),
        ({"vm_count": 2, "sweep": {"seed": [1, 2]}}, "set distribution 'sweep'"),
        ({"vm_count": 2, "distribution": "sweep", "sweep": {"seed": [1, 1]}}, "lists 1 twice"),
    ],
)  # fmt: skip
def test_distribution_problems_say_what_to_fix(overrides, says):
    with pytest.raises(InvalidRunParameters) as err:
        check_params(defaults(**overrides))
    assert says in str(err.value)


def test_two_runs_never_share_names_or_prefixes():
    a = plan_for(run_id="scheduled__2026-12-07T12:00:00+00:00")
    b = plan_for(run_id="scheduled__2026-12-07T12:00:00+00:00x")
    for field in ("slug", "prefix", "workspace_name"):
        assert a[field] != b[field], field


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"zone": "eu-de-1"}, "zone"),
        ({"existing_workspace_id": "eu-de.workspace.x.1234abcd"}, "existing_workspace_id"),
        ({"debug_mode": True}, "debug_ssh_public_key"),
        (
            {
                "debug_mode": True,
                "debug_ssh_public_key": "ssh-ed25519 AAAA",
                "debug_allowed_cidr": "0.0.0.0/0",
            },
            "debug_allowed_cidr",
        ),
        ({"output_prefix": "a/../b"}, "output_prefix"),
    ],
)
def test_cross_field_problems_name_the_parameter(overrides, named):
    with pytest.raises(InvalidRunParameters) as err:
        check_params(defaults(**overrides))
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("profile", "region", "zone", "fix"),
    [
        # no H200 in Dallas at all (IBM's region list): the message names the regions that have it
        ("gx3d-160x1792x8h200", "us-south", "us-south-1", "region(s) au-syd, ca-tor, eu-de, eu-gb"),
        # no A100 in Dallas at all: the message names the regions that have it
        ("gx3d-24x120x1a100p", "us-south", "us-south-1", "region(s) eu-de, eu-gb, jp-tok, us-east"),
    ],
)
def test_a_profile_the_zone_does_not_offer_is_refused_naming_what_to_use(profile, region, zone, fix):
    with pytest.raises(InvalidRunParameters) as err:
        check_params(defaults(gpu_profile=profile, region=region, zone=zone))
    message = str(err.value)
    assert message.startswith(f"gpu_profile: '{profile}' is not offered in zone '{zone}'")
    assert fix in message
    assert "gx3-16x80x1l4" in message  # what the zone does offer


def test_a_zone_only_an_accounts_mapping_can_settle_warns_instead(caplog):
    """H200 is in us-east (IBM lists universal zones); whether us-east-1 is one depends on the account."""
    from gpu_pipeline.gpu_profiles import placement_warnings

    check_params(defaults(gpu_profile="gx3d-160x1792x8h200", region="us-east", zone="us-east-1"))
    [warning] = placement_warnings("gx3d-160x1792x8h200", "us-east", "us-east-1")
    assert warning.startswith("gpu_profile: 'gx3d-160x1792x8h200' may not be offered in zone 'us-east-1'")
    assert "us-east-wdc06-a" in warning and "vsi-profile-details-accelerated.md" in warning
    assert "make preflight" in warning
    [v100] = placement_warnings("gx2-8x64x1v100", "us-south", "us-south-9")
    assert "IBM publishes no zone list for V100" in v100
    assert placement_warnings("gx3d-160x1792x8h200", "us-east", "us-east-2") == []


def test_the_valid_twins_pass():
    check_params(defaults(gpu_profile="gx3d-160x1792x8h200", region="us-east", zone="us-east-2"))
    check_params(defaults(gpu_profile="gx3d-24x120x1a100p", region="eu-de", zone="eu-de-1"))


def test_params_validate_and_terraform_share_one_profile_table_that_says_what_ibm_says():
    from gpu_pipeline import gpu_profiles

    from sandbox.ibm.vpc_catalog import GPU_PROFILES as IBM_PROFILES

    assert gpu_profiles.AS_OF and gpu_profiles.SOURCES
    assert list(PARAMS["gpu_profile"].schema["enum"]) == list(gpu_profiles.PROFILES)
    assert PARAMS["gpu_profile"].value == gpu_profiles.profile_names()[0]
    # the sandbox keeps IBM's table on its own: the project's must say what IBM's says
    keys = ("gpu", "gpu_count", "vcpu", "memory_gib", "zones")
    assert {n: [p[k] for k in keys] for n, p in gpu_profiles.PROFILES.items()} == {
        n: [p[k] for k in keys] for n, p in IBM_PROFILES.items()
    }
    # Terraform reads the same table as JSON; regenerate it with the command in the message
    assert gpu_profiles.TERRAFORM_COPY.read_text() == gpu_profiles.terraform_json(), (
        "terraform/gpu_profiles.json is stale: run .venv/bin/python plugins/gpu_pipeline/gpu_profiles.py"
    )
    variables = (REPO / "terraform" / "variables.tf").read_text()
    assert "gx3-16x80x1l4" not in variables.split('variable "gpu_profile"')[1].split("validation")[1]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("vm_count", 0),
        ("vm_count", 9),
        ("gpu_profile", "gp2-24x224x2"),
        ("region", "mars-north"),
        ("bucket", "Bad_Bucket"),
        ("dataset", "http://example.com/x.npz"),
        ("dataset", "cos:///datasets/x.npz"),  # the key is an IAM policy's exact path
        ("keep_on_failure_minutes", 10_000),
        ("epochs", 0),
        ("learning_rate", 0),
        ("distribution", "ring"),
        ("sweep", {"momentum": [0.9]}),
        ("sweep", {"learning_rate": []}),
        ("sweep", {"learning_rate": [2.0]}),
        ("collective_timeout_seconds", 5),
        ("checkpoint_every_epochs", -1),
        ("checkpoint_every_epochs", 1.5),
        ("keep_checkpoints", "yes"),
    ],
)
def test_json_schema_rejects_bad_values(name, bad):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    param = copy.copy(PARAMS[name])
    assert param.resolve(PARAMS[name].value) == PARAMS[name].value  # the default passes
    with pytest.raises(ParamValidationError):
        param.resolve(bad)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_schemas_are_checked_against_the_cheap_draft_07_metaschema(name):
    # Airflow checks every schema against its metaschema at each parse; 2020-12's costs three
    # times as much. The draft must still be one jsonschema knows, or validation would change.
    from jsonschema import Draft7Validator
    from jsonschema.validators import validator_for

    assert validator_for(PARAMS[name].schema) is Draft7Validator
    Draft7Validator.check_schema(PARAMS[name].schema)


def _form_requires(param) -> bool:
    """Airflow 3.3's trigger form: a field whose type does not allow null is required."""
    kind = param.schema.get("type")
    return not (isinstance(kind, list) and "null" in kind)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_the_trigger_form_can_be_submitted_with_the_defaults(name):
    # The form disables its Trigger button while a required field is empty (None or ""); an
    # optional text field must be null-able instead. The browser test checks the same in Chromium.
    param = PARAMS[name]
    if param.value in (None, ""):
        assert not _form_requires(param), f"{name}: empty default on a required field blocks the form"
    assert param.schema.get("title"), name
    assert param.description, f"{name}: the form shows no help for it"


@pytest.mark.parametrize("name", ["existing_workspace_id", "debug_ssh_public_key", "debug_allowed_cidr"])
def test_optional_text_params_accept_null_and_empty_alike(name):
    import copy

    param = copy.copy(PARAMS[name])
    assert param.resolve(None) is None and param.resolve("") == ""
    as_null, as_empty = plan_for(**{name: None}), plan_for(**{name: ""})
    assert as_null["terraform_variables"] == as_empty["terraform_variables"]
    for value in ("debug_ssh_public_key", "debug_allowed_cidr"):
        assert as_null["terraform_variables"][value] == ""  # Terraform gets a string, never null


def test_debug_mode_without_key_or_cidr_is_refused_whether_null_or_empty():
    for empty in (None, ""):
        with pytest.raises(InvalidRunParameters) as err:
            check_params(defaults(debug_mode=True, debug_ssh_public_key=empty, debug_allowed_cidr=empty))
        assert "debug_ssh_public_key" in str(err.value) and "debug_allowed_cidr" in str(err.value)


def test_the_plan_is_typed_for_the_operators_and_survives_xcom():
    import json

    plan = plan_for(
        progress_stall_minutes=2,
        max_runtime_minutes=15,
        existing_workspace_id="us-south.workspace.shared",
        plan_only=True,
    )
    assert plan["stall_timeout_s"] == 120 and plan["max_runtime_s"] == 900
    assert plan["keep_workspace"] is True and plan["plan_only"] is True
    assert plan["existing_workspace_id"] == "us-south.workspace.shared" and plan["region"] == "us-south"
    assert plan_for()["keep_workspace"] is False and plan_for()["existing_workspace_id"] is None
    assert json.loads(json.dumps(plan)) == plan  # XCom stores JSON


def test_the_plan_names_what_the_training_reads_and_writes():
    params = {name: param.value for name, param in PARAMS.items()}
    params.update(dataset="cos://datasets/digits.npz", vm_count=2, distribution="sweep")
    params["sweep"] = {"learning_rate": [0.01, 0.001]}
    plan = build_run_plan(
        params, dag_id="d", run_id="r", now=datetime.now(UTC), cos_endpoint="", cos_instance_crn=""
    )
    prefix = plan["prefix"]
    assert plan["lineage_inputs"] == [f"{prefix}bundle/workload.tar.gz", "datasets/digits.npz"]
    assert plan["lineage_outputs"] == [
        f"{prefix}vm-{i}/{name}" for i in (0, 1) for name in ("model.keras", "metrics.json")
    ]

    params.update(dataset="digits", vm_count=2, distribution="multi_worker", sweep=None)
    plan = build_run_plan(
        params, dag_id="d", run_id="r", now=datetime.now(UTC), cos_endpoint="", cos_instance_crn=""
    )
    assert plan["lineage_inputs"] == [f"{prefix}bundle/workload.tar.gz"]  # a built-in data set
    assert plan["lineage_outputs"] == [f"{prefix}vm-0/model.keras", f"{prefix}vm-0/metrics.json"]


def test_a_run_may_use_every_region_the_provider_offers():
    from gpu_pipeline.params import REGIONS

    from ibm_cloud_airflow.get_provider_info import REGIONS as PROVIDER_REGIONS

    assert set(REGIONS) == set(PROVIDER_REGIONS)

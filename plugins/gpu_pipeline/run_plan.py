"""Everything one DAG run will create and where it will write, derived from its parameters.

``RunPlan`` is computed once by the ``validate`` task (no network, no cloud call) and travels to the
other tasks through XCom, as the typed dictionary it is: the provider's operators and sensor take
the fields they need from it (``ibm_cloud_airflow.utils.plan``). It holds no secret: HMAC keys, when
used, are resolved from the COS connection by the workspace operator at run time.
"""

from __future__ import annotations

import ipaddress
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from gpu_pipeline.gpu_profiles import placement_problems
from gpu_pipeline.naming import run_tags, workspace_name
from gpu_pipeline.params import optional_text
from ibm_cloud_airflow.utils.plan import CosWaitPlan, WorkspacePlan
from ibm_cloud_airflow.utils.run_identity import run_description, run_prefix, run_slug

BUNDLE_NAME = "bundle/workload.tar.gz"
# What each server that writes a marker leaves beside it (workload/train.py: MODEL, METRICS): the
# run's lineage outputs, with the dataset (when in COS) and the bundle its inputs.
RESULT_NAMES = ("model.keras", "metrics.json")
COS_DATASET = "cos://"
# TensorFlow's gRPC port on each server (multi_worker); the security group opens it to the run only.
TRAINING_PORT = 23456


class InvalidRunParameters(ValueError):
    """Raised with one line per problem, each naming the parameter to fix."""


def check_params(params: dict[str, Any]) -> None:
    """Cross-field checks that JSON schema cannot express; raise with every problem at once."""
    problems: list[str] = []
    region, zone = params["region"], params["zone"]
    if not zone.startswith(f"{region}-"):
        problems.append(f"zone: '{zone}' is not in region '{region}'; use e.g. '{region}-1'.")
    else:
        problems.extend(placement_problems(params["gpu_profile"], region, zone))
    existing = optional_text(params, "existing_workspace_id")
    if existing and not existing.startswith(f"{region}."):
        problems.append(
            f"existing_workspace_id: '{existing}' belongs to another region than '{region}'; "
            "Schematics workspaces are regional."
        )
    if ".." in params["dataset"] or ".." in params["output_prefix"]:
        problems.append("dataset/output_prefix: '..' is not allowed in object keys.")
    if params.get("debug_mode"):
        if not optional_text(params, "debug_ssh_public_key"):
            problems.append("debug_ssh_public_key: debug mode needs an SSH public key.")
        cidr = optional_text(params, "debug_allowed_cidr")
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(f"debug_allowed_cidr: '{cidr}' is not a CIDR such as 203.0.113.7/32.")
        else:
            if network.prefixlen < 16:
                problems.append(
                    f"debug_allowed_cidr: '{cidr}' is too wide; SSH may be opened to at most a /16."
                )
    problems.extend(_distribution_problems(params))
    if problems:
        raise InvalidRunParameters("\n".join(problems))


SWEEP_KEYS = ("learning_rate", "batch_size", "seed")


def resolve_distribution(params: dict[str, Any]) -> str:
    """``single``, ``multi_worker`` or ``sweep``: what ``auto`` means for this vm_count."""
    chosen = params.get("distribution") or "auto"
    if chosen == "auto":
        return "single" if params["vm_count"] == 1 else "multi_worker"
    return chosen


def sweep_trials(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the sweep grid, in a fixed order (server i trains trial i)."""
    grid = params.get("sweep") or {}
    values = [list(grid.get(key) or [params[key]]) for key in SWEEP_KEYS]
    return [dict(zip(SWEEP_KEYS, combo, strict=True)) for combo in itertools.product(*values)]


def _distribution_problems(params: dict[str, Any]) -> list[str]:
    distribution, vm_count = resolve_distribution(params), params["vm_count"]
    grid = params.get("sweep") or {}
    if distribution == "multi_worker" and vm_count < 2:
        return [
            "distribution: multi_worker needs vm_count 2 or more; one server trains alone "
            "(leave distribution 'auto')."
        ]
    if distribution != "sweep":
        if grid:
            return [
                f"sweep: a grid is given but distribution is '{params.get('distribution') or 'auto'}'; "
                "set distribution 'sweep', or remove the grid."
            ]
        return []
    if vm_count < 2:
        return ["distribution: a sweep needs vm_count 2 or more (one server per combination)."]
    if not grid:
        return [
            "sweep: distribution 'sweep' needs a grid, e.g. "
            '{"learning_rate": [0.01, 0.001]} with vm_count 2.'
        ]
    problems = [
        f"sweep: '{key}' lists {value} twice; each combination must differ."
        for key, values in grid.items()
        for value in sorted({v for v in values if values.count(v) > 1})
    ]
    sizes = " x ".join(f"{len(grid.get(k) or [params[k]])} {k}" for k in SWEEP_KEYS)
    combinations = len(sweep_trials(params))
    if combinations != vm_count:
        problems.append(
            f"sweep: the grid has {combinations} combination(s) ({sizes}) but vm_count is {vm_count}; "
            f"each server trains one combination, so give exactly {vm_count} or set vm_count to "
            f"{combinations}."
        )
    return problems


class RunPlan(WorkspacePlan, CosWaitPlan, total=False):
    """The run plan: the provider's workspace and wait fields, and the pipeline's own."""

    dag_id: str
    run_id: str
    slug: str
    prefix: str
    bundle_key: str
    report_key: str
    #: RFC 3339, UTC: when the servers' run TTL ends (the reaper's tag)
    deadline: str
    #: single | multi_worker | sweep; the sweep's trials, server i trains trial i
    distribution: str
    trials: list[dict[str, Any]]
    keep_on_failure_minutes: int
    #: where the servers may go, in order ({"zone", "gpu_profile"}); the first is in the variables
    placements: list[dict[str, str]]
    placement_timeout_minutes: int
    #: how many times the wait may replace lost servers
    max_recoveries: int
    #: keep <server>checkpoints/ once the run's results are final (gpu_pipeline.checkpoints)
    keep_checkpoints: bool


def build_run_plan(
    params: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    now: datetime,
    cos_endpoint: str,
    cos_instance_crn: str,
    resource_group_id: str = "",
) -> RunPlan:
    """The run's names, keys, deadline and Terraform variables (see docs/architecture.md)."""
    check_params(params)
    slug = run_slug(dag_id, run_id)
    prefix = run_prefix(params["output_prefix"], dag_id, slug)
    deadline_dt = now.astimezone(UTC) + timedelta(minutes=params["max_runtime_minutes"])
    deadline = deadline_dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    bundle_key = f"{prefix}{BUNDLE_NAME}"
    distribution = resolve_distribution(params)
    trials = sweep_trials(params) if distribution == "sweep" else []
    servers = [f"{prefix}vm-{i}/" for i in range(params["vm_count"])]
    # multi_worker: one model, one marker, from the chief (server 0); otherwise one per server
    markers = (
        [f"{servers[0]}_SUCCESS"] if distribution == "multi_worker" else [f"{s}_SUCCESS" for s in servers]
    )
    variables = {
        "run_id": slug,
        "run_ttl": deadline,
        "region": params["region"],
        "zone": params["zone"],
        "resource_group_id": resource_group_id,
        "gpu_profile": params["gpu_profile"],
        "vm_count": params["vm_count"],
        "image_name": params["image"],
        "cos_bucket": params["bucket"],
        "cos_endpoint": cos_endpoint,
        "cos_prefix": prefix.rstrip("/"),
        "cos_instance_crn": cos_instance_crn,
        "workload_bundle_key": bundle_key,
        "dataset": params["dataset"],
        "epochs": params["epochs"],
        "batch_size": params["batch_size"],
        "learning_rate": params["learning_rate"],
        "seed": params["seed"],
        # the workload saves a checkpoint every N epochs and resumes from the latest (0: never)
        "checkpoint_every_epochs": params.get("checkpoint_every_epochs", 1),
        "cos_auth_mode": params["cos_auth_mode"],
        "debug_mode": params["debug_mode"],
        # Terraform's variables are strings: an empty form field (None) becomes "".
        "debug_ssh_public_key": optional_text(params, "debug_ssh_public_key"),
        "debug_allowed_cidr": optional_text(params, "debug_allowed_cidr"),
        "distribution": distribution,
        "trials": trials,
        "training_port": TRAINING_PORT,
        "collective_timeout_seconds": params.get("collective_timeout_seconds", 300),
        "cos_profile_roles": params["cos_profile_roles"],
    }
    existing = optional_text(params, "existing_workspace_id") or None
    return RunPlan(
        dag_id=dag_id,
        run_id=run_id,
        slug=slug,
        workspace_name=workspace_name(slug),
        workspace_description=run_description(dag_id, run_id),
        region=params["region"],
        existing_workspace_id=existing,
        # an adopted workspace is kept: only the run's lease on it is released
        keep_workspace=existing is not None,
        plan_only=bool(params["plan_only"]),
        bucket=params["bucket"],
        prefix=prefix,
        bundle_key=bundle_key,
        marker_keys=markers,
        server_prefixes=servers,
        lineage_inputs=[bundle_key, *cos_dataset_keys(params["dataset"])],
        lineage_outputs=[f"{marker.rsplit('/', 1)[0]}/{name}" for marker in markers for name in RESULT_NAMES],
        report_key=f"{prefix}run-report.json",
        deadline=deadline,
        tags=run_tags(slug, deadline_dt),
        terraform_variables=variables,
        distribution=distribution,
        trials=trials,
        stall_timeout_s=params["progress_stall_minutes"] * 60,
        max_runtime_s=params["max_runtime_minutes"] * 60,
        keep_on_failure_minutes=params["keep_on_failure_minutes"],
        max_recoveries=params.get("max_recoveries", 0),
        keep_checkpoints=bool(params.get("keep_checkpoints", False)),
    )


def cos_dataset_keys(dataset: str) -> list[str]:
    """The dataset's key in the run's bucket (``cos://<key>``), or none (a built-in data set)."""
    return [dataset.removeprefix(COS_DATASET)] if dataset.startswith(COS_DATASET) else []


# Terraform variables that hold secrets: never in the plan above, always `secure` in Schematics,
# resolved by the workspace operator from the COS connection at run time (hmac mode only).
SECURE_VARIABLES_BY_MODE = {
    "hmac": {
        "cos_hmac_access_key_id": "{conn}:login",
        "cos_hmac_secret_access_key": "{conn}:password",
    },
    "trusted_profile": {"cos_hmac_access_key_id": "", "cos_hmac_secret_access_key": ""},
}


def secure_variable_refs(cos_auth_mode: str, cos_conn_id: str) -> dict[str, str]:
    """Connection references for the secure variables (see SchematicsCreateWorkspaceOperator)."""
    return {
        name: ref.format(conn=cos_conn_id) for name, ref in SECURE_VARIABLES_BY_MODE[cos_auth_mode].items()
    }

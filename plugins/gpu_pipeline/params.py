"""The DAG's run parameters: JSON-schema validated, and shown as the trigger form in the UI."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from gpu_pipeline.cost import PRICES_FILE, price_table, profile_price
from gpu_pipeline.gpu_profiles import profile_names

# Regions where both Schematics and VPC GPU profiles are offered (reference: Schematics locations).
REGIONS = ("us-south", "us-east", "eu-de", "eu-gb", "ca-tor", "ca-mon")

# Current x86 VPC GPU profiles, from the project's one dated table (gpu_profiles.py); the
# first, gx3 L4, is the cheapest sensible default. validate checks the zone offers the profile.
GPU_PROFILES = profile_names()

MAX_VMS = 8
# The budget gate's default: a few default runs' worth (1 x L4 for 2 h is about 4 USD at list price).
DEFAULT_MAX_COST_USD = 100.0


def _profile_choices() -> dict[str, str]:
    """The trigger form's label for each profile: its list price per server-hour."""
    return {p: f"{p} ({profile_price(p):.2f} USD/h per server, list price)" for p in GPU_PROFILES}


MAX_KEEP_ON_FAILURE_MINUTES = 240
# How long a question in the UI (approve a run, keep a failed run's servers) may wait.
MAX_DECISION_MINUTES = 60
# IBM's COS service roles (ibm-cloud-docs/cloud-object-storage iam.md); terraform/variables.tf
# validates cos_profile_roles against the same list.
COS_SERVICE_ROLES = ["Object Writer", "Object Reader", "Content Reader", "Reader", "Writer", "Manager"]

# Trigger-form sections after the main one ("Run Parameters": servers, data, training, results),
# which is the only one the form opens; these stay collapsed until clicked.
LIMITS = "Time, budget and cleanup"
ADVANCED = "Workspace and COS access"
SEVERAL_SERVERS = "Sweep grid and multi-worker timeout"
DEBUG = "Debug access (off by default)"
# An optional text field is null-able: Airflow's trigger form treats an empty required field as
# missing and disables its Trigger button. The pipeline reads None and "" alike (optional_text).
OPTIONAL_TEXT = ["null", "string"]

# Airflow checks every Param's schema against its metaschema at each parse of the DAG (jsonschema's
# validate()); draft-07's one-document metaschema is the cheapest (docs/performance.md, "Parse").
# Nothing here needs a newer draft.
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"


def param(default: Any, **schema: Any) -> Param:
    """A run parameter: ``Param`` whose JSON schema declares draft-07."""
    return Param(default, **{"$schema": JSON_SCHEMA_DRAFT, **schema})


PARAMS: dict[str, Param] = {
    "region": param(
        "us-south",
        type="string",
        enum=list(REGIONS),
        title="Region",
        description="IBM Cloud region of the Schematics workspace and the VPC.",
    ),
    "zone": param(
        "us-south-1",
        type="string",
        pattern=r"^[a-z]{2}-[a-z]+-[1-3]$",
        title="Zone",
        description="Availability zone inside the region, e.g. us-south-1.",
    ),
    "placements": param(
        None,
        type=["null", "array"],
        items={
            "type": "object",
            "properties": {
                "zone": {"type": "string", "pattern": r"^[a-z]{2}-[a-z]+-[1-3]$"},
                "gpu_profile": {"type": "string", "enum": list(GPU_PROFILES)},
            },
            "required": ["zone"],
            "additionalProperties": False,
        },
        maxItems=9,
        title="Placements (failover order)",
        section=LIMITS,
        description="Where to try the servers, in order, when a zone has no capacity: "
        '[{"zone": "us-south-2"}, {"zone": "us-south-3", "gpu_profile": "gx3-24x120x1l40s"}] '
        "(a missing gpu_profile means the run's). Empty: the run's zone, then every other zone of the "
        "region that offers the profile. max_cost_usd holds for the most expensive one.",
    ),
    "max_recoveries": param(
        1,
        type="integer",
        minimum=0,
        maximum=5,
        title="Replace lost servers (times)",
        section=LIMITS,
        description="When a server stops or disappears without a marker and the workload reported no "
        "failure (a host failure, a server deleted by hand), replace the servers and resume from the "
        "last checkpoint, at most this many times. A workload that wrote _FAILED is not recovered.",
    ),
    "placement_timeout_minutes": param(
        60,
        type="integer",
        minimum=1,
        maximum=24 * 60,
        title="Failover time limit (minutes)",
        section=LIMITS,
        description="After this long trying placements without capacity, no new one is tried.",
    ),
    "gpu_profile": param(
        "gx3-16x80x1l4",
        type="string",
        enum=list(GPU_PROFILES),
        values_display=_profile_choices(),
        title="GPU profile",
        description="VPC instance profile of each GPU server; not every zone offers every profile "
        "(checked before anything is created); its list price per server-hour is "
        f"shown with it ({PRICES_FILE}, prices as of {price_table()['as_of']}).",
    ),
    "vm_count": param(
        1,
        type="integer",
        minimum=1,
        maximum=MAX_VMS,
        title="Number of GPU servers",
        description="Server i writes under its own vm-<i>/ prefix; 'distribution' says how they "
        "share the work.",
    ),
    "distribution": param(
        "auto",
        type="string",
        enum=["auto", "multi_worker", "sweep"],
        title="How the servers share the work",
        description="auto: one server trains alone, several run multi_worker. multi_worker: one "
        "data-parallel training over every GPU of every server (MultiWorkerMirroredStrategy). "
        "sweep: each server trains one combination of the 'sweep' grid; the report ranks them.",
    ),
    "sweep": param(
        {},
        type="object",
        title="Sweep grid",
        section=SEVERAL_SERVERS,
        description="distribution 'sweep' only: lists of values to try, e.g. "
        '{"learning_rate": [0.01, 0.001]}; the grid (every combination) must have exactly '
        "vm_count combinations. A parameter not listed keeps its single value.",
        properties={
            "learning_rate": {
                "type": "array",
                "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "minItems": 1,
                "maxItems": MAX_VMS,
            },
            "batch_size": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 65536},
                "minItems": 1,
                "maxItems": MAX_VMS,
            },
            "seed": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                "minItems": 1,
                "maxItems": MAX_VMS,
            },
        },
        additionalProperties=False,
    ),
    "collective_timeout_seconds": param(
        300,
        type="integer",
        minimum=10,
        maximum=3600,
        title="Collective timeout (seconds)",
        section=SEVERAL_SERVERS,
        description="multi_worker: a gradient exchange that does not complete in this time (a "
        "server died) fails the run, instead of waiting for the TTL.",
    ),
    "image": param(
        "ibm-ubuntu-24-04-6-minimal-amd64-3",
        type="string",
        pattern=r"^[a-z][a-z0-9-]{2,62}$",
        title="Image",
        description="Name of a stock or custom x86-64 Ubuntu image.",
    ),
    "bucket": param(
        "airflow-gpu-results",
        type="string",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        title="COS bucket",
        description="Existing bucket for the workload bundle and the results.",
    ),
    "output_prefix": param(
        "gpu-runs",
        type="string",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}[A-Za-z0-9]$",
        title="Output prefix",
        description="Results go to <output_prefix>/<dag_id>/<run>/ in the bucket.",
    ),
    "dataset": param(
        "digits",
        type="string",
        pattern=r"^(digits|mnist|cifar10|cos://[A-Za-z0-9._-][A-Za-z0-9._/-]*\.npz)$",
        title="Dataset",
        description="digits (offline), mnist, cifar10, or cos://<key>.npz staged in the bucket.",
    ),
    "epochs": param(
        5,
        type="integer",
        minimum=1,
        maximum=1000,
        title="Epochs",
        description="Passes over the training data.",
    ),
    "batch_size": param(
        64,
        type="integer",
        minimum=1,
        maximum=65536,
        title="Batch size",
        description="Examples per training step on each server.",
    ),
    "learning_rate": param(
        0.001,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        title="Learning rate",
        description="Adam optimiser step size, greater than 0 and at most 1.",
    ),
    "seed": param(
        42,
        type="integer",
        minimum=0,
        maximum=2**31 - 1,
        title="Random seed",
        description="Seeds the data split, shuffling and weight initialisation on every server.",
    ),
    "checkpoint_every_epochs": param(
        1,
        type="integer",
        minimum=0,
        maximum=1000,
        title="Checkpoint every N epochs",
        description="Save weights, optimizer state and the history to the run's COS prefix every N "
        "epochs; a cleared, rebooted or replaced server resumes from the latest valid one "
        "(0: no checkpoints, every attempt starts at epoch 0).",
    ),
    "max_runtime_minutes": param(
        120,
        type="integer",
        minimum=10,
        maximum=24 * 60,
        title="Maximum runtime",
        section=LIMITS,
        description="The run's TTL: servers power themselves off after it, and "
        "the wait for results gives up.",
    ),
    "progress_stall_minutes": param(
        30,
        type="number",
        minimum=0.2,
        maximum=24 * 60,
        title="Progress stall timeout",
        section=LIMITS,
        description="Fail when progress.json stops advancing this long, once training has started.",
    ),
    "max_cost_usd": param(
        DEFAULT_MAX_COST_USD,
        type="number",
        exclusiveMinimum=0,
        title="Budget (USD)",
        section=LIMITS,
        description="validate fails, before anything is created, when the worst case is over this: "
        "vm_count x the profile's hourly price x (max_runtime_minutes + the hold after a failure: "
        "hold_decision_minutes + keep_on_failure_minutes, when the latter is above 0) / 60, "
        "plus boot volumes, gateway and floating IPs. List prices, no discounts, no taxes.",
    ),
    "plan_only": param(
        False,
        type="boolean",
        title="Plan only",
        section=LIMITS,
        description="Run the Schematics plan, then clean up without applying.",
    ),
    "keep_on_failure_minutes": param(
        0,
        type="integer",
        minimum=0,
        maximum=MAX_KEEP_ON_FAILURE_MINUTES,
        title="Keep on failure (minutes)",
        section=LIMITS,
        description="After a failure, offer in the UI to keep the servers this long for debugging "
        "(0: destroy at once, nobody is asked). Bounded.",
    ),
    "keep_checkpoints": param(
        False,
        type="boolean",
        title="Keep checkpoints",
        section=LIMITS,
        description="Keep the training checkpoints in COS after the run's results are final (by "
        "default they are deleted then; a failed run always keeps them, so that it can resume).",
    ),
    "hold_decision_minutes": param(
        10,
        type="integer",
        minimum=1,
        maximum=MAX_DECISION_MINUTES,
        title="Time to decide on a failed run's servers (minutes)",
        section=LIMITS,
        description="With keep_on_failure_minutes above 0, how long the 'Destroy now' / 'Keep' question "
        "waits for an answer; without one, the servers are destroyed.",
    ),
    "approval_above_usd": param(
        None,
        type=["null", "number"],
        exclusiveMinimum=0,
        title="Ask for approval above (USD)",
        section=LIMITS,
        description="A run whose worst case is above this waits for a person's approval in the UI "
        "before anything is created (empty: never ask).",
    ),
    "approval_timeout_minutes": param(
        60,
        type="integer",
        minimum=1,
        maximum=MAX_DECISION_MINUTES * 24,
        title="Time to approve (minutes)",
        section=LIMITS,
        description="How long a run waits for approval; without an answer it is rejected.",
    ),
    "existing_workspace_id": param(
        None,
        type=OPTIONAL_TEXT,
        pattern=r"^$|^[a-z]{2}-[a-z]+\.workspace\.[A-Za-z0-9._-]+$",
        title="Existing workspace id",
        section=ADVANCED,
        description="Optional: leave empty to create a workspace for this run. Or the id of a "
        "Schematics workspace to use instead (in the run's region); runs on it are serialised.",
    ),
    "cos_auth_mode": param(
        "trusted_profile",
        type="string",
        enum=["trusted_profile", "hmac"],
        title="COS access from the servers",
        section=ADVANCED,
        description="trusted_profile (keyless, default) or hmac (keys from the COS "
        "connection, sent as secure variables).",
    ),
    "debug_mode": param(
        False,
        type="boolean",
        title="Debug mode",
        section=DEBUG,
        description="Add an SSH key, a floating IP per server and port 22 from one CIDR "
        "(the two fields below are required then).",
    ),
    "debug_ssh_public_key": param(
        None,
        type=OPTIONAL_TEXT,
        title="Debug SSH public key",
        section=DEBUG,
        pattern=r"^$|^(ssh-rsa|ssh-ed25519) [A-Za-z0-9+/=]+( .*)?$",
        description="Only with debug mode: an ssh-rsa or ssh-ed25519 public key (never a private key).",
    ),
    "debug_allowed_cidr": param(
        None,
        type=OPTIONAL_TEXT,
        title="Debug allowed CIDR",
        section=DEBUG,
        pattern=r"^$|^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$",
        description="Only with debug mode: the one IPv4 CIDR allowed to SSH in, "
        "e.g. 203.0.113.7/32 (at most a /16).",
    ),
    "cos_profile_roles": param(
        ["Object Writer", "Object Reader"],
        type="array",
        items={"type": "string", "enum": COS_SERVICE_ROLES},
        minItems=1,
        uniqueItems=True,
        title="Servers' COS roles (trusted profile)",
        section=ADVANCED,
        description="COS roles of the servers' trusted profile, on the run's own prefix only. "
        "The workload needs Object Writer and Object Reader; without a write role the run fails.",
    ),
}


def optional_text(params: dict, name: str) -> str:
    """An optional text parameter as a string: ``None`` (an empty form field) and ``""`` alike."""
    return params.get(name) or ""


def training_params(**defaults: Any) -> dict[str, Param]:
    """:data:`PARAMS` with some defaults changed, for a DAG that uses the training task group.

    ``training_params(epochs=10, gpu_profile="gx3-24x120x1l40s")``; unknown names are refused.
    """
    unknown = sorted(set(defaults) - set(PARAMS))
    if unknown:
        raise ValueError(f"training_params: unknown parameter(s) {unknown}; known: {sorted(PARAMS)}")
    changed = {
        name: Param(value, description=PARAMS[name].description, **PARAMS[name].schema)
        for name, value in defaults.items()
    }
    for param in changed.values():
        param.resolve()  # a default its own schema refuses fails the DAG's parse, not a run
    return {name: changed.get(name, p) for name, p in PARAMS.items()}

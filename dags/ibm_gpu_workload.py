"""
### Train on short-lived IBM Cloud GPU servers

Each run creates its **own** Schematics workspace from this repository's `terraform/` folder,
plans and applies a VPC with `vm_count` GPU servers, waits while the servers train the model in
`workload/` and write results to Cloud Object Storage, and then **always destroys** what it created:
after success, failure, timeout, a half-finished apply, or a task marked failed by hand.

| step | what happens |
|---|---|
| `validate` | checks parameters and connections (nothing is created if one fails); uploads `workload/` |
| `approve` | above `approval_above_usd`, waits for a person's approval (Required Actions) |
| `create_workspace` → `plan` → `apply` | Schematics jobs, deferred: no worker slot while they run |
| `wait_for_output` | COS sensor (deferred): the `_SUCCESS` marker(s); fails on any `_FAILED` or a stall |
| `hold_on_failure` | after a failure, with `keep_on_failure_minutes`: "Destroy now" or "Keep" in the UI |
| `destroy` → `delete_workspace` | cleanup, whatever happened before |
| `report` | lists what is still live (VPC API), writes `run-report.json`, fails if anything leaked |
| `run_verdict` | fails the run if any step failed; else emits the model asset event |

Results: `s3://<bucket>/<output_prefix>/ibm_gpu_workload/<run>/vm-<i>/` (model, metrics,
training curve, manifest, `_SUCCESS`). See `docs/` in the repository for connections and parameters.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG
from gpu_pipeline.model_asset import MODEL_ASSET
from gpu_pipeline.params import PARAMS
from gpu_pipeline.training_group import ibm_gpu_training

REPO = Path(__file__).resolve().parents[1]

# Deployment-level knobs (environment, not Variables: reading them costs no DB or network call).
# The original sample ran Mondays at 12:00 UTC; "None" means on-demand runs only.
SCHEDULE = os.environ.get("IBM_GPU_WORKLOAD_SCHEDULE", "0 12 * * 1")
SCHEDULE = None if SCHEDULE.strip() in ("", "None", "none") else SCHEDULE
MAX_ACTIVE_RUNS = int(os.environ.get("IBM_GPU_WORKLOAD_MAX_ACTIVE_RUNS", "4"))


with DAG(
    dag_id="ibm_gpu_workload",
    description="Train a TensorFlow model on short-lived IBM Cloud GPU servers, then destroy them",
    doc_md=__doc__,
    schedule=SCHEDULE,
    catchup=False,
    max_active_runs=MAX_ACTIVE_RUNS,
    params=PARAMS,
    render_template_as_native_obj=True,
    tags=["ibm-cloud", "schematics", "gpu", "tensorflow"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
    },
) as dag:
    # The whole DAG is the reusable group; its tasks keep their short ids (no group prefix).
    ibm_gpu_training(
        "training",
        prefix_group_id=False,
        workload_dir=REPO / "workload",
        terraform_dir=REPO / "terraform",
        model_asset=MODEL_ASSET,
        # Schematics polls count against its 50 requests/minute limit; COS polls are cheap and decide
        # how soon after the workload's _SUCCESS the servers are destroyed; the server check lists
        # the run's servers (one VPC API call) to catch one that stopped.
        poll_interval=float(os.environ.get("IBM_GPU_WORKLOAD_POLL_SECONDS", "30")),
        sensor_poke_interval=float(os.environ.get("IBM_GPU_WORKLOAD_SENSOR_POKE_SECONDS", "1")),
        server_check_interval=float(os.environ.get("IBM_GPU_WORKLOAD_SERVER_CHECK_SECONDS", "30")),
    )

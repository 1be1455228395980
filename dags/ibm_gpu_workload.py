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

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG
from gpu_pipeline.model_asset import MODEL_ASSET
from gpu_pipeline.params import PARAMS
from gpu_pipeline.settings import pipeline_settings
from gpu_pipeline.training_group import ibm_gpu_training

REPO = Path(__file__).resolve().parents[1]
# The deployment's schedule and poll intervals: Airflow configuration, [ibm_cloud] section.
SETTINGS = pipeline_settings()


with DAG(
    dag_id="ibm_gpu_workload",
    description="Train a TensorFlow model on short-lived IBM Cloud GPU servers, then destroy them",
    doc_md=__doc__,
    schedule=SETTINGS.workload_schedule,
    catchup=False,
    max_active_runs=SETTINGS.workload_max_active_runs,
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
        poll_interval=SETTINGS.schematics_poll_interval,
        sensor_poke_interval=SETTINGS.cos_poke_interval,
        server_check_interval=SETTINGS.server_check_interval,
    )

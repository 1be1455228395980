"""
### Train on short-lived IBM Cloud GPU servers

Each run creates its **own** Schematics workspace from this repository's `terraform/` folder,
plans and applies a VPC with `vm_count` GPU servers, waits while the servers train the model in
`workload/` and write results to Cloud Object Storage, and then **always destroys** what it created:
after success, failure, timeout, a half-finished apply, or a task marked failed by hand.

| step | what happens |
|---|---|
| `validate` | checks parameters and connections (nothing is created if one fails); uploads `workload/` |
| `create_workspace` → `plan` → `apply` | Schematics jobs, deferred: no worker slot while they run |
| `wait_for_output` | COS sensor (deferred): the `_SUCCESS` marker(s); fails on any `_FAILED` or a stall |
| `hold_on_failure` → `destroy` → `delete_workspace` | cleanup, whatever happened before |
| `report` | lists what is still live (VPC API), writes `run-report.json`, fails if anything leaked |
| `run_verdict` | fails the run if any step failed |

Results: `s3://<bucket>/<output_prefix>/ibm_gpu_workload/<run>/vm-<i>/` (model, metrics,
training curve, manifest, `_SUCCESS`). See `docs/` in the repository for connections and parameters.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import DAG, TriggerRule, chain, conf, task
from gpu_pipeline.hold import HoldOnFailureOperator
from gpu_pipeline.params import PARAMS

from ibm_cloud_airflow.operators.schematics import (
    SchematicsApplyOperator,
    SchematicsCreateWorkspaceOperator,
    SchematicsDeleteWorkspaceOperator,
    SchematicsDestroyOperator,
    SchematicsPlanOperator,
)
from ibm_cloud_airflow.sensors.cos import CosKeySensor

if TYPE_CHECKING:  # the plan's module is imported where validate runs, not at every parse
    from gpu_pipeline.run_plan import RunPlan

REPO = Path(__file__).resolve().parents[1]
IBM_CONN_ID = "ibm_cloud_default"
COS_CONN_ID = "ibm_cos_default"
# Work tasks: if any of them fails, the run fails even though cleanup succeeded.
WORK_TASKS = ("validate", "create_workspace", "plan", "apply", "wait_for_output")

# Deployment-level knobs (environment, not Variables: reading them costs no DB or network call).
# The original sample ran Mondays at 12:00 UTC; "None" means on-demand runs only.
SCHEDULE = os.environ.get("IBM_GPU_WORKLOAD_SCHEDULE", "0 12 * * 1")
SCHEDULE = None if SCHEDULE.strip() in ("", "None", "none") else SCHEDULE
MAX_ACTIVE_RUNS = int(os.environ.get("IBM_GPU_WORKLOAD_MAX_ACTIVE_RUNS", "4"))
# Schematics polls count against its 50 requests/minute limit; COS polls are cheap and decide
# how soon after the workload's _SUCCESS the servers are destroyed.
POLL_SECONDS = float(os.environ.get("IBM_GPU_WORKLOAD_POLL_SECONDS", "30"))
SENSOR_POKE_SECONDS = float(os.environ.get("IBM_GPU_WORKLOAD_SENSOR_POKE_SECONDS", "1"))
# How often the sensor lists the run's servers (one VPC API call) to catch one that stopped.
SERVER_CHECK_SECONDS = float(os.environ.get("IBM_GPU_WORKLOAD_SERVER_CHECK_SECONDS", "30"))
# The sensor and the destroy start and end in the triggerer, and a Schematics job still running
# after its first check ends its task there: no worker start on the way. Airflow refuses that
# where listener plugins (e.g. OpenLineage) are installed: the Airflow option
# [ibm_cloud] end_from_trigger = False turns it off.
IN_TRIGGERER = conf.getboolean("ibm_cloud", "end_from_trigger", fallback=True)


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
    # One XCom, the typed plan (a TypedDict would otherwise be pushed key by key too).
    @task(multiple_outputs=False)
    def validate(params: dict, dag_run=None, **context) -> RunPlan:
        """Check parameters and connections and plan the run; then upload the workload bundle.

        Nothing is created when a check fails (and a check's failure is not retried). A cleared or
        re-run run reuses its prefix: its old markers go first, so that the sensor can never take
        a previous attempt's _SUCCESS for this one's.
        """
        from gpu_pipeline.validation import plan_run

        from ibm_cloud_airflow.hooks.cos import CosHook

        plan = plan_run(params, dag_run=dag_run, ibm_conn_id=IBM_CONN_ID, cos_conn_id=COS_CONN_ID)
        cos = CosHook(cos_conn_id=COS_CONN_ID)
        stale = [
            k for k in cos.list_keys(plan["bucket"], plan["prefix"]) if k.endswith(("/_SUCCESS", "/_FAILED"))
        ]
        cos.delete_keys(plan["bucket"], stale)
        cos.upload_directory_as_targz(plan["bucket"], REPO / "workload", plan["bundle_key"])
        return plan

    # Cleanup-side tasks read the plan themselves: when validate failed there is none, and
    # there is nothing to check, rather than an XCom that cannot be resolved.
    @task(trigger_rule=TriggerRule.ALL_DONE, retries=3)
    def report(dag_run=None, ti=None) -> dict | None:
        """List what is still live for the run (VPC API), write run-report.json, fail on a leak."""
        from gpu_pipeline.report import write_run_report

        return write_run_report(
            ti.xcom_pull(task_ids="validate"),
            dag_run=dag_run,
            ti=ti,
            cos_conn_id=COS_CONN_ID,
            ibm_conn_id=IBM_CONN_ID,
        )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def run_verdict() -> None:
        """Fail the run when any step failed, even though cleanup succeeded."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("A step of this run failed; see the failed task's log.")

    plan = validate()

    create_workspace = SchematicsCreateWorkspaceOperator(
        task_id="create_workspace",
        plan_task_id="validate",
        template_dir=str(REPO / "terraform"),
        ibm_conn_id=IBM_CONN_ID,
    )
    workspace_id = "{{ ti.xcom_pull(task_ids='create_workspace', map_indexes=-1) }}"
    schematics_job = {
        "ibm_conn_id": IBM_CONN_ID,
        "workspace_id": workspace_id,
        "plan_task_id": "validate",
        "poll_interval": POLL_SECONDS,
        "end_from_trigger": IN_TRIGGERER,
    }

    # Plan and apply are submitted from a worker, whose task_state_store keeps the job id (a retry
    # re-attaches instead of submitting again), checked once a moment later (a job that ended
    # finishes there), then waited for in the triggerer. On a quiet machine a worker starts in under
    # a second, where the triggerer takes about two to pick up a task that starts there.
    plan_job = SchematicsPlanOperator(task_id="plan", job_timeout=timedelta(minutes=30), **schematics_job)
    # A plan-only run skips the apply.
    apply_job = SchematicsApplyOperator(task_id="apply", job_timeout=timedelta(minutes=90), **schematics_job)

    wait_for_output = CosKeySensor(
        task_id="wait_for_output",
        plan_task_id="validate",
        cos_conn_id=COS_CONN_ID,
        poke_interval=SENSOR_POKE_SECONDS,
        deferrable=True,
        # Straight to the triggerer and done there: no worker slot, no worker start-up between
        # _SUCCESS and the destroy.
        start_from_trigger=IN_TRIGGERER,
        retries=0,
        # A server that cannot write to COS powers off: seen through the VPC API, explained from
        # its trusted profile's IAM policies (the apply's outputs name the profile).
        ibm_conn_id=IBM_CONN_ID,
        outputs_task_id="apply",
        server_check_interval=SERVER_CHECK_SECONDS,
    )

    # Runs only after a failure: on success the scheduler skips it, and destroy starts at once.
    hold = HoldOnFailureOperator(
        task_id="hold_on_failure",
        watched_task_ids=list(WORK_TASKS),
        minutes="{{ params.keep_on_failure_minutes }}",
        trigger_rule=TriggerRule.ONE_FAILED,
        retries=0,
    )

    # By id, or by the run's workspace name when create_workspace failed after creating it.
    destroy = SchematicsDestroyOperator(
        task_id="destroy",
        job_timeout=timedelta(minutes=90),
        trigger_rule=TriggerRule.ALL_DONE,
        retries=4,
        # Submitted from the triggerer: under load (ten runs on two cores) its warm process beats a
        # worker start (DAG parse, SDK imports, a new IAM token) by seconds between _SUCCESS and destroy.
        start_from_trigger=IN_TRIGGERER,
        **schematics_job,
    )

    # Only after a successful destroy: a workspace whose destroy failed is kept for a retry.
    delete_workspace = SchematicsDeleteWorkspaceOperator(
        task_id="delete_workspace",
        ibm_conn_id=IBM_CONN_ID,
        workspace_id=workspace_id,
        plan_task_id="validate",
        # A workspace this run created carries no other run's lease: delete without a look-up.
        check_leases=False,
    )

    chain(
        plan,
        create_workspace,
        plan_job,
        apply_job,
        wait_for_output,
        hold,
        destroy,
        delete_workspace,
        report(),
    )
    list(dag.tasks) >> run_verdict()

"""``ibm_gpu_training()``: the whole training chain as one task group that any DAG can drop in.

    from gpu_pipeline.params import training_params
    from gpu_pipeline.training_group import ibm_gpu_training

    with DAG("ingest_train_deploy", params=training_params(epochs=10), ...):
        ingest() >> ibm_gpu_training(workload_dir=..., terraform_dir=...) >> deploy()

The group keeps every guarantee of the shipped DAG: per-run isolation, a validated run before
anything exists, approval of costly runs, always destroy, a leak check, and a verdict. The verdict is
the group's one leaf: it succeeds only when the run trained and left nothing behind (then it emits
the model asset event), so that tasks after the group run only on a good model.

A DAG holds at most one such group: the run's cloud objects are named after the DAG run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, TaskGroup, TriggerRule, chain, task
from airflow.sdk.bases.notifier import BaseNotifier

from gpu_pipeline.failover import PlacementApplyOperator
from gpu_pipeline.failure_cause import PIPELINE_ORDER
from gpu_pipeline.hold import CostApprovalOperator, HoldOnFailureOperator
from gpu_pipeline.params import PARAMS
from gpu_pipeline.recovery import TrainingWaitSensor
from gpu_pipeline.workspace import RunPlanOperator
from ibm_cloud_airflow.operators.schematics import (
    SchematicsCreateWorkspaceOperator,
    SchematicsDeleteWorkspaceOperator,
    SchematicsDestroyOperator,
)
from ibm_cloud_airflow.utils.failure_cause import explain_failure
from ibm_cloud_airflow.utils.triggerer import can_end_from_trigger

# The group's tasks, in order: their names in the pipeline, whatever the group prefixes to their ids.
# The run's steps are the order in which failures explain a run; the verdict comes last.
TASKS = (*PIPELINE_ORDER, "run_verdict")


def ibm_gpu_training(
    group_id: str = "ibm_gpu_training",
    *,
    workload_dir: str | Path,
    terraform_dir: str | Path,
    ibm_conn_id: str = "ibm_cloud_default",
    cos_conn_id: str = "ibm_cos_default",
    model_asset: Asset | None = None,
    poll_interval: float = 30.0,
    sensor_poke_interval: float = 1.0,
    server_check_interval: float = 30.0,
    end_from_trigger: bool | None = None,
    notifiers: Sequence[BaseNotifier] = (),
    prefix_group_id: bool = True,
    tooltip: str = "Train on short-lived IBM Cloud GPU servers, then destroy them",
) -> TaskGroup:
    """Add the training chain to the current DAG as a task group, and return the group.

    :param workload_dir: the folder uploaded to COS and run on the servers (``bootstrap.sh``, ``train.py``).
    :param terraform_dir: the Terraform folder each run's Schematics workspace is created from.
    :param ibm_conn_id: the IBM Cloud connection (API key, region): Schematics, VPC, IAM.
    :param cos_conn_id: the COS connection: the bucket the bundle, the results and the report go to.
    :param model_asset: the asset a successful run updates (default ``<dag_id>.model``).
    :param poll_interval: seconds between Schematics job polls (they count against IBM's rate limit).
    :param sensor_poke_interval: seconds between COS marker polls (how soon _SUCCESS starts the destroy).
    :param server_check_interval: seconds between VPC listings of the run's servers (a stopped one fails
        the wait).
    :param end_from_trigger: let deferred tasks end in the triggerer; default: wherever Airflow allows it
        (not where listeners such as OpenLineage are installed).
    :param notifiers: called when a person is asked to approve a run or to decide about a failed run.
    :param prefix_group_id: prefix the tasks' ids with ``group_id`` (Airflow's default); the shipped DAG
        keeps its historical ids with False.
    """
    from ibm_cloud_airflow.utils.airflow_compat import current_dag

    dag = current_dag()
    if dag is None:
        raise ValueError("ibm_gpu_training() adds tasks to a DAG: call it inside `with DAG(...)`.")
    missing = sorted(set(PARAMS) - set(dag.params))
    if missing:
        raise ValueError(
            f"DAG {dag.dag_id!r} lacks the training parameters {missing}: declare "
            "params=gpu_pipeline.params.training_params(...) (or a superset) on the DAG."
        )
    if end_from_trigger is None:
        end_from_trigger = can_end_from_trigger()
    asset = model_asset if model_asset is not None else _default_asset(dag.dag_id)
    workload_dir, terraform_dir = Path(workload_dir), Path(terraform_dir)

    with TaskGroup(group_id, prefix_group_id=prefix_group_id, tooltip=tooltip) as group:
        # task name -> its id in the DAG (prefixed with the group id unless told otherwise)
        ids = {name: group.child_id(name) for name in TASKS}
        # what every Schematics job operator (plan, apply, destroy) is given
        job_kwargs = {
            "ibm_conn_id": ibm_conn_id,
            "workspace_id": f"{{{{ ti.xcom_pull(task_ids='{ids['create_workspace']}', map_indexes=-1) }}}}",
            "plan_task_id": ids["validate"],
            "poll_interval": poll_interval,
            "end_from_trigger": end_from_trigger,
        }

        # One XCom, the typed plan (a TypedDict would otherwise be pushed key by key too).
        # Tasks that are not Schematics jobs end with their failure's cause too (the report's why).
        @task(task_id="validate", multiple_outputs=False, on_failure_callback=explain_failure)
        def validate(params: dict, dag_run=None) -> dict[str, Any]:
            """Check parameters and connections and plan the run; then upload the workload bundle.

            Nothing is created when a check fails (and a check's failure is not retried). A cleared or
            re-run run reuses its prefix: its old markers go first, so that the sensor can never take
            a previous attempt's _SUCCESS for this one's.
            """
            from gpu_pipeline.checkpoints import stale_markers
            from gpu_pipeline.validation import plan_run
            from ibm_cloud_airflow.hooks.cos import CosHook

            plan = plan_run(params, dag_run=dag_run, ibm_conn_id=ibm_conn_id, cos_conn_id=cos_conn_id)
            cos = CosHook(cos_conn_id=cos_conn_id)
            # Markers only: the checkpoints stay, so that the run resumes where it stopped.
            cos.delete_keys(plan["bucket"], stale_markers(cos.list_keys(plan["bucket"], plan["prefix"])))
            cos.upload_directory_as_targz(plan["bucket"], workload_dir, plan["bundle_key"])
            return plan

        approve = CostApprovalOperator(task_id="approve", notifiers=list(notifiers), retries=0)

        create_workspace = SchematicsCreateWorkspaceOperator(
            task_id="create_workspace",
            plan_task_id=ids["validate"],
            template_dir=str(terraform_dir),
            ibm_conn_id=ibm_conn_id,
            on_failure_callback=explain_failure,
        )
        # Plan and apply are submitted from a worker, whose task_state_store keeps the job id (a retry
        # re-attaches instead of submitting again), checked once a moment later (a job that ended
        # finishes there), then waited for in the triggerer.
        # Both create the run's workspace again when a clear after the cleanup finds it gone.
        plan_job = RunPlanOperator(
            task_id="plan",
            job_timeout=timedelta(minutes=30),
            template_dir=str(terraform_dir),
            **job_kwargs,
        )
        # A plan-only run skips the apply. A zone without capacity moves the run to its next
        # placement. The apply ends on a worker, where its placement record is written.
        apply_job = PlacementApplyOperator(
            task_id="apply",
            job_timeout=timedelta(minutes=90),
            template_dir=str(terraform_dir),
            **{**job_kwargs, "end_from_trigger": False},
        )
        # Replaces lost servers, and creates them again when cleared after the run's cleanup.
        wait_for_output = TrainingWaitSensor(
            task_id="wait_for_output",
            workspace_id=job_kwargs["workspace_id"],
            template_dir=str(terraform_dir),
            poll_interval=poll_interval,
            plan_task_id=ids["validate"],
            cos_conn_id=cos_conn_id,
            poke_interval=sensor_poke_interval,
            deferrable=True,
            # Straight to the triggerer and done there: no worker slot, and no worker start-up
            # between _SUCCESS and the destroy.
            start_from_trigger=end_from_trigger,
            retries=0,
            # A server that cannot write to COS powers off: seen through the VPC API, explained from
            # its trusted profile's IAM policies (the apply's outputs name the profile).
            ibm_conn_id=ibm_conn_id,
            outputs_task_id=ids["apply"],
            server_check_interval=server_check_interval,
            on_failure_callback=explain_failure,
        )
        # Runs only after a failure: on success the scheduler skips it, and destroy starts at once.
        # It asks only when servers may exist: the apply or the wait failed.
        hold = HoldOnFailureOperator(
            task_id="hold_on_failure",
            watched_task_ids=[ids["apply"], ids["wait_for_output"]],
            minutes="{{ params.keep_on_failure_minutes }}",
            decision_minutes="{{ params.hold_decision_minutes }}",
            notifiers=list(notifiers),
            trigger_rule=TriggerRule.ONE_FAILED,
            retries=0,
        )
        # By id, or by the run's workspace name when create_workspace failed after creating it.
        destroy = SchematicsDestroyOperator(
            task_id="destroy",
            job_timeout=timedelta(minutes=90),
            trigger_rule=TriggerRule.ALL_DONE,
            retries=4,
            # Submitted from the triggerer: its warm process beats a worker start (DAG parse, SDK
            # imports, a new IAM token) between _SUCCESS and the destroy.
            start_from_trigger=end_from_trigger,
            **job_kwargs,
        )
        # Only after a successful destroy: a workspace whose destroy failed is kept for a retry.
        delete_workspace = SchematicsDeleteWorkspaceOperator(
            task_id="delete_workspace",
            ibm_conn_id=ibm_conn_id,
            workspace_id=job_kwargs["workspace_id"],
            plan_task_id=ids["validate"],
            # A workspace this run created carries no other run's lease: delete without a look-up.
            check_leases=False,
        )

        # Cleanup-side tasks read the plan themselves: when validate failed there is none, and
        # there is nothing to check, rather than an XCom that cannot be resolved.
        @task(task_id="report", trigger_rule=TriggerRule.ALL_DONE, retries=3)
        def report(dag_run=None, ti=None) -> dict | None:
            """List what is still live for the run (VPC API), write run-report.json, fail on a leak."""
            from gpu_pipeline.report import write_run_report

            return write_run_report(
                ti.xcom_pull(task_ids=ids["validate"]),
                dag_run=dag_run,
                ti=ti,
                cos_conn_id=cos_conn_id,
                ibm_conn_id=ibm_conn_id,
                task_ids=ids,
            )

        @task(task_id="run_verdict", trigger_rule=TriggerRule.ALL_DONE, retries=0, outlets=[asset])
        def run_verdict(ti=None, outlet_events=None) -> dict | None:
            """Fail when any step failed, even though cleanup succeeded; else announce the model."""
            from gpu_pipeline.verdict import judge

            return judge(ti, ids, asset=asset, outlet_events=outlet_events)

        chain(
            validate(),
            approve,
            create_workspace,
            plan_job,
            apply_job,
            wait_for_output,
            hold,
            destroy,
            delete_workspace,
            report(),
        )
        # The verdict waits for every task of the group: its only leaf.
        verdict = run_verdict().operator
        for child in list(group.children.values()):
            if child is not verdict:
                child >> verdict
    return group


def _default_asset(dag_id: str) -> Asset:
    from gpu_pipeline.model_asset import model_asset

    return model_asset(dag_id)

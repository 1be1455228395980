"""
### Reap what lost or broken GPU runs left behind (the third teardown layer)

The first layer is each run's own `destroy`; the second, its servers powering themselves off at the
run's TTL. This DAG is the third: it finds every Schematics workspace and VPC resource named **and**
tagged for a run of `ibm_gpu_workload` (plus the runs' trusted profiles), asks Airflow whether each
run still exists, and removes the orphans.

| step | what happens |
|---|---|
| `find_orphans` | lists workspaces, tagged VPC resources, trusted profiles; a verdict per run |
| `destroy_orphan_workspaces` | a Schematics destroy per orphan workspace (waits out locks) |
| `reap_leftovers` | deletes what is left (dependency order, 409s retried), the workspaces; lists again |
| `write_report` | `reaper-report.json` in COS: found, removed, left and why, time past each TTL |

An orphan is a run whose Airflow run no longer exists, or ended more than `grace_minutes` ago, or
(when no workspace names the run) whose `ttl:` deadline has passed. A live run is never touched, nor
a workspace adopted through `existing_workspace_id`. **`dry_run` (default for manual runs) reports
without deleting.**
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, TriggerRule, task
from gpu_pipeline.settings import pipeline_settings

from ibm_cloud_airflow.operators.schematics import SchematicsDestroyOperator

IBM_CONN_ID = "ibm_cloud_default"
COS_CONN_ID = "ibm_cos_default"

# Hourly by default ([ibm_cloud] reaper_schedule). Scheduled runs delete (that is their job) unless
# [ibm_cloud] reaper_scheduled_dry_run; manual runs take the dry_run parameter (default true).
SETTINGS = pipeline_settings()

with DAG(
    dag_id="ibm_gpu_reaper",
    description="Find and remove what lost or broken ibm_gpu_workload runs left behind",
    doc_md=__doc__,
    schedule=SETTINGS.reaper_schedule,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["ibm-cloud", "schematics", "cleanup"],
    params={
        "dry_run": Param(
            True,
            type="boolean",
            title="Dry run",
            description="Report what would be removed, and remove nothing. Scheduled runs delete "
            "([ibm_cloud] reaper_scheduled_dry_run = True makes them report only).",
        ),
        "grace_minutes": Param(
            30,
            type="integer",
            minimum=0,
            maximum=7 * 24 * 60,
            title="Grace period (minutes)",
            description="Resources of a run that ended less than this long ago are left to its own cleanup.",
        ),
        "bucket": Param(
            "airflow-gpu-results",
            type="string",
            pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            title="COS bucket",
            description="Where reaper-report.json goes.",
        ),
        "output_prefix": Param(
            "gpu-runs",
            type="string",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}[A-Za-z0-9]$",
            title="Output prefix",
            description="The report goes to <output_prefix>/ibm_gpu_reaper/<run>/reaper-report.json.",
        ),
    },
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
) as dag:

    @task
    def find_orphans(params: dict, dag_run=None) -> dict:
        """Everything of the pipeline, with a verdict per run; nothing is changed."""
        from datetime import UTC, datetime

        from gpu_pipeline.reaper import find_orphans as find

        dry_run = (
            bool(params["dry_run"])
            if str(dag_run.run_type) != "scheduled"
            else SETTINGS.reaper_scheduled_dry_run
        )
        verdicts = find(ibm_conn_id=IBM_CONN_ID, grace=timedelta(minutes=params["grace_minutes"]))
        return {
            "dry_run": dry_run,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "verdicts": verdicts,
        }

    @task
    def orphan_workspaces(found: dict) -> list[str]:
        """The orphan workspaces to destroy (none in a dry run)."""
        if found["dry_run"]:
            return []
        return [v["workspace_id"] for v in found["verdicts"] if v["orphan"] and v["workspace_id"]]

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def reap_leftovers(found: dict) -> dict:
        """Delete what the orphans still have (dependency order, 409s retried), then list again."""
        from gpu_pipeline.reaper import reap_leftovers as reap

        return reap(found["verdicts"], ibm_conn_id=IBM_CONN_ID, dry_run=found["dry_run"])

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def write_report(found: dict, params: dict, dag_run=None, ti=None) -> dict:
        """reaper-report.json in COS; fails the run when an orphan could not be removed."""
        import json

        from airflow.sdk.exceptions import AirflowException
        from gpu_pipeline.reaper import build_report

        from ibm_cloud_airflow.hooks.cos import CosHook
        from ibm_cloud_airflow.utils.run_identity import run_prefix, run_slug

        # Read here, not as an argument: a failed reap_leftovers has no result, and the report still goes.
        outcome = ti.xcom_pull(task_ids="reap_leftovers") or {}
        report = build_report(
            found["verdicts"], outcome, dry_run=found["dry_run"], started_at=found["started_at"]
        )
        prefix = run_prefix(params["output_prefix"], dag_run.dag_id, run_slug(dag_run.dag_id, dag_run.run_id))
        key = f"{prefix}reaper-report.json"
        CosHook(cos_conn_id=COS_CONN_ID).upload_bytes(params["bucket"], key, json.dumps(report, indent=2))
        report["report"] = f"cos://{params['bucket']}/{key}"
        if report["errors"]:
            raise AirflowException(
                f"Some orphans could not be removed: {report['errors']}; see {report['report']}"
            )
        return report

    found = find_orphans()
    workspaces = orphan_workspaces(found)
    destroy = SchematicsDestroyOperator.partial(
        task_id="destroy_orphan_workspaces",
        ibm_conn_id=IBM_CONN_ID,
        poll_interval=SETTINGS.schematics_poll_interval,
        job_timeout=timedelta(minutes=90),
        retries=2,
    ).expand(workspace_id=workspaces)
    outcome = reap_leftovers(found)
    destroy >> outcome >> write_report(found)

"""The run report: what the run did, how long each phase took, where its results are."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gpu_pipeline.phases import task_durations

# What the report keeps of each server's metrics.json.
METRIC_KEYS = (
    "test_accuracy",
    "test_loss",
    "duration_s",
    "device",
    "distribution",
    "workers",
    "global_batch_size",
    "examples_per_second",
    # checkpoints (docs/workload.md): where this attempt started and what it trained
    "resumed_from_epoch",
    "epochs_trained",
    "epochs_completed",
)

# The phases are measured from the run's own timestamps (gpu_pipeline.phases), not from Airflow's
# task durations, which a clear can make negative.


def _task_summary(ti: Any, task_ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The group's tasks by their pipeline names (a DAG's other tasks are not the run's)."""
    names = {task_id: name for name, task_id in task_ids.items()}
    crumbs = ti.get_task_breadcrumbs(dag_id=ti.dag_id, run_id=ti.run_id)
    return task_durations(
        {
            names.get(c["task_id"], c["task_id"]): {"state": str(c["state"]), "duration_s": c.get("duration")}
            for c in crumbs
            if c.get("map_index", -1) in (-1, None) and (not names or c["task_id"] in names)
        }
    )


def build_run_report(
    plan: dict[str, Any],
    *,
    tasks: dict[str, dict[str, Any]],
    queued_s: float | None,
    outputs: dict[str, Any] | None,
    metrics: dict[str, Any],
    apply_job: dict[str, Any] | None,
    destroy_job: dict[str, Any] | None,
    leaks: list[dict[str, Any]] | None,
    phases: dict[str, Any] | None = None,
    checkpoints: dict[str, Any] | None = None,
    cost: dict[str, Any] | None = None,
    leak_error: str | None = None,
    placement: dict[str, Any] | None = None,
    recoveries: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report; ``leaks`` is what the VPC API still lists for the run (None: the check failed);
    ``phases`` is :func:`gpu_pipeline.phases.run_phases`' result."""
    phases = phases or {}
    failed = sorted(t for t, s in tasks.items() if s["state"] in ("failed", "upstream_failed"))
    leak_state = "success" if leaks == [] else "failed"
    extra = {"sweep": rank_sweep(plan, metrics)} if plan.get("distribution") == "sweep" else {}
    return {
        "dag_id": plan["dag_id"],
        "run_id": plan["run_id"],
        "run_slug": plan["slug"],
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "succeeded": not failed and leaks == [],
        "failed_tasks": failed,
        # queued_s: what the caller measured when it has no phases (the queue phase otherwise)
        "phases_s": phases.get("phases_s") or {"queue": queued_s},
        "phase_times": phases.get("phase_times") or {},
        **({"phase_problems": phases["problems"]} if phases.get("problems") else {}),
        "tasks": tasks,
        "outputs": {
            "prefix": f"cos://{plan['bucket']}/{plan['prefix']}",
            "servers": [f"cos://{plan['bucket']}/{key.rsplit('/', 1)[0]}/" for key in plan["marker_keys"]],
            "terraform": outputs or {},
        },
        "metrics": metrics,
        "resources": {
            "created": (apply_job or {}).get("resources_added"),
            "destroyed": (destroy_job or {}).get("resources_destroyed"),
        },
        "leak_check": {
            "state": leak_state,
            "passed": leak_state == "success",
            "leaked": leaks or [],
            **({"error": leak_error} if leak_error else {}),
        },
        "distribution": plan.get("distribution", "single"),
        "resumed_from_epoch": {server: m.get("resumed_from_epoch") for server, m in metrics.items()},
        "checkpoints": checkpoints,
        **extra,
        "cost": cost,
        "placement": placement,
        # each time the wait replaced lost servers (or a clear created them again)
        "recoveries": recoveries or [],
    }


def rank_sweep(plan: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The sweep's servers, best test accuracy first (a server without results comes last)."""
    ranking = []
    for index, trial in enumerate(plan.get("trials") or []):
        server = f"vm-{index}"
        result = metrics.get(server) or {}
        ranking.append(
            {
                "server": server,
                **trial,
                "test_accuracy": result.get("test_accuracy"),
                "test_loss": result.get("test_loss"),
                "model": f"cos://{plan['bucket']}/{plan['prefix']}{server}/model.keras",
            }
        )
    ranking.sort(key=lambda r: (r["test_accuracy"] is None, -(r["test_accuracy"] or 0.0), r["server"]))
    for rank, entry in enumerate(ranking, start=1):
        entry["rank"] = rank
    best = ranking[0] if ranking and ranking[0]["test_accuracy"] is not None else None
    return {"ranking": ranking, "best": best}


def estimate_cost(
    plan: dict[str, Any],
    apply_job: dict[str, Any] | None,
    destroy_job: dict[str, Any] | None,
    work_ended: Any,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The run's estimated actual cost: the servers' lifetime, from the end of apply to the end of
    destroy, at list prices; the part after ``work_ended`` (the servers' last marker) is teardown.
    The servers are the profile of the placement where they started (``placement``)."""
    from gpu_pipeline.cost import run_cost

    variables = {**(plan.get("terraform_variables") or {}), **_placed(placement)}
    if not (apply_job and destroy_job and variables.get("gpu_profile")):
        return None  # nothing was applied, or it was never destroyed: no lifetime to price
    cost = run_cost(
        profile=variables["gpu_profile"],
        vm_count=int(variables.get("vm_count") or 1),
        debug_mode=bool(variables.get("debug_mode")),
        servers_up=apply_job.get("ended_at"),
        work_ended=work_ended or destroy_job.get("started_at"),
        servers_down=destroy_job.get("ended_at"),
    )
    return cost.to_dict() if cost else None


def _placed(placement: dict[str, Any] | None) -> dict[str, Any]:
    """The Terraform variables that the placement's failover changed."""
    return {k: placement[k] for k in ("zone", "gpu_profile") if placement and placement.get(k)}


def price_attempts(plan: dict[str, Any], placement: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report's ``placement``, each failed attempt priced: its network was up ``seconds``; its
    servers never started (IBM does not bill an instance that failed to start)."""
    from gpu_pipeline.cost import hourly_rate

    if not placement:
        return None
    variables = plan.get("terraform_variables") or {}
    attempts = []
    for attempt in placement.get("attempts") or []:
        cost = None
        if attempt.get("outcome") != "succeeded" and attempt.get("seconds") is not None:
            rate = hourly_rate(
                attempt["gpu_profile"],
                int(variables.get("vm_count") or 1),
                debug_mode=bool(variables.get("debug_mode")),
            )
            cost = round((rate.total - rate.servers) * attempt["seconds"] / 3600, 6)
        attempts.append({**attempt, "cost_usd": cost})
    return {**placement, "attempts": attempts}


def write_run_report(
    plan: dict[str, Any] | None,
    *,
    dag_run: Any,
    ti: Any,
    cos_conn_id: str,
    ibm_conn_id: str,
    task_ids: dict[str, str] | None = None,
) -> dict | None:
    """Check for leaks, write the report to ``<prefix>run-report.json`` and return it (to XCom).

    Raises after writing it when anything of the run is still live, or when the leak check itself
    failed (a retry checks again). ``task_ids`` maps the pipeline's task names to their ids in the DAG
    (a task group prefixes them); the report names tasks by the former.
    """
    task_ids = task_ids or {}
    if not plan:
        return None  # validate failed: the run never had a plan, its log says why
    from gpu_pipeline.checkpoints import finish_checkpoints
    from gpu_pipeline.failure_cause import report_why
    from gpu_pipeline.phases import run_phases
    from gpu_pipeline.validation import find_leaks, leak_error
    from ibm_cloud_airflow.hooks.cos import CosHook

    try:
        leaks, leak_failure = find_leaks(plan, ibm_conn_id=ibm_conn_id), None
    except Exception as exc:  # the report is still written; the task fails and retries below
        leaks, leak_failure = None, exc

    cos = CosHook(cos_conn_id=cos_conn_id)
    metrics = {}
    markers = []
    succeeded = []
    for key in plan["marker_keys"]:
        for marker in (key, f"{key.rsplit('/', 1)[0]}/_FAILED"):
            head = cos.head(plan["bucket"], marker)
            if head and head.get("LastModified"):
                markers.append(head["LastModified"])
                succeeded.append(marker == key)
        server_dir = key.rsplit("/", 1)[0]
        data = cos.read_json(plan["bucket"], f"{server_dir}/metrics.json")
        if data is not None:
            metrics[server_dir.rsplit("/", 1)[-1]] = {k: v for k, v in data.items() if k in METRIC_KEYS}
    queued_s = None
    apply_job = ti.xcom_pull(task_ids=task_ids.get("apply", "apply"), key="job")
    placement = price_attempts(plan, ti.xcom_pull(task_ids=task_ids.get("apply", "apply"), key="placement"))
    destroy_job = ti.xcom_pull(task_ids=task_ids.get("destroy", "destroy"), key="job")
    work_ended = max(markers).isoformat() if markers else None
    phases = run_phases(
        run_after=dag_run.run_after,
        run_started=dag_run.start_date,
        cleared=bool(getattr(dag_run, "clear_number", 0)),
        plan_job=ti.xcom_pull(task_ids=task_ids.get("plan", "plan"), key="job"),
        apply_job=apply_job,
        destroy_job=destroy_job,
        work_ended=work_ended,
    )
    # Every awaited marker is a _SUCCESS: the results are final, their checkpoints may go.
    final = bool(succeeded) and len(succeeded) == len(plan["marker_keys"]) and all(succeeded)
    checkpoints = finish_checkpoints(cos, plan, final=final)
    report = build_run_report(
        plan,
        tasks=_task_summary(ti, task_ids),
        queued_s=queued_s,
        outputs=ti.xcom_pull(task_ids=task_ids.get("apply", "apply")),
        metrics=metrics,
        apply_job=apply_job,
        destroy_job=destroy_job,
        leaks=leaks,
        leak_error=None if leak_failure is None else str(leak_failure),
        phases=phases,
        checkpoints=checkpoints,
        cost=estimate_cost(plan, apply_job, destroy_job, work_ended, placement),
        placement=placement,
        recoveries=ti.xcom_pull(
            task_ids=task_ids.get("wait_for_output", "wait_for_output"), key="recoveries"
        ),
    )
    # The error that caused the failure (its first try's), not a later try's: gpu_pipeline/failure_cause.py
    report["why"] = report_why(ti, report["tasks"], task_ids)
    cos.upload_bytes(plan["bucket"], plan["report_key"], json.dumps(report, indent=2, default=str))
    if leak_failure is not None:
        raise leak_failure
    if leaks:
        raise leak_error(plan, leaks)
    return report

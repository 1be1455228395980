"""The run's verdict: fail when any step failed, else announce the trained model as an asset event."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gpu_pipeline.model_asset import model_event_extra

if TYPE_CHECKING:
    from airflow.sdk import Asset


FAILED_STATES = {"failed", "upstream_failed"}


def judge(ti: Any, ids: dict[str, str], *, asset: Asset, outlet_events: Any) -> dict[str, Any]:
    """Raise when a task of the group failed; skip (no event) when no model was trained.

    ``ids`` maps the group's task names to their ids in the DAG.

    On success the model asset's event carries :func:`~gpu_pipeline.model_asset.model_event_extra`.
    """
    others = [task_id for name, task_id in ids.items() if name != "run_verdict"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=others, run_ids=[ti.run_id]).get(ti.run_id, {})
    failed = sorted(task_id for task_id, state in states.items() if state in FAILED_STATES)
    if failed:
        raise AirflowFailException(
            f"A step of this run failed ({', '.join(failed)}); see the first failed task's log."
        )
    plan = ti.xcom_pull(task_ids=ids["validate"])
    report = ti.xcom_pull(task_ids=ids["report"])
    if not plan or plan.get("plan_only") or not report:
        raise AirflowSkipException("A plan-only run trains no model: no asset event.")
    extra = model_event_extra(plan, report)
    outlet_events[asset].extra = extra
    return extra

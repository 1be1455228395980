"""A run's ``why``: the error that caused its failure, in one line.

Each failed task's cause is the XCom ``failure_cause`` (``ibm_cloud_airflow.utils.failure_cause``:
the first try's error, or the one classified as a cause, not a later try's secondary error). The
run's cause is its first failed task's, in the pipeline's order: a later task fails because of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ibm_cloud_airflow.utils.failure_cause import XCOM_KEY

#: The order in which a run's failed tasks explain it.
PIPELINE_ORDER = (
    "validate",
    "approve",
    "create_workspace",
    "plan",
    "apply",
    "wait_for_output",
    "hold_on_failure",
    "destroy",
    "delete_workspace",
    "report",
)


def first_failed(failed: Iterable[str]) -> str | None:
    """The run's first failed task in pipeline order (a task not in it comes last)."""
    order = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return min(failed, key=lambda n: order.get(n, len(order)), default=None)


def run_why(failed: Iterable[str], causes: Mapping[str, Mapping[str, Any] | None]) -> str | None:
    """``"<task>: <cause>"`` for the run's first failed task in pipeline order (None: nothing failed).

    ``failed`` are the pipeline's task names (not prefixed with a group id); ``causes`` maps a name
    to its ``failure_cause`` XCom, None where the task pushed none (its log says why).
    """
    first = first_failed(failed)
    if first is None:
        return None
    cause = (causes.get(first) or {}).get("cause")
    return f"{first}: {cause or 'failed (see its log)'}"


def report_why(ti: Any, tasks: Mapping[str, Mapping[str, Any]], task_ids: Mapping[str, str]) -> str | None:
    """The run report's ``why`` from its tasks (pipeline names -> ``{"state"}``) and their XComs."""
    first = first_failed(name for name, task in tasks.items() if task.get("state") == "failed")
    if first is None:
        return None
    cause = ti.xcom_pull(task_ids=task_ids.get(first, first), key=XCOM_KEY)
    return run_why([first], {first: cause if isinstance(cause, Mapping) else None})

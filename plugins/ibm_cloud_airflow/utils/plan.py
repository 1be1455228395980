"""A run plan: one typed object an upstream task returns, from which the operators take their values.

A DAG's first task (the pipeline's ``validate``) returns a mapping with the fields below; every
provider operator given ``plan_task_id`` takes the fields it needs from that task's XCom itself.
It does so through a template that pulls the one field, so that the value is rendered where the
task runs: on a worker, or in the triggerer for a task that starts there. Values stay typed
(lists, numbers, booleans): the provider's operators render natively
(``render_template_as_native_obj=True`` unless a task says otherwise), and so do their triggers
(:class:`~ibm_cloud_airflow.triggers.native.NativeTemplatesMixin`).
"""

from __future__ import annotations

from typing import Any, TypedDict


class WorkspacePlan(TypedDict, total=False):
    """What the Schematics operators read from a plan."""

    workspace_name: str
    #: adopt this workspace instead of creating one (then it is kept, only its lease released)
    existing_workspace_id: str | None
    workspace_description: str
    region: str
    tags: list[str]
    terraform_variables: dict[str, Any]
    #: Terraform variable -> ``"<conn_id>:password"``-style reference, resolved at run time
    secure_variable_refs: dict[str, str]
    #: an adopted workspace: never deleted, only the run's lease on it released
    keep_workspace: bool
    #: stop after the plan job: apply is skipped
    plan_only: bool


class CosWaitPlan(TypedDict, total=False):
    """What :class:`~ibm_cloud_airflow.sensors.cos.CosKeySensor` reads from a plan."""

    bucket: str
    marker_keys: list[str]
    #: folders whose ``_FAILED`` fails the wait and whose progress counts against stalls
    server_prefixes: list[str]
    stall_timeout_s: float | None
    max_runtime_s: float
    #: keys in ``bucket`` that the awaited work reads and writes (its OpenLineage datasets)
    lineage_inputs: list[str]
    lineage_outputs: list[str]


def plan_field_template(plan_task_id: str, name: str) -> str:
    """A template rendering to field ``name`` of the plan that task ``plan_task_id`` returned.

    ``map_indexes=-1`` asks for the one unmapped value: the triggerer, which renders the fields of
    tasks that start there, can fetch a single XCom but not the all-map-indexes listing. It renders
    to ``None`` when there is no plan (the plan's task failed): the cleanup tasks then find nothing.
    """
    return f"{{{{ (ti.xcom_pull(task_ids='{plan_task_id}', map_indexes=-1) or {{}}).get('{name}') }}}}"


def value_or_plan_template(value: Any, plan_task_id: str | None, name: str) -> Any:
    """What an operator's field holds: ``value`` when given, else the template of the plan's field
    ``name`` (:func:`plan_field_template`, rendered where the task runs), else None."""
    if value is not None or plan_task_id is None:
        return value
    return plan_field_template(plan_task_id, name)


def native_by_default(kwargs: dict[str, Any]) -> dict[str, Any]:
    """An operator's keyword arguments, rendering natively unless the task says otherwise."""
    kwargs.setdefault("render_template_as_native_obj", True)
    return kwargs


def require_type(task_id: str, name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` when it is a ``kind`` (or None), unchanged; else a clear error.

    Nothing is converted: a value of another type means a template rendered it as text (the task
    renders as text), which no conversion could undo reliably.
    """
    if value is None or isinstance(value, kind):
        return value
    from ibm_cloud_airflow.exceptions import IbmCloudConfigError

    raise IbmCloudConfigError(
        f"{task_id}: {name} rendered as {type(value).__name__} {value!r}; the values taken from a "
        "plan are typed: keep the task's render_template_as_native_obj=True (the provider's default)"
    )

"""What the provider's triggers share: typed template values, and XComs written through the Task SDK."""

from __future__ import annotations

from typing import Any

import jinja2


class NativeTemplatesMixin:
    """Render a start-from-trigger task's fields as Python objects, not text.

    The triggerer renders the fields of a task that starts there (``StartTriggerArgs``) with the
    trigger's own Jinja environment, which by default is a text one: a list or a number pulled from
    an XCom would arrive as its text. The provider's operators take typed values from an upstream
    plan (``ibm_cloud_airflow.utils.plan``) and render natively, and so do their triggers.
    """

    # Airflow's templater renders natively when the object (operator or trigger) says so.
    render_template_as_native_obj = True

    def get_template_env(self, dag: Any = None) -> jinja2.Environment:
        from ibm_cloud_airflow.utils.airflow_compat import native_template_env

        return native_template_env()


async def push_xcoms(task_instance: Any, xcoms: dict[str, Any]) -> None:
    """Write a task's XComs from the triggerer, through the Task SDK as a worker would.

    A ``TaskSuccessEvent(xcoms=...)`` would have the triggerer store them itself, and Airflow 3.3
    then stores each value JSON-encoded once more (a worker pulls a dict back as its JSON text).
    Writing them here, before the event, stores them exactly as ``execute_complete`` would.
    ``None`` values are left out, as Airflow leaves out a task's ``None`` return value.
    """
    from asgiref.sync import sync_to_async

    from ibm_cloud_airflow.utils.airflow_compat import xcom_backend

    xcom = xcom_backend()
    ti = task_instance

    def write() -> None:
        for key, value in xcoms.items():
            if value is not None:
                xcom.set(
                    key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index
                )

    await sync_to_async(write, thread_sensitive=False)()


def ends_here(trigger: Any) -> bool:
    """Whether a trigger with ``end_from_trigger`` may end its task itself: on the task's first try.

    Airflow 3.3 keeps a cleared task's old ``end_date`` when a trigger ends it: ``clear_task_instances``
    and ``TaskInstance.defer_task`` leave ``end_date`` as it was, and ``handle_event_submit``
    (``airflow/models/trigger.py``) calls ``TaskInstance.set_state``, which sets
    ``end_date = end_date or now`` (``airflow/models/taskinstance.py``). The UI then shows a negative
    duration. A later try (a clear, a retry) ends on a worker instead, where the execution API's
    ``ti_run`` sets ``end_date=None`` first: one worker start for a try that is rare anyway.
    """
    if not getattr(trigger, "end_from_trigger", False):
        return False
    ti = getattr(trigger, "task_instance", None)
    return ti is None or (getattr(ti, "try_number", 1) or 1) <= 1

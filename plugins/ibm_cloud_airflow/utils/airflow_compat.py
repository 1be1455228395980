"""The one door to Airflow internals: what the provider (and the pipeline) need that Airflow 3.3
offers no public API for, each behind a function of its own.

Public APIs are used wherever they exist; what remains private is imported inside the function
that needs it (this module is imported at DAG parse time). ``tests/ibm_cloud_airflow/utils/
test_airflow_compat.py`` calls every function against the installed Airflow, so an upgrade that
moves or changes one of these internals fails there, loudly, rather than in a run.

* :func:`native_template_env`: Airflow's Jinja environment, rendering to Python objects
  (``airflow.sdk.definitions._internal.templater``; a trigger has no DAG to ask for it).
* :func:`xcom_backend`: the deployment's XCom class, through the ``common.compat`` provider that
  Airflow's own providers use (it ships with airflow-core).
* :func:`current_dag`: the DAG being defined in a ``with DAG(...)`` block
  (``airflow.sdk.definitions._internal.contextmanager.DagContext``).
* :func:`dag_run_details`: a DAG run's state and end, asked of the execution API through the Task
  SDK's supervisor channel (``GetDagRun``; the public ``get_dagrun_state`` gives the state only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import DAG, BaseXCom


def native_template_env() -> jinja2.Environment:
    """Airflow's template environment (its filters, ``StrictUndefined``) rendering Python objects."""
    from airflow.sdk.definitions._internal.templater import create_template_env

    return create_template_env(native=True)


def xcom_backend() -> type[BaseXCom]:
    """The XCom class of this deployment (``[core] xcom_backend``), as a task's ``xcom_push`` uses."""
    from airflow.providers.common.compat.sdk import XCom

    return XCom


def current_dag() -> DAG | None:
    """The DAG of the enclosing ``with DAG(...)`` block (or ``@dag`` function); None outside one."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    return DagContext.get_current()


def dag_run_details(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """``{"state", "end_date"}`` of a DAG run, from inside a task; None when there is no such run.

    Tasks in Airflow 3 cannot reach the metadata DB: this sends the ``GetDagRun`` request the Task
    SDK itself sends for a run's details, answered 404 when the run does not exist.
    """
    from airflow.sdk.api.client import ServerResponseError
    from airflow.sdk.exceptions import AirflowRuntimeError
    from airflow.sdk.execution_time.comms import GetDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    try:
        run = SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))
    except AirflowRuntimeError as err:  # a worker: the supervisor relays the API's error
        if (err.error.detail or {}).get("status_code") == 404:
            return None
        raise
    except ServerResponseError as err:  # dag.test(): the in-process API's error comes as it is
        if err.response.status_code == 404:
            return None
        raise
    return {"state": str(getattr(run.state, "value", run.state)), "end_date": run.end_date}

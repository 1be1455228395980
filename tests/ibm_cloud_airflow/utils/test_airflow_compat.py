"""The Airflow internals the provider uses, each called against the installed Airflow.

Real Airflow throughout (no mock): an upgrade that moves or changes one of these internals fails
here, by name, rather than in a run. A DAG run's details are asked from inside a task that
``dag.test()`` runs, through the same execution API a worker uses.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import pytest

from ibm_cloud_airflow.utils import airflow_compat
from ibm_cloud_airflow.utils.airflow_compat import current_dag, native_template_env, xcom_backend


def test_the_native_template_env_renders_python_objects_with_airflows_filters():
    env = native_template_env()
    assert env.from_string("{{ value }}").render(value=[1, {"a": 2}]) == [1, {"a": 2}]
    assert env.from_string("{{ when | ds }}").render(when=datetime(2026, 1, 2)) == "2026-01-02"
    with pytest.raises(Exception, match="undefined"):  # Airflow's StrictUndefined
        env.from_string("{{ missing.attribute }}").render()


def test_the_xcom_backend_is_the_one_a_task_uses():
    from airflow.sdk import BaseXCom
    from airflow.sdk.execution_time.xcom import XCom

    backend = xcom_backend()
    assert backend is XCom and issubclass(backend, BaseXCom)
    # What push_xcoms and the extra link call.
    assert {"key", "value", "dag_id", "task_id", "run_id", "map_index"} <= set(
        inspect.signature(backend.set).parameters
    )
    assert {"ti_key", "key"} <= set(inspect.signature(backend.get_value).parameters)


def test_the_current_dag_is_the_enclosing_one():
    from airflow.sdk import DAG

    assert current_dag() is None
    with DAG("compat_current_dag", schedule=None) as dag:
        assert current_dag() is dag
    assert current_dag() is None


class _Supervisor:
    """The task process's channel to its supervisor, answering as the execution API does.

    A stand-in only for the channel (a task process has it; a test process does not): the request
    and the answers are Airflow's own message types, so a rename or a new required field fails here.
    """

    def __init__(self, answer):
        self.answer, self.sent = answer, []

    def send(self, msg):
        self.sent.append(msg)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def supervisor(monkeypatch):
    from airflow.sdk.execution_time import task_runner

    # Declared at module level, assigned when a task process starts.
    assert "SUPERVISOR_COMMS" in task_runner.__annotations__

    def install(answer):
        channel = _Supervisor(answer)
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
        return channel

    return install


def test_a_runs_details_are_asked_with_the_task_sdks_own_request(supervisor):
    from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun

    ended = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    fields = DagRunResult.model_fields
    given = {"dag_id": "d", "run_id": "r", "state": "failed", "end_date": ended}
    run = DagRunResult.model_construct(**{**dict.fromkeys(fields), **given})
    channel = supervisor(run)
    assert airflow_compat.dag_run_details("d", "r") == {"state": "failed", "end_date": ended}
    assert channel.sent == [GetDagRun(dag_id="d", run_id="r")]
    assert {"state", "end_date"} <= set(fields)


def test_a_missing_run_is_none_on_a_worker_and_other_errors_are_raised(supervisor):
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    def relayed(status):
        return AirflowRuntimeError(
            ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": status})
        )

    supervisor(relayed(404))
    assert airflow_compat.dag_run_details("d", "gone") is None
    supervisor(relayed(500))
    with pytest.raises(AirflowRuntimeError):
        airflow_compat.dag_run_details("d", "r")


def test_a_missing_run_is_none_in_dag_test(supervisor):
    import httpx
    from airflow.sdk.api.client import ServerResponseError

    request = httpx.Request("GET", "http://in-process/execution/dag-runs/d/gone")
    response = httpx.Response(404, request=request, json={"detail": "not found"})
    error = ServerResponseError.from_response(response)
    assert error is not None and error.response.status_code == 404
    supervisor(error)
    assert airflow_compat.dag_run_details("d", "gone") is None

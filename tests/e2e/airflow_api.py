"""Driving a real Airflow the way users' scripts do: the official Python client (apache-airflow-client).

Shared by the API tests; ``deployment`` and ``api`` (tests/e2e/conftest.py) start one Airflow (the
same deployment as ``make airflow``) per test module.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from scripts.local_run import DAG_ID, DEMO_BUCKET, LOCAL_CONF

# Generous: two shared cores run Airflow, the sandbox and TensorFlow at once.
RUN_TIMEOUT_S = 420
PROMOTE_DAG_ID = "ibm_gpu_promote"


def wait_until(
    what: str, check: Callable[[], Any], timeout: float = RUN_TIMEOUT_S, every: float = 2.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def trigger(api: Any, conf: dict[str, Any], dag_id: str = DAG_ID) -> str:
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.models import TriggerDAGRunPostBody

    run_id = f"api__{uuid.uuid4().hex[:10]}"
    body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf={**LOCAL_CONF, **conf})
    DagRunApi(api).trigger_dag_run(dag_id, body)
    return run_id


def run_state(api: Any, run_id: str, dag_id: str = DAG_ID) -> str | None:
    from airflow_client.client.api.dag_run_api import DagRunApi

    state = DagRunApi(api).get_dag_run(dag_id, run_id).state
    return None if state is None else str(state.value)


def wait_for_run_end(api: Any, run_id: str) -> str:
    def ended() -> str | None:
        state = run_state(api, run_id)
        return state if state in ("success", "failed") else None

    return wait_until(f"run {run_id} to end", ended)


def task_states(api: Any, run_id: str) -> dict[str, str | None]:
    from airflow_client.client.api.task_instance_api import TaskInstanceApi

    tis = TaskInstanceApi(api).get_task_instances(DAG_ID, run_id, limit=100).task_instances
    return {ti.task_id: None if ti.state is None else str(ti.state.value) for ti in tis}


# How long a question must have been waiting before the tests answer it. Airflow 3.3 races when an
# answer comes within a moment of the pause: the LocalExecutor's "success" for the process that
# paused the task can reach the scheduler after the answer has queued the task again, and the
# scheduler then marks the task failed ("finished with state success, but the task instance's
# state attribute is queued"). A person takes longer than this to read the question.
SETTLED_S = 5.0


def wait_for_question(api: Any, run_id: str, task_id: str) -> Any:
    """The task's human-in-the-loop request, once the task has been waiting for an answer a while."""
    from airflow_client.client.api.task_instance_api import TaskInstanceApi

    since: list[float] = []

    def settled() -> bool:
        if task_states(api, run_id).get(task_id) != "awaiting_input":
            since.clear()
            return False
        since[:1] = since[:1] or [time.monotonic()]
        return time.monotonic() - since[0] >= SETTLED_S

    wait_until(f"{task_id} to await input", settled, every=1.0)
    return TaskInstanceApi(api).get_hitl_detail(DAG_ID, run_id, task_id, -1)


def answer(api: Any, run_id: str, task_id: str, option: str) -> None:
    from airflow_client.client.api.task_instance_api import TaskInstanceApi
    from airflow_client.client.models import UpdateHITLDetailPayload

    payload = UpdateHITLDetailPayload(chosen_options=[option], params_input={})
    TaskInstanceApi(api).update_hitl_detail(DAG_ID, run_id, task_id, -1, payload)


def workspace_creates(box: Any) -> int:
    return box.request_counts().get("schematics POST /v1/workspaces", 0)


def read_json(box: Any, key: str) -> Any:
    import ibm_boto3

    creds = box.endpoints["cos_hmac"]
    cos = ibm_boto3.client(
        "s3",
        endpoint_url=box.endpoints["cos"],
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
    )
    return json.loads(cos.get_object(Bucket=DEMO_BUCKET, Key=key)["Body"].read())


def clear(api: Any, run_id: str, task_id: str) -> None:
    """Clear ``task_id`` with its downstream tasks, as the UI's Clear does by default."""
    from airflow_client.client.api.task_instance_api import TaskInstanceApi
    from airflow_client.client.models import ClearTaskInstancesBody, ClearTaskInstancesBodyTaskIdsInner

    body = ClearTaskInstancesBody(
        dag_run_id=run_id,
        task_ids=[ClearTaskInstancesBodyTaskIdsInner(task_id)],
        include_downstream=True,
        include_upstream=False,
        only_failed=False,
        reset_dag_runs=True,
        dry_run=False,
    )
    TaskInstanceApi(api).post_clear_task_instances(DAG_ID, body)


def wait_for_run_state(api: Any, run_id: str, state: str) -> None:
    """Wait until the run is back at work after a clear, then until it ends in ``state``."""
    wait_until(f"run {run_id} to start again", lambda: run_state(api, run_id) not in ("success", "failed"))
    ended = wait_for_run_end(api, run_id)
    assert ended == state, task_states(api, run_id)

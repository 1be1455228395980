"""The pipeline as users drive it: a real Airflow (scheduler, triggerer, api-server, dag-processor)
and Airflow's official Python client (``apache-airflow-client``), against the sandbox.

One Airflow serves the module (it takes a minute to start on two cores). What only a real
scheduler does is tested here: people answering questions in the UI (human-in-the-loop), and the
promote DAG starting by itself on the model asset.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scripts.local_run import DAG_ID, DEMO_BUCKET, LOCAL_CONF

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

# Generous: two shared cores run Airflow, the sandbox and TensorFlow at once.
RUN_TIMEOUT_S = 420
PROMOTE_DAG_ID = "ibm_gpu_promote"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(sandbox, airflow)``: ``make airflow``'s deployment, without a login."""
    from scripts.airflow_ui import local_airflow_ui

    with local_airflow_ui(tmp_path_factory.mktemp("api")) as (box, af):
        af.wait_for_dag(PROMOTE_DAG_ID, timeout_s=300)
        yield box, af


@pytest.fixture(scope="module")
def api(deployment: tuple[Any, Any]) -> Iterator[Any]:
    """An ``airflow_client.client.ApiClient`` logged in as the all-admin SimpleAuthManager user."""
    import airflow_client.client as client
    import httpx

    _, af = deployment
    token = httpx.get(f"{af.base_url}/auth/token", timeout=30).json()["access_token"]
    config = client.Configuration(host=af.base_url, access_token=token)
    with client.ApiClient(config) as api_client:
        yield api_client


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


def wait_for_question(api: Any, run_id: str, task_id: str) -> Any:
    """The task's human-in-the-loop request, once the task waits for an answer."""
    from airflow_client.client.api.task_instance_api import TaskInstanceApi

    wait_until(f"{task_id} to await input", lambda: task_states(api, run_id).get(task_id) == "awaiting_input")
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


def test_a_costly_run_waits_for_approval_then_its_model_is_promoted_by_itself(deployment, api):
    from airflow_client.client.api.asset_api import AssetApi
    from airflow_client.client.api.dag_run_api import DagRunApi

    box, _ = deployment
    creates_before = workspace_creates(box)
    run_id = trigger(api, {"approval_above_usd": 0.01})

    question = wait_for_question(api, run_id, "approve")
    assert question.options == ["Approve", "Reject"]
    assert question.defaults == ["Reject"]  # no answer in time: rejected
    assert "Approve a GPU run of up to" in question.subject
    assert "0.01 USD" in question.body
    # Nothing exists while the run waits.
    assert workspace_creates(box) == creates_before
    assert box.inventory.list() == []

    answer(api, run_id, "approve", "Approve")
    assert wait_for_run_end(api, run_id) == "success", task_states(api, run_id)
    assert box.inventory.list() == []

    # The model asset event, with where the model is and how good it is ...
    events = AssetApi(api).get_asset_events(source_dag_id=DAG_ID, source_run_id=run_id).asset_events
    assert [e.name for e in events] == ["ibm_gpu_workload.model"]
    extra = events[0].extra
    assert extra["model_uri"].endswith("/vm-0/model.keras") and extra["metrics"]["test_accuracy"] > 0.5

    # ... started ibm_gpu_promote by itself, which made this model the champion.
    def promoted() -> bool:
        runs = DagRunApi(api).get_dag_runs(PROMOTE_DAG_ID).dag_runs
        return any(str(r.state.value) == "success" for r in runs if r.state is not None)

    wait_until("ibm_gpu_promote to succeed", promoted)
    champion = read_json(box, f"{extra['champion_prefix']}champion.json")
    assert champion["run_id"] == run_id
    assert champion["metrics"]["test_accuracy"] == extra["metrics"]["test_accuracy"]
    assert "no champion yet" in champion["reason"]
    champion_events = AssetApi(api).get_asset_events(source_dag_id=PROMOTE_DAG_ID).asset_events
    assert [e.name for e in champion_events] == ["ibm_gpu_workload.champion"]


def test_a_rejected_run_creates_nothing_and_says_who_rejected_it(deployment, api):
    box, _ = deployment
    creates_before = workspace_creates(box)
    run_id = trigger(api, {"approval_above_usd": 0.01})

    wait_for_question(api, run_id, "approve")
    answer(api, run_id, "approve", "Reject")

    assert wait_for_run_end(api, run_id) == "failed"
    states = task_states(api, run_id)
    assert states["approve"] == "failed", states
    assert states["create_workspace"] == "upstream_failed", states
    assert states["destroy"] == "success" and states["report"] == "success", states
    assert workspace_creates(box) == creates_before
    assert box.inventory.list() == []


def test_a_failed_run_offers_destroy_now_or_keep_and_destroys_on_request(deployment, api):
    box, _ = deployment
    box.faults.set(["workload_fails"])
    try:
        run_id = trigger(api, {"keep_on_failure_minutes": 30})
        question = wait_for_question(api, run_id, "hold_on_failure")
    finally:
        box.faults.set([])
    assert question.options == ["Destroy now", "Keep for 30 minutes"]
    assert question.defaults == ["Destroy now"]  # no answer in time: destroyed
    assert "wait_for_output" in question.subject
    assert box.inventory.list() != []  # the servers are still up while the question waits

    answer(api, run_id, "hold_on_failure", "Destroy now")
    assert wait_for_run_end(api, run_id) == "failed"
    states = task_states(api, run_id)
    assert states["wait_for_output"] == "failed" and states["hold_on_failure"] == "success", states
    assert states["destroy"] == "success" and states["run_verdict"] == "failed", states
    assert box.inventory.list() == []

"""The pipeline as users drive it: a real Airflow (scheduler, triggerer, api-server, dag-processor)
and Airflow's official Python client (``apache-airflow-client``), against the sandbox.

What only a real scheduler does is tested here: people answering questions in the UI (human-in-the-loop),
and the promote DAG starting by itself on the model asset.
"""

from __future__ import annotations

import pytest

from scripts.local_run import DAG_ID
from tests.e2e.airflow_api import (
    PROMOTE_DAG_ID,
    answer,
    read_json,
    task_states,
    trigger,
    wait_for_question,
    wait_for_run_end,
    wait_until,
    workspace_creates,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]


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

    # The model asset event started ibm_gpu_promote by itself. Wait for that run to succeed before
    # listing events: Airflow 3.3.2 answers 500 for an event whose created run has not started yet
    # (apache/airflow#71360, fixed after 3.3.2), as a user's UI would for that moment.
    def promoted() -> bool:
        runs = DagRunApi(api).get_dag_runs(PROMOTE_DAG_ID).dag_runs
        return any(str(r.state.value) == "success" for r in runs if r.state is not None)

    wait_until("ibm_gpu_promote to succeed", promoted)

    # The event says where the model is and how good it is ...
    events = AssetApi(api).get_asset_events(source_dag_id=DAG_ID, source_run_id=run_id).asset_events
    assert [e.name for e in events] == ["ibm_gpu_workload.model"]
    extra = events[0].extra
    assert extra["model_uri"].endswith("/vm-0/model.keras") and extra["metrics"]["test_accuracy"] > 0.5
    assert [r.dag_id for r in events[0].created_dagruns] == [PROMOTE_DAG_ID]

    # ... and the promote run made this model the champion.
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

"""The two questions people answer in the UI, down to what each answer does.

The waiting itself (Airflow 3.3's ``awaiting_input``, the UI, the REST API) is tested with a real
Airflow in tests/e2e/test_airflow_api.py and tests/ui; here the answers, as Airflow resumes the
task with them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from gpu_pipeline.hold import DESTROY_NOW, CostApprovalOperator, HoldOnFailureOperator
from gpu_pipeline.params import PARAMS


def answer(option: str, user: dict | None = None) -> dict:
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": datetime.now(UTC),
        "responded_by_user": user,
    }


def params(**overrides) -> dict:
    return {**{name: p.value for name, p in PARAMS.items()}, **overrides}


def test_a_run_within_the_threshold_asks_nobody():
    op = CostApprovalOperator(task_id="approve")
    assert op.execute({"params": params(approval_above_usd=1000.0)}) is None
    assert op.execute({"params": params(approval_above_usd=None)}) is None


def test_an_approval_lets_the_run_go_on_and_a_rejection_fails_it_saying_who():
    op = CostApprovalOperator(task_id="approve")
    assert op.execute_complete({}, answer("Approve", {"id": "7", "name": "ada"}))["chosen_options"] == [
        "Approve"
    ]
    with pytest.raises(AirflowFailException, match="rejected by ada; nothing was created"):
        op.execute_complete({}, answer("Reject", {"id": "7", "name": "ada"}))
    # No answer in time: the scheduler applies the default, Reject, with no user.
    with pytest.raises(AirflowFailException, match="rejected by nobody"):
        op.execute_complete({}, answer("Reject"))


def hold(minutes: int = 30) -> HoldOnFailureOperator:
    op = HoldOnFailureOperator(task_id="hold_on_failure", watched_task_ids=["apply", "wait_for_output"])
    op.minutes, op.decision_minutes = minutes, 10  # as rendered from the run's params
    return op


def test_destroy_now_goes_straight_to_cleanup():
    assert hold().execute_complete({}, answer(DESTROY_NOW, {"id": "1", "name": "bo"})) is None


def test_keep_holds_the_servers_for_the_run_s_minutes_then_cleanup_proceeds():
    op = hold(minutes=30)
    before = datetime.now(UTC)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete({}, answer("Keep for 30 minutes", {"id": "1", "name": "bo"}))
    trigger = deferred.value.trigger
    assert before + timedelta(minutes=30) <= trigger.moment <= datetime.now(UTC) + timedelta(minutes=30)
    assert deferred.value.method_name == "hold_over"
    assert op.hold_over({}) is None


def test_an_answer_that_was_not_offered_is_refused():
    with pytest.raises(ValueError, match="not in"):
        hold(minutes=30).execute_complete({}, answer("Keep for 240 minutes"))


def test_no_hold_asked_for_means_no_question():
    assert hold(minutes=0).execute({"ti": None}) is None

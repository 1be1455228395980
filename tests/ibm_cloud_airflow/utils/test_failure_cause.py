"""The cause of a task's failure is its first try's error, or the one IBM's errors make a cause.

The choice (unit), and the Schematics job operators: each failed try is recorded in the task's
``task_state_store`` while the try runs; the last try's error is led and ended by the cause, which
is also pushed as the XCom ``failure_cause``.
"""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException

from ibm_cloud_airflow.exceptions import IbmCloudApiError
from ibm_cloud_airflow.operators.schematics import SchematicsApplyOperator
from ibm_cloud_airflow.utils.failure_cause import (
    STORE_KEY,
    XCOM_KEY,
    capacity_reason,
    classify,
    error_text,
    explain_failure,
    root_cause,
)
from ibm_cloud_airflow.utils.schematics_job import JobOutcome

from ..conftest import FakeStore, make_context

REATTACH = "a retry re-attaches to the job"
LOCKED = "Waiting for Schematics apply job a1 failed: 409 workspace locked; "
CAPACITY = (
    '[ERROR] Instance (0717-x) went into failed state during the operation ([{"code": '
    '"cannot_start_capacity", "message": "Can\'t start instance because resource capacity is unavailable."}])'
)
QUOTA = (
    "CreateInstanceWithContext failed: Creating a new instance will put the user over quota (instance-gpu)"
)


def test_capacity_and_quota_errors_are_causes():
    assert classify(CAPACITY) == "capacity" and capacity_reason(CAPACITY) == "cannot_start_capacity"
    assert classify("status reason cannot_start_placement_group") == "capacity"
    assert classify(QUOTA + " (status 400, code over_quota)") == "quota"
    assert classify("reserved IP r006-y is already bound to 0717-x-nic0") is None
    assert capacity_reason("409 workspace locked") is None


@pytest.mark.parametrize(
    ("errors", "cause"),
    [
        (["first", "second", "third"], "first"),  # nothing classified: the first try's error
        (["503 Service Unavailable", CAPACITY, "already bound"], CAPACITY),  # the classified one
        ([QUOTA, CAPACITY], QUOTA),  # the first of the classified ones
        (["", "only"], "only"),  # a try without an error does not count
    ],
)
def test_the_cause_is_the_first_classified_error_else_the_first(errors, cause):
    assert root_cause([{"try": i + 1, "error": e} for i, e in enumerate(errors)])["error"] == cause
    assert root_cause([]) is None


def test_an_error_is_its_first_line():
    assert error_text(RuntimeError("\n  boom: it broke\nLast lines:\nmore")) == "boom: it broke"
    assert error_text(KeyError()) == "KeyError"


def _try(store: FakeStore, number: int, event: dict) -> tuple[Exception, dict]:
    ctx = make_context(store)
    ctx["ti"].try_number = number
    op = SchematicsApplyOperator(task_id="apply", workspace_id="ws", poll_interval=0.01)
    with pytest.raises(Exception) as err:
        op.execute_complete(ctx, event)
    pushed = {c.kwargs["key"]: c.kwargs["value"] for c in ctx["ti"].xcom_push.call_args_list}
    return err.value, pushed[XCOM_KEY]


def outcome(status: str, **kw) -> dict:
    return JobOutcome(command="apply", status=status, workspace_id="ws", activity_id="a1", **kw).to_event()


def test_the_operators_last_error_is_led_and_ended_by_the_first_tries_cause():
    store = FakeStore()
    first, pushed = _try(store, 1, outcome("FAILED", log_tail=["Apply...", f"Error: {CAPACITY}"]))
    assert str(first).splitlines()[0].endswith(f"ended FAILED: {CAPACITY}. Last lines of the job log:")
    assert str(first).splitlines()[-1] == f"The cause of this failure: {str(first).splitlines()[0]}"
    assert pushed["kind"] == "capacity" and pushed["try"] == 1

    second, _ = _try(store, 2, outcome("FAILED", log_tail=["Error: reserved IP r006-y is already bound"]))
    third, pushed = _try(store, 3, outcome("ERROR", message="409 workspace locked"))

    cause = str(first).splitlines()[0]
    assert isinstance(third, IbmCloudApiError)  # the same kind of error as before, its text led by the cause
    lines = str(third).splitlines()
    assert lines[0].startswith(f"{cause} (the cause, from try 1; this try: Waiting for Schematics apply job")
    assert lines[-1] == f"The cause of this failure: {cause}"  # the last line of the task's log
    assert "already bound" in str(second).splitlines()[0]  # try 2 was led by the cause too...
    assert str(second).splitlines()[0].startswith(cause)
    assert pushed == {
        "cause": cause,
        "try": 1,
        "kind": "capacity",
        "tries": [
            {"try": 1, "error": cause},
            {"try": 2, "error": str(second).splitlines()[0].split("this try: ", 1)[1][:-1]},
            {"try": 3, "error": f"{LOCKED}{REATTACH}"},
        ],
    }  # fmt: skip
    assert [t["try"] for t in store.data[STORE_KEY]] == [1, 2, 3]


def test_a_single_failure_is_unchanged_but_for_its_last_line():
    error, pushed = _try(FakeStore(), 1, outcome("ERROR", message="503"))
    assert str(error) == "Waiting for Schematics apply job a1 failed: 503; a retry re-attaches to the job"
    assert isinstance(error, AirflowException) and pushed["cause"] == str(error)


def test_the_failure_callback_adds_the_exception_of_a_try_that_recorded_nothing():
    store = FakeStore()
    store.set(STORE_KEY, [{"try": 1, "error": CAPACITY}])
    ctx = make_context(store)
    ctx["ti"].try_number = 2
    ctx["exception"] = RuntimeError("workspace locked\nmore")
    value = explain_failure(ctx)
    assert value["cause"] == CAPACITY and [t["error"] for t in value["tries"]] == [
        CAPACITY,
        "workspace locked",
    ]
    ctx["ti"].xcom_push.assert_called_once_with(key=XCOM_KEY, value=value)
    assert explain_failure({"ti": None, "exception": None}) is None

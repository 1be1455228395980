"""Clearing a failed task with its downstream tasks recovers the run, as Airflow users recover.

A real Airflow and the official client (``clearTaskInstances``, the UI's Clear with its default of
downstream tasks). Each test makes one task fail with a sandbox fault or a broken prerequisite,
lets the run end failed (its cleanup deletes the servers and the workspace), removes the cause,
clears the task, and checks that the run succeeds, that nothing is left, and that the run never
held more than one set of resources at a time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.airflow_api import (
    answer,
    clear,
    task_states,
    trigger,
    wait_for_question,
    wait_for_run_end,
    wait_for_run_state,
    workspace_creates,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]


@contextmanager
def most_alive(box: Any) -> Iterator[dict[str, int]]:
    """The most VPCs and servers alive at once while the block runs (sampled every 0.2 s)."""
    peak = {"ibm_is_vpc": 0, "ibm_is_instance": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            for kind in peak:
                peak[kind] = max(peak[kind], len(box.inventory.list(kind=kind)))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def recovered(box: Any, api: Any, run_id: str, task_id: str) -> None:
    """Clear ``task_id`` and its downstream tasks; the run must succeed with one VPC at a time."""
    with most_alive(box) as peak:
        clear(api, run_id, task_id)
        wait_for_run_state(api, run_id, "success")
    assert peak == {"ibm_is_vpc": 1, "ibm_is_instance": 1}, peak
    assert box.inventory.list() == []
    states = task_states(api, run_id)
    assert states["run_verdict"] == "success" and states["report"] == "success", states


def failed_at(api: Any, run_id: str, task_id: str) -> dict[str, Any]:
    assert wait_for_run_end(api, run_id) == "failed"
    states = task_states(api, run_id)
    assert states[task_id] == "failed", states
    return states


@contextmanager
def faults(box: Any, spec: Any) -> Iterator[None]:
    box.faults.set(spec)
    try:
        yield
    finally:
        box.faults.set([])


def test_validate_after_the_connection_is_fixed(deployment, api):
    from airflow_client.client.api.connection_api import ConnectionApi
    from airflow_client.client.models import ConnectionBody

    box, _ = deployment
    connections = ConnectionApi(api)
    cos = connections.get_connection("ibm_cos_default")
    extra = json.loads(cos.extra)

    def set_extra(value: dict) -> None:
        body = ConnectionBody(
            connection_id=cos.connection_id, conn_type=cos.conn_type, extra=json.dumps(value)
        )
        connections.patch_connection(cos.connection_id, body, update_mask=["extra"])

    set_extra({k: v for k, v in extra.items() if k != "instance_crn"})  # keyless access needs it
    try:
        run_id = trigger(api, {})
        failed_at(api, run_id, "validate")
    finally:
        set_extra(extra)
    recovered(box, api, run_id, "validate")


def test_approve_after_a_rejection(deployment, api):
    box, _ = deployment
    run_id = trigger(api, {"approval_above_usd": 0.01})
    wait_for_question(api, run_id, "approve")
    answer(api, run_id, "approve", "Reject")
    failed_at(api, run_id, "approve")

    clear(api, run_id, "approve")
    wait_for_question(api, run_id, "approve")  # asked again
    with most_alive(box):
        answer(api, run_id, "approve", "Approve")
        assert wait_for_run_end(api, run_id) == "success", task_states(api, run_id)
    assert box.inventory.list() == []


def test_plan_after_the_cleanup_deleted_the_workspace(deployment, api):
    box, _ = deployment
    with faults(box, ["plan_fails"]):
        run_id = trigger(api, {})
        states = failed_at(api, run_id, "plan")
    assert states["delete_workspace"] == "success", states  # the workspace is gone
    creates = workspace_creates(box)
    recovered(box, api, run_id, "plan")
    assert workspace_creates(box) == creates + 1  # plan created it again, once

    # The run succeeded; clearing its first Schematics task runs everything again, just as cleanly.
    recovered(box, api, run_id, "create_workspace")


def test_apply_after_no_zone_had_capacity(deployment, api):
    box, _ = deployment
    with faults(box, {"no_capacity": {"zones": "all"}}):
        run_id = trigger(api, {"placements": [{"zone": "us-south-1"}]})
        failed_at(api, run_id, "apply")
    recovered(box, api, run_id, "apply")


def test_wait_for_output_after_the_workload_failed(deployment, api):
    box, _ = deployment
    with faults(box, ["workload_fails"]):
        run_id = trigger(api, {})
        failed_at(api, run_id, "wait_for_output")
    recovered(box, api, run_id, "wait_for_output")

    # Cleanup tasks are idempotent: clearing the destroy of a finished run finds nothing to do.
    creates = workspace_creates(box)
    recovered_cleanup = clear(api, run_id, "destroy")
    assert recovered_cleanup is None
    wait_for_run_state(api, run_id, "success")
    assert workspace_creates(box) == creates and box.inventory.list() == []

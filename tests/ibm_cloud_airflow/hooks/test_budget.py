"""The shared Schematics request budget: across processes, by tier, and without blocking the triggerer."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
from unittest import mock

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudApiError
from ibm_cloud_airflow.hooks.base import RetryPolicy
from ibm_cloud_airflow.hooks.budget import POLL, TEARDOWN, WORK, BudgetSpec, RequestBudget

# The sandbox's rate_limited fault: 4 requests per 3 s per user (Schematics: 50 per minute).
LIMIT, WINDOW_S = 4, 3.0


def _list_workspaces(queue, calls: int) -> None:
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook

    hook = SchematicsHook(retry_policy=RetryPolicy(max_attempts=1))  # a 429 raises at once
    errors = 0
    for _ in range(calls):
        try:
            hook.list_workspaces()
        except IbmCloudApiError:
            errors += 1
    queue.put(errors)


def _run_processes(sandbox, monkeypatch, tmp_path, per_minute: int) -> int:
    env = sandbox.airflow_connections()
    conn = json.loads(env["AIRFLOW_CONN_IBM_CLOUD_DEFAULT"])
    conn["extra"].update(
        rate_limit_per_minute=per_minute, rate_limit_window_s=WINDOW_S, budget_dir=str(tmp_path / "budget")
    )
    monkeypatch.setenv("AIRFLOW_CONN_IBM_CLOUD_DEFAULT", json.dumps(conn))
    sandbox.set_faults({"rate_limited": {"limit": LIMIT, "window_s": WINDOW_S}})
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_list_workspaces, args=(queue, 4)) for _ in range(3)]
    for proc in procs:
        proc.start()
    errors = sum(queue.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=10)
    return errors


def test_processes_sharing_an_api_key_never_meet_a_429(sandbox, monkeypatch, tmp_path):
    started = time.monotonic()
    assert _run_processes(sandbox, monkeypatch, tmp_path, per_minute=LIMIT) == 0
    # 12 requests at 4 per window cannot have been sent faster than two more windows.
    assert time.monotonic() - started >= 2 * WINDOW_S


def test_without_the_budget_the_same_processes_are_throttled(sandbox, monkeypatch, tmp_path):
    assert _run_processes(sandbox, monkeypatch, tmp_path, per_minute=0) > 0


def test_polls_cannot_take_the_slots_that_teardown_needs(tmp_path):
    budget = RequestBudget(BudgetSpec("tiers", 10, 30.0, tmp_path), max_wait_s=0.2)
    for _ in range(budget.spec.tier_limit(POLL)):  # 6 of 10
        budget.acquire(POLL)
    with pytest.raises(IbmCloudApiError, match="No Schematics request budget for a poll request"):
        budget.acquire(POLL)
    budget.acquire(WORK)
    budget.acquire(WORK)  # polls and work together may use 8 of 10
    with pytest.raises(IbmCloudApiError, match="work request"):
        budget.acquire(WORK)
    budget.acquire(TEARDOWN)
    budget.acquire(TEARDOWN)  # teardown may use all 10
    with pytest.raises(IbmCloudApiError, match="teardown request"):
        budget.acquire(TEARDOWN)


async def test_waiting_for_the_budget_does_not_block_the_event_loop(tmp_path):
    budget = RequestBudget(BudgetSpec("async", 2, 0.5, tmp_path))  # 2 per 1.5 s with the margin
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    for _ in range(4):  # the last two wait for the next window
        await budget.acquire_async(POLL)
    waited = time.monotonic() - started
    task.cancel()
    assert waited >= 0.9
    assert ticks >= 0.5 * waited / 0.05  # the loop kept running while the budget waited


class RecordingBudget:
    """Stands in for RequestBudget: records the slots taken, never waits."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    def acquire(self, tier: str) -> None:
        self.taken.append(tier)

    async def acquire_async(self, tier: str) -> None:
        self.taken.append(f"async {tier}")


@pytest.fixture
def metered_hook():
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook

    hook = SchematicsHook(sleep=lambda s: None)
    hook.budget = RecordingBudget()  # replaces the cached property: no connection, no SQLite
    hook.__dict__["client"] = mock.MagicMock(name="SchematicsV1")
    return hook


class TestPrepaidSlot:
    def test_the_prepaid_slot_pays_for_the_first_request_only(self, metered_hook):
        hook = metered_hook
        prepaid = hook.with_prepaid_slot()
        prepaid._call("a", lambda: "a", tier=POLL)
        prepaid._call("b", lambda: "b", tier=TEARDOWN)
        assert hook.budget.taken == [TEARDOWN]
        hook._call("c", lambda: "c", tier=POLL)
        assert hook.budget.taken == [TEARDOWN, POLL]

    def test_an_unused_slot_does_not_pay_for_a_later_request(self, metered_hook):
        hook = metered_hook
        hook.with_prepaid_slot()
        hook._call("a", lambda: "a")
        assert hook.budget.taken == [WORK]

    def test_unmetered_requests_leave_the_slot_alone(self, metered_hook):
        hook = metered_hook
        prepaid = hook.with_prepaid_slot()
        prepaid._call("IAM token request", lambda: "t", metered=False)
        prepaid._call("a", lambda: "a")
        assert hook.budget.taken == []

    def test_a_retry_takes_a_slot_of_its_own(self, metered_hook):
        from ..conftest import api_error

        hook = metered_hook
        outcomes = iter([api_error(503), "ok"])

        def send():
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        assert hook.with_prepaid_slot()._call("a", send, tier=POLL) == "ok"
        assert hook.budget.taken == [POLL]

    def test_the_slot_belongs_to_the_copy_and_the_copy_shares_the_rest(self, metered_hook):
        hook = metered_hook
        prepaid = hook.with_prepaid_slot()
        other = threading.Thread(target=hook._call, args=("other thread", lambda: "x"))
        other.start()
        other.join()
        assert hook.budget.taken == [WORK]  # the hook itself waited for its own slot
        prepaid._call("the copy", lambda: "y")
        assert hook.budget.taken == [WORK]
        assert (prepaid.client, prepaid.budget) == (hook.client, hook.budget)

    async def test_the_async_hook_waits_on_the_loop_and_prepays_the_call(self, metered_hook):
        from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook

        hook = metered_hook
        hook.client.get_workspace_activity.return_value.get_result.return_value = {"status": "INPROGRESS"}
        async_hook = SchematicsAsyncHook()
        async_hook._hook = hook
        assert await async_hook.get_activity("ws", "act") == {"status": "INPROGRESS"}
        assert await async_hook.stop_activity("ws", "act", timeout=5) is True
        assert hook.budget.taken == ["async poll", "async teardown"]  # no second slot in the call
        hook.get_activity("ws", "act")  # the slots were used up: a plain call waits for its own
        assert hook.budget.taken == ["async poll", "async teardown", POLL]

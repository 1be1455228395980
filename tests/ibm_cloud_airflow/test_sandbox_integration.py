"""The provider against the local IBM Cloud sandbox: real SDKs over HTTP, nothing mocked.

Covers the deferred path (trigger ``run()`` driven with asyncio), re-attach after a simulated worker
restart, the 429/5xx/409 faults, short-lived IAM tokens, and Terraform faults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from ibm_cloud_airflow.hooks import schematics as schematics_hook_module
from ibm_cloud_airflow.hooks.base import RetryPolicy
from ibm_cloud_airflow.hooks.cos import CosHook
from ibm_cloud_airflow.hooks.schematics import SchematicsHook
from ibm_cloud_airflow.hooks.vpc import VpcHook
from ibm_cloud_airflow.operators.schematics import (
    SchematicsApplyOperator,
    SchematicsDestroyOperator,
    SchematicsPlanOperator,
)
from ibm_cloud_airflow.triggers.cos import CosKeyTrigger
from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger
from ibm_cloud_airflow.utils.run_identity import run_slug

from .conftest import FakeStore, make_context, named_for

pytestmark = pytest.mark.sandbox

TF = Path(__file__).parent / "fixtures" / "tf_small"
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")


@pytest.fixture(autouse=True)
def fast_lock_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operators build hooks with the default RetryPolicy; poll a locked workspace every 0.5 s here."""
    monkeypatch.setattr(schematics_hook_module, "RetryPolicy", partial(RetryPolicy, lock_poll_s=0.5))


def start_box(factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> Any:
    """A sandbox (no rate limit unless asked) whose connections are set as ``AIRFLOW_CONN_*``."""
    sbx = factory(**{"rate_limit_per_min": None, "resource_delay_s": 0.01, **kwargs})
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    return sbx


@pytest.fixture
def box(sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    return start_box(sandbox_factory, monkeypatch)


def new_workspace(hook: SchematicsHook, name: str, **variables: Any) -> tuple[str, str]:
    slug = run_slug("provider_tests", name)
    ws = hook.create_workspace(
        f"airflow-{slug}", TF, {"run_id": slug, **variables}, tags=[f"airflow-run:{slug}"]
    )
    return ws["id"], slug


def wait_job(hook: SchematicsHook, ws: str, aid: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = hook.get_activity(ws, aid)["status"]
        if status in TERMINAL:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {aid} did not finish")


def jobs_named(hook: SchematicsHook, ws: str, name: str) -> list[dict[str, Any]]:
    return [a for a in hook.list_activities(ws) if a.get("name") == name]


def run_trigger(trigger: Any) -> dict[str, Any]:
    async def first_event() -> Any:
        return await trigger.run().__anext__()

    return asyncio.run(asyncio.wait_for(first_event(), 60)).payload


@pytest.fixture
def hook(box: Any) -> Iterator[SchematicsHook]:
    yield SchematicsHook()


def test_lifecycle_idempotence_and_leak_check(box: Any, hook: SchematicsHook) -> None:
    ws, slug = new_workspace(hook, "lifecycle", vpc_count=2)
    again = hook.create_workspace(f"airflow-{slug}", TF, {"run_id": slug, "vpc_count": 2})
    assert again["id"] == ws  # found by name, not created twice
    assert wait_job(hook, ws, hook.plan(ws)) == "COMPLETED"
    assert wait_job(hook, ws, hook.apply(ws)) == "COMPLETED"
    assert hook.get_outputs(ws)["vpc_name"] == f"{slug}-vpc-0"
    found = VpcHook().find_resources(named_for(slug))
    assert sorted(r["name"] for r in found) == [f"{slug}-vpc-0", f"{slug}-vpc-1"]
    assert VpcHook().find_resources(named_for(run_slug("provider_tests", "someone-else"))) == []
    assert wait_job(hook, ws, hook.destroy(ws)) == "COMPLETED"
    assert VpcHook().find_resources(named_for(slug)) == []
    assert hook.delete_workspace(ws) is True
    assert hook.delete_workspace(ws) is False  # already gone = success
    assert hook.find_workspace_by_name(f"airflow-{slug}") is None
    assert hook.stop_activity(ws, "0" * 32) is False


def test_trigger_run_streams_log_and_completes(box: Any, hook: SchematicsHook, capsys: Any) -> None:
    ws, _ = new_workspace(hook, "trigger")
    aid = hook.plan(ws)
    event = run_trigger(
        SchematicsJobTrigger(
            "plan", workspace_id=ws, activity_id=aid, poll_interval=0.1, deadline=time.time() + 60
        )
    )
    assert event["status"] == "COMPLETED" and event["summary"]["status"] == "COMPLETED"
    assert event["log_tail"]
    out = capsys.readouterr().out
    assert out.count("Plan: 1 to add, 0 to change, 0 to destroy.") == 1  # each log line once


def test_trigger_on_kill_stops_job(
    sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    start_box(sandbox_factory, monkeypatch, resource_delay_s=1.0)
    hook = SchematicsHook()
    ws, _ = new_workspace(hook, "kill", vpc_count=5)
    aid = hook.apply(ws)
    trigger = SchematicsJobTrigger("apply", workspace_id=ws, activity_id=aid, poll_interval=0.1)
    trigger._job = trigger._new_job()  # as run() makes it
    asyncio.run(trigger.on_kill())
    assert wait_job(hook, ws, aid) == "STOPPED"


def test_reattach_after_worker_restart_deferred(
    sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The apply outlives both operators' first checks (as IBM's jobs do), so both defer. Polls every
    # second: each request takes a slot of the Schematics request budget (45 a minute).
    start_box(sandbox_factory, monkeypatch, resource_delay_s=0.3, faults={"slow_jobs": {"seconds": 4}})
    hook = SchematicsHook()
    ws, _ = new_workspace(hook, "reattach", vpc_count=4)
    store = FakeStore()
    apply = partial(SchematicsApplyOperator, task_id="apply", workspace_id=ws, poll_interval=1)
    with pytest.raises(TaskDeferred) as first:
        apply().execute(make_context(store))
    # The worker dies while deferred; the retry runs a *new* operator object with the same state store.
    with pytest.raises(TaskDeferred) as second:
        apply().execute(make_context(store))
    assert second.value.trigger.activity_id == first.value.trigger.activity_id
    event = run_trigger(second.value.trigger)
    op = SchematicsApplyOperator(task_id="apply", workspace_id=ws)
    outputs = op.execute_complete(make_context(store), event, **second.value.kwargs)
    assert outputs["vpc_id"].startswith("r006-")
    # A third run (e.g. a cleared/retried task after success) returns the outputs without a new apply.
    assert SchematicsApplyOperator(task_id="apply", workspace_id=ws).execute(make_context(store)) == outputs
    assert len(jobs_named(hook, ws, "APPLY")) == 1


def test_reattach_sync_mode(box: Any, hook: SchematicsHook) -> None:
    ws, _ = new_workspace(hook, "reattach-sync")
    store = FakeStore()
    ctx = make_context(store)
    out1 = SchematicsApplyOperator(
        task_id="apply", workspace_id=ws, deferrable=False, poll_interval=0.1
    ).execute(ctx)
    out2 = SchematicsApplyOperator(
        task_id="apply", workspace_id=ws, deferrable=False, poll_interval=0.1
    ).execute(ctx)
    assert out1 == out2
    assert len(jobs_named(hook, ws, "APPLY")) == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"api_errors": {"count": 4}},
        {"rate_limited": {"limit": 10, "window_s": 2}},
        {"workspace_locked": {"seconds": 1.5}},
    ],
    ids=["5xx", "429", "409"],
)
def test_api_faults_are_survived_without_duplicate_jobs(box: Any, hook: SchematicsHook, faults: dict) -> None:
    box.set_faults(faults)
    start = time.monotonic()
    ws, slug = new_workspace(hook, "faults-" + next(iter(faults)))
    ctx = make_context(FakeStore())
    SchematicsPlanOperator(task_id="plan", workspace_id=ws, deferrable=False, poll_interval=0.2).execute(ctx)
    outputs = SchematicsApplyOperator(
        task_id="apply", workspace_id=ws, deferrable=False, poll_interval=0.2
    ).execute(make_context(FakeStore()))
    assert outputs["vpc_name"] == f"{slug}-vpc-0"
    SchematicsDestroyOperator(
        task_id="destroy", workspace_id=ws, deferrable=False, poll_interval=0.2
    ).execute(make_context(FakeStore()))
    assert [len(jobs_named(hook, ws, n)) for n in ("PLAN", "APPLY", "DESTROY")] == [1, 1, 1]
    assert hook.delete_workspace(ws)
    assert time.monotonic() - start < 60
    assert VpcHook().find_resources(named_for(slug)) == []


def test_no_duplicate_jobs_under_5xx(box: Any, hook: SchematicsHook) -> None:
    ws, _ = new_workspace(hook, "dup-5xx")
    box.set_faults({"api_errors": {"count": 4, "codes": [502, 500]}})
    for submit in (hook.plan, hook.apply, hook.destroy):
        assert wait_job(hook, ws, submit(ws)) == "COMPLETED"
    box.set_faults([])
    assert [len(jobs_named(hook, ws, n)) for n in ("PLAN", "APPLY", "DESTROY")] == [1, 1, 1]


def test_short_tokens_mid_job(sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    box = start_box(sandbox_factory, monkeypatch, resource_delay_s=0.8, faults={"short_tokens": {"ttl": 2}})
    hook = SchematicsHook()
    ws, slug = new_workspace(hook, "short-tokens", vpc_count=5)
    outputs = SchematicsApplyOperator(
        task_id="apply", workspace_id=ws, deferrable=False, poll_interval=0.3
    ).execute(make_context(FakeStore()))
    assert outputs["vpc_name"] == f"{slug}-vpc-0"
    # deferred path too: the trigger's polling outlives several tokens
    store = FakeStore()
    with pytest.raises(TaskDeferred) as deferred:
        SchematicsDestroyOperator(task_id="destroy", workspace_id=ws, poll_interval=0.3).execute(
            make_context(store)
        )
    assert run_trigger(deferred.value.trigger)["status"] == "COMPLETED"
    counts = box.request_counts()
    assert counts["iam POST /identity/token"] >= 3  # tokens were renewed during the jobs
    assert VpcHook().find_resources(named_for(slug)) == []


def test_plan_failure_fails_without_retry_with_log_tail(box: Any, hook: SchematicsHook) -> None:
    ws, _ = new_workspace(hook, "plan-fails")
    box.set_faults(["plan_fails"])
    op = SchematicsPlanOperator(task_id="plan", workspace_id=ws, deferrable=False, poll_interval=0.1)
    with pytest.raises(AirflowFailException) as err:
        op.execute(make_context(FakeStore()))
    assert "ended FAILED" in str(err.value) and "Last lines of the job log" in str(err.value)
    # the first line carries Terraform's error, for one-line summaries (the demo's "why")
    assert "ended FAILED: Invalid provider configuration" in str(err.value).splitlines()[0]


def test_apply_fails_midway_then_destroy_cleans_up(box: Any, hook: SchematicsHook) -> None:
    ws, slug = new_workspace(hook, "midway", vpc_count=4)
    box.set_faults(["apply_fails_midway", "destroy_fails_once"])
    with pytest.raises(AirflowException, match="ended FAILED"):
        SchematicsApplyOperator(
            task_id="apply", workspace_id=ws, deferrable=False, poll_interval=0.1
        ).execute(make_context(FakeStore()))
    assert VpcHook().find_resources(named_for(slug))  # half an apply left resources
    # destroy fails once (fault) and is resubmitted by job_retries=1
    SchematicsDestroyOperator(
        task_id="destroy",
        workspace_id=ws,
        deferrable=False,
        poll_interval=0.1,
        job_timeout=timedelta(minutes=1),
    ).execute(make_context(FakeStore()))
    assert len(jobs_named(hook, ws, "DESTROY")) == 2
    assert VpcHook().find_resources(named_for(slug)) == []


def test_cos_trigger_against_sandbox(box: Any) -> None:
    box.ensure_bucket("provider-test")
    cos = CosHook()
    cos.upload_bytes(
        "provider-test", "p/vm-0/progress.json", '{"epoch": 1, "epochs": 2, "metrics": {"loss": 0.5}}'
    )
    cos.upload_bytes("provider-test", "p/vm-0/_SUCCESS", "sha")
    cos.upload_bytes(
        "provider-test", "p/vm-1/_FAILED", '{"error": "GPU fell off the bus", "log_tail": "xid 79"}'
    )
    ok = run_trigger(
        CosKeyTrigger(bucket_name="provider-test", bucket_key=["p/vm-0/_SUCCESS"], poke_interval=0.1)
    )
    assert ok["status"] == "success"
    failed = run_trigger(
        CosKeyTrigger(
            bucket_name="provider-test", bucket_key=["p/vm-0/_SUCCESS", "p/vm-1/_SUCCESS"], poke_interval=0.1
        )
    )
    assert failed["status"] == "failed" and failed["error"] == "GPU fell off the bus"
    assert failed["log_tail"] == "xid 79"

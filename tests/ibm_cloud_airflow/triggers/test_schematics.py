"""SchematicsJobTrigger.run() driven with asyncio; the async hook is a fake (no network in unit tests).

The job's own logic (polls, logs, attach) is tested in tests/ibm_cloud_airflow/utils/test_schematics_job.py;
these pin what the trigger adds: submitting for a task that starts in the triggerer, the event it
reports, and ending the task itself with the XComs written through the Task SDK.
"""

from __future__ import annotations

import inspect
import time
from unittest import mock

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError
from ibm_cloud_airflow.triggers import schematics as module
from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger
from ibm_cloud_airflow.utils.schematics_job import JobOutcome

AID = "a" * 32


def make(**kw):
    args = {"command": "apply", "workspace_id": "ws", "activity_id": AID, "poll_interval": 0.01}
    args.update(kw)
    return SchematicsJobTrigger(**args)


def fake_hook(statuses=()):
    hook = mock.MagicMock()
    hook.get_activity = mock.AsyncMock(side_effect=[{"status": s, "action_id": AID} for s in statuses])
    hook.get_activity_log = mock.AsyncMock(return_value="init\nError: boom\n")
    hook.get_outputs = mock.AsyncMock(return_value={"vpc_id": "r006-1"})
    hook.run_command = mock.AsyncMock(return_value="d" * 32)
    hook.stop_activity = mock.AsyncMock()
    hook.resolve_workspace = mock.AsyncMock(side_effect=lambda ws, name, skip_draft: ws)
    hook.running_job = mock.AsyncMock(return_value=None)
    return hook


async def run(trig, hook):
    """The trigger's first event, and the XComs it wrote through the Task SDK (none if it did not)."""
    pushed = {}

    async def push(ti, xcoms):
        pushed.update(xcoms)

    with (
        mock.patch.object(module, "SchematicsAsyncHook", return_value=hook),
        mock.patch.object(module, "push_xcoms", side_effect=push),
    ):
        event = await trig.run().asend(None)
    return event, pushed


def test_serialize_roundtrip():
    trig = make(deadline=123.0, stream_logs=False, returns_outputs=True, workspace_name="n")
    path, kwargs = trig.serialize()
    assert path == "ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger"
    assert kwargs["deadline"] == 123.0 and kwargs["returns_outputs"] is True
    assert kwargs["workspace_name"] == "n" and kwargs["stream_logs"] is False
    assert SchematicsJobTrigger(**kwargs).serialize() == (path, kwargs)
    assert set(inspect.signature(SchematicsJobTrigger).parameters) == set(kwargs)  # every argument kept


async def test_the_first_poll_waits_for_next_poll_at_after_the_operators_check():
    # The operator polled just before deferring: the trigger keeps the poll interval's cadence.
    hook = fake_hook(["COMPLETED"])
    started = time.monotonic()
    event, _ = await run(make(next_poll_at=time.time() + 0.3, poll_interval=5), hook)
    assert time.monotonic() - started >= 0.25
    assert JobOutcome.from_event(event.payload).status == "COMPLETED"
    assert make(next_poll_at=12.5).serialize()[1]["next_poll_at"] == 12.5


async def test_a_finished_job_is_reported_as_its_outcome():
    event, pushed = await run(make(), fake_hook(["INPROGRESS", "FAILED"]))
    assert isinstance(event, TriggerEvent) and not pushed
    outcome = JobOutcome.from_event(event.payload)
    assert outcome.status == "FAILED" and outcome.activity_id == AID and outcome.first_error == "boom"


async def test_end_from_trigger_ends_a_completed_job_with_the_operators_xcoms():
    hook = fake_hook(["COMPLETED"])
    event, pushed = await run(make(command="plan", end_from_trigger=True), hook)
    assert isinstance(event, TaskSuccessEvent) and event.xcoms is None  # written through the SDK
    assert pushed["return_value"] == pushed["activity_id"] == AID
    assert pushed["job"]["activity_id"] == AID and pushed["job"]["status"] == "COMPLETED"
    hook.get_outputs.assert_not_awaited()


async def test_end_from_trigger_for_apply_returns_the_outputs():
    event, pushed = await run(make(end_from_trigger=True, returns_outputs=True), fake_hook(["COMPLETED"]))
    assert isinstance(event, TaskSuccessEvent)
    assert pushed["outputs"] == pushed["return_value"] == {"vpc_id": "r006-1"}


@pytest.mark.parametrize("status", ["FAILED", "STOPPED"])
async def test_end_from_trigger_still_resumes_a_failed_job_on_a_worker(status):
    event, pushed = await run(make(end_from_trigger=True), fake_hook([status]))
    assert not isinstance(event, TaskSuccessEvent) and event.payload["status"] == status and not pushed


async def test_started_in_the_triggerer_it_submits_the_destroy_then_ends_the_task():
    trig = make(
        command="destroy", activity_id=None, end_from_trigger=True, stream_logs=False, job_timeout_s=60
    )
    trig.poll_interval = 0.3  # the first poll waits min(poll_interval, FIRST_POLL_AFTER_SUBMIT_S)
    calls = []
    hook = fake_hook()
    hook.run_command.side_effect = lambda *a, **k: calls.append(time.monotonic()) or "d" * 32
    hook.get_activity.side_effect = lambda *a: calls.append(time.monotonic()) or {"status": "COMPLETED"}
    started = time.time()
    event, pushed = await run(trig, hook)
    hook.run_command.assert_awaited_once_with("destroy", "ws", wait_on_lock=False)
    # One poll, a moment after the submission (not at once, when every job is still running).
    hook.get_activity.assert_awaited_once_with("ws", "d" * 32)
    assert calls[1] - calls[0] >= 0.3
    assert isinstance(event, TaskSuccessEvent) and pushed["activity_id"] == "d" * 32
    # The UI's "Schematics workspace" link: no execute() ran on a worker to save it.
    assert pushed["_link_SchematicsWorkspaceLink"] == "https://cloud.ibm.com/schematics/workspaces/ws"
    assert started + 60 <= trig._job.deadline <= time.time() + 60  # counted from the submission


@pytest.mark.parametrize("end_from_trigger", [True, False])
async def test_started_in_the_triggerer_without_a_workspace_there_is_nothing_to_destroy(end_from_trigger):
    trig = make(
        command="destroy",
        workspace_id=None,
        activity_id=None,
        workspace_name="airflow-x",
        end_from_trigger=end_from_trigger,
    )
    hook = fake_hook()
    hook.resolve_workspace.side_effect = None
    hook.resolve_workspace.return_value = None
    event, pushed = await run(trig, hook)
    hook.resolve_workspace.assert_awaited_once_with(None, "airflow-x", skip_draft=True)
    hook.run_command.assert_not_awaited()
    if end_from_trigger:
        assert isinstance(event, TaskSuccessEvent) and pushed == {"return_value": None}
    else:
        assert event.payload["status"] == "NOTHING"


async def test_started_in_the_triggerer_a_deleted_workspace_is_nothing_to_destroy():
    hook = fake_hook()
    hook.run_command.side_effect = IbmCloudNotFoundError("gone")
    event, _ = await run(make(command="destroy", activity_id=None), hook)
    assert event.payload["status"] == "NOTHING"


async def test_a_submission_that_fails_resumes_the_task_with_the_error():
    hook = fake_hook()
    hook.run_command.side_effect = RuntimeError("IAM down")
    event, _ = await run(make(command="destroy", activity_id=None, end_from_trigger=True), hook)
    assert event.payload["status"] == "ERROR" and "IAM down" in event.payload["message"]


async def test_on_kill_stops_the_job_and_before_a_submission_does_nothing():
    hook = fake_hook(["INPROGRESS", "COMPLETED"])
    trig = make()
    await run(trig, hook)
    await trig.on_kill()
    hook.stop_activity.assert_awaited_once_with("ws", AID, timeout=10.0)
    hook.stop_activity.side_effect = RuntimeError("down")
    await trig.on_kill()  # errors are logged, not raised
    await make(activity_id=None).on_kill()  # killed before it started: nothing to stop


def test_the_triggerer_renders_a_tasks_fields_as_python_objects():
    env = make().get_template_env()
    assert env.from_string("{{ value }}").render(value=[1, 2]) == [1, 2]

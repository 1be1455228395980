"""SchematicsJobTrigger.run() driven with asyncio; the async hook is mocked (no network in unit tests)."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.triggers.schematics import LOG_EVERY_POLLS, SchematicsJobTrigger, new_log_lines


def make(**kw):
    args = {"workspace_id": "ws", "activity_id": "a" * 32, "ibm_conn_id": "c", "poll_interval": 0.01}
    args.update(kw)
    return SchematicsJobTrigger(**args)


def fake_hook(statuses, logs, stop=None):
    hook = mock.MagicMock()
    hook.get_activity = mock.AsyncMock(side_effect=[{"status": s} for s in statuses])
    hook.get_activity_log = mock.AsyncMock(side_effect=logs)
    hook.stop_activity = mock.AsyncMock(side_effect=stop)
    hook.workspace_to_destroy = mock.AsyncMock(side_effect=lambda workspace_id, name: workspace_id)
    return hook


def test_serialize_roundtrip():
    trig = make(deadline=123.0, log_offset=4, stream_logs=False)
    path, kwargs = trig.serialize()
    assert path == "ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger"
    assert kwargs == {
        "workspace_id": "ws",
        "activity_id": "a" * 32,
        "ibm_conn_id": "c",
        "poll_interval": 0.01,
        "deadline": 123.0,
        "log_offset": 4,
        "stream_logs": False,
        "end_from_trigger": False,
        "return_outputs": False,
        "command": None,
        "workspace_name": None,
        "job_timeout_s": None,
    }
    assert SchematicsJobTrigger(**kwargs).serialize() == (path, kwargs)


def test_new_log_lines():
    assert new_log_lines("a\nb\n", 0) == (["a", "b"], 2)
    assert new_log_lines("a\nb\nc", 2) == (["c"], 3)
    assert new_log_lines("a", 5) == ([], 5)


async def test_success_reads_the_log_once_at_the_end(capsys):
    trig = make()
    # Each request counts against the rate limit: a short job's log is read once, when it ends.
    hook = fake_hook(["INPROGRESS", "INPROGRESS", "COMPLETED"], ["l1\nl2\nl3\n"])
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert hook.get_activity_log.await_count == 1
    assert event == TriggerEvent(
        {
            "status": "success",
            "job_status": "COMPLETED",
            "workspace_id": "ws",
            "activity_id": "a" * 32,
            "log_offset": 3,
            "job": {
                "activity_id": None,
                "status": "COMPLETED",
                "performed_at": None,
                "started_at": None,
                "ended_at": None,
                "resources_added": None,
                "resources_modified": None,
                "resources_destroyed": None,
            },
            "log_tail": ["l1", "l2", "l3"],
        }
    )
    out = capsys.readouterr().out + capsys.readouterr().err
    assert [out.count(f"[schematics aaaaaaaa] l{i}") for i in (1, 2, 3)] == [1, 1, 1]


async def test_long_job_streams_its_log_every_few_polls(capsys):
    trig = make()
    statuses = ["INPROGRESS"] * (2 * LOG_EVERY_POLLS) + ["COMPLETED"]
    hook = fake_hook(statuses, ["l1\n", "l1\nl2\n", "l1\nl2\nl3\n"])
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert hook.get_activity_log.await_count == 3 and event.payload["log_offset"] == 3
    out = capsys.readouterr().out + capsys.readouterr().err
    assert [out.count(f"[schematics aaaaaaaa] l{i}") for i in (1, 2, 3)] == [1, 1, 1]


@pytest.mark.parametrize(("status", "expected"), [("FAILED", "failed"), ("STOPPED", "stopped")])
async def test_terminal_failures(status, expected):
    trig = make(stream_logs=False)
    with mock.patch.object(trig, "_hook", return_value=fake_hook([status], [])):
        event = await trig.run().asend(None)
    assert event.payload["status"] == expected and event.payload["job_status"] == status


async def test_deadline_gives_timeout():
    trig = make(deadline=time.time() + 0.05, stream_logs=False)
    with mock.patch.object(trig, "_hook", return_value=fake_hook(["INPROGRESS"] * 100, [])):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "timeout"


async def test_api_error_gives_error_event():
    trig = make()
    hook = fake_hook([], [])
    hook.get_activity.side_effect = RuntimeError("503 forever")
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "error" and "503 forever" in event.payload["message"]


async def test_log_errors_do_not_fail_the_wait():
    trig = make()
    hook = fake_hook(["INPROGRESS", "COMPLETED"], [RuntimeError("log not ready")])
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "success" and event.payload["log_tail"] is None


async def test_on_kill_stops_the_job():
    trig = make()
    hook = fake_hook([], [])
    with mock.patch.object(trig, "_hook", return_value=hook):
        await trig.on_kill()
    hook.stop_activity.assert_awaited_once_with("ws", "a" * 32, timeout=10.0)
    hook.stop_activity.side_effect = RuntimeError("down")
    with mock.patch.object(trig, "_hook", return_value=hook):
        await trig.on_kill()  # errors are logged, not raised


async def test_end_from_trigger_ends_a_completed_job_with_the_operators_xcoms():
    trig = make(end_from_trigger=True, stream_logs=False)
    hook = fake_hook(["COMPLETED"], [])
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"] == "a" * 32
    assert event.xcoms["job"]["activity_id"] == "a" * 32 and event.xcoms["job"]["status"] == "COMPLETED"
    hook.get_outputs.assert_not_called()


async def test_end_from_trigger_for_apply_returns_the_outputs():
    trig = make(end_from_trigger=True, return_outputs=True, stream_logs=False)
    hook = fake_hook(["COMPLETED"], [])
    hook.get_outputs = mock.AsyncMock(return_value={"vpc_id": "r006-1"})
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert event.xcoms["outputs"] == event.xcoms["return_value"] == {"vpc_id": "r006-1"}


async def test_end_from_trigger_still_resumes_a_failed_job_on_a_worker():
    trig = make(end_from_trigger=True, stream_logs=False)
    with mock.patch.object(trig, "_hook", return_value=fake_hook(["FAILED"], [])):
        event = await trig.run().asend(None)
    assert not isinstance(event, TaskSuccessEvent) and event.payload["status"] == "failed"


async def test_started_in_the_triggerer_it_submits_the_destroy_then_ends_the_task():
    trig = make(
        activity_id=None, command="destroy", end_from_trigger=True, stream_logs=False, job_timeout_s=60
    )
    trig.poll_interval = 0.3  # the first poll waits min(poll_interval, FIRST_POLL_AFTER_SUBMIT_S)
    calls = []
    hook = fake_hook([], [])
    hook.run_command = mock.AsyncMock(side_effect=lambda *a: calls.append(time.monotonic()) or "d" * 32)
    hook.get_activity.side_effect = lambda *a: calls.append(time.monotonic()) or {"status": "COMPLETED"}
    started = time.time()
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    hook.run_command.assert_awaited_once_with("destroy", "ws")
    # One poll, a moment after the submission (not at once, when every job is still running).
    hook.get_activity.assert_awaited_once_with("ws", "d" * 32)
    assert calls[1] - calls[0] >= 0.3
    assert isinstance(event, TaskSuccessEvent) and event.xcoms["activity_id"] == "d" * 32
    assert started + 60 <= trig.deadline <= time.time() + 60  # the job timeout counts from the submission


@pytest.mark.parametrize("rendered_id", ["", "None"])
async def test_started_in_the_triggerer_without_a_workspace_there_is_nothing_to_destroy(rendered_id):
    trig = make(workspace_id=rendered_id, activity_id=None, command="destroy", workspace_name="airflow-x")
    hook = fake_hook([], [])
    hook.workspace_to_destroy = mock.AsyncMock(return_value=None)
    hook.run_command = mock.AsyncMock()
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert event.payload["status"] == "nothing"
    hook.run_command.assert_not_awaited()


async def test_started_in_the_triggerer_a_deleted_workspace_is_nothing_to_destroy():
    from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError

    trig = make(activity_id=None, command="destroy", end_from_trigger=True)
    hook = fake_hook([], [])
    hook.run_command = mock.AsyncMock(side_effect=IbmCloudNotFoundError("gone"))
    with mock.patch.object(trig, "_hook", return_value=hook):
        event = await trig.run().asend(None)
    assert isinstance(event, TaskSuccessEvent) and event.xcoms == {"return_value": None}

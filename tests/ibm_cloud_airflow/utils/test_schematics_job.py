"""The Schematics job state machine: attach or submit, poll, logs, deadline, retries, outcome, result.

The async hook is a fake (no network in unit tests): these tests pin the machine's decisions and its
request counts; tests/ibm_cloud_airflow/test_sandbox_integration.py runs the same machine over HTTP.
"""

from __future__ import annotations

import time
from unittest import mock

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudNotFoundError
from ibm_cloud_airflow.utils.schematics_job import (
    ERROR,
    LOG_EVERY_POLLS,
    NOTHING,
    TIMEOUT,
    JobOutcome,
    SchematicsJob,
    job_result,
    new_log_lines,
)

AID = "a" * 32


def fake_hook(statuses=(), logs=()):
    hook = mock.MagicMock()
    hook.get_activity = mock.AsyncMock(side_effect=[{"status": s, "action_id": AID} for s in statuses])
    hook.get_activity_log = mock.AsyncMock(side_effect=list(logs))
    hook.get_outputs = mock.AsyncMock(return_value={"vpc_id": "r006-1"})
    hook.run_command = mock.AsyncMock(return_value=AID)
    hook.running_job = mock.AsyncMock(return_value=None)
    hook.list_activities = mock.AsyncMock(return_value=[])
    hook.stop_activity = mock.AsyncMock()
    hook.resolve_workspace = mock.AsyncMock(side_effect=lambda ws, name, skip_draft: ws)
    return hook


def job(hook, command="apply", activity_id=AID, **kw):
    return SchematicsJob(hook, command, "ws", activity_id, **{"poll_interval": 0.01, **kw})


def test_new_log_lines():
    assert new_log_lines("a\nb\n", 0) == (["a", "b"], 2)
    assert new_log_lines("a\nb\nc", 2) == (["c"], 3)
    assert new_log_lines("a", 5) == ([], 5)


async def test_a_short_job_has_its_log_read_once_at_the_end(caplog):
    # Each request counts against the rate limit: a short job's log is read once, when it ends.
    hook = fake_hook(["INPROGRESS", "INPROGRESS", "COMPLETED"], ["l1\nl2\nError: x\n"])
    outcome = await job(hook).wait()
    assert hook.get_activity_log.await_count == 1
    assert outcome.status == "COMPLETED" and outcome.log_tail == ["l1", "l2", "Error: x"]
    assert outcome.summary["status"] == "COMPLETED"
    assert [caplog.text.count(f"[schematics aaaaaaaa] l{i}") for i in (1, 2)] == [1, 1]


async def test_a_long_job_streams_its_log_every_few_polls_each_line_once(caplog):
    statuses = ["INPROGRESS"] * (2 * LOG_EVERY_POLLS) + ["COMPLETED"]
    hook = fake_hook(statuses, ["l1\n", "l1\nl2\n", "l1\nl2\nl3\n"])
    outcome = await job(hook).wait()
    assert hook.get_activity_log.await_count == 3 and outcome.status == "COMPLETED"
    assert [caplog.text.count(f"[schematics aaaaaaaa] l{i}") for i in (1, 2, 3)] == [1, 1, 1]


async def test_a_completed_apply_reads_its_outputs_and_a_plan_does_not():
    hook = fake_hook(["COMPLETED"], ["done\n"])
    assert (await job(hook, returns_outputs=True).wait()).outputs == {"vpc_id": "r006-1"}
    hook = fake_hook(["COMPLETED"], ["done\n"])
    assert (await job(hook, command="plan").wait()).outputs is None
    hook.get_outputs.assert_not_awaited()


@pytest.mark.parametrize("status", ["FAILED", "STOPPED"])
async def test_a_failed_job_ends_with_its_status_and_log_tail(status):
    hook = fake_hook([status], ["init\nError: quota exceeded\nmore\n"])
    outcome = await job(hook, returns_outputs=True).wait()
    assert outcome.status == status and outcome.first_error == "quota exceeded"
    hook.get_outputs.assert_not_awaited()


async def test_at_the_deadline_the_job_is_stopped_and_the_outcome_is_a_timeout():
    # Wherever it is waited for (a worker, the triggerer): the job does not outlive its timeout.
    hook = fake_hook(["INPROGRESS"] * 100)
    outcome = await job(hook, deadline=time.time() + 0.05, stream_logs=False).wait()
    assert outcome.status == TIMEOUT and "at its deadline" in outcome.message
    hook.stop_activity.assert_awaited_once_with("ws", AID, timeout=None)


async def test_an_api_that_keeps_failing_gives_an_error_outcome():
    hook = fake_hook()
    hook.get_activity.side_effect = IbmCloudApiError("503 forever")
    outcome = await job(hook).wait()
    assert outcome.status == ERROR and "503 forever" in outcome.message


async def test_a_log_that_cannot_be_read_does_not_fail_the_wait():
    hook = fake_hook(["INPROGRESS", "COMPLETED"], [RuntimeError("log not ready")])
    outcome = await job(hook).wait()
    assert outcome.status == "COMPLETED" and outcome.log_tail == []


async def test_submit_counts_the_deadline_from_the_submission():
    hook = fake_hook()
    j = job(hook, activity_id=None, job_timeout_s=60)
    before = time.time()
    assert await j.submit() is True
    hook.run_command.assert_awaited_once_with("apply", "ws", wait_on_lock=False)
    assert j.activity_id == AID and before + 60 <= j.deadline <= time.time() + 60


async def test_a_locked_workspace_running_this_command_is_attached_to_not_submitted_again():
    # A restarted triggerer or worker finds its own job still running: 409, then one listing.
    hook = fake_hook()
    hook.run_command.side_effect = IbmCloudApiError("locked", status_code=409)
    hook.running_job.return_value = "running-job"
    j = job(hook, activity_id=None)
    assert await j.submit() is True and j.activity_id == "running-job"
    hook.run_command.assert_awaited_once()
    hook.running_job.assert_awaited_once_with("ws", "apply")


async def test_a_workspace_locked_by_another_command_is_waited_out():
    hook = fake_hook()
    hook.run_command.side_effect = [IbmCloudApiError("locked", status_code=409), "new-job"]
    j = job(hook, activity_id=None)
    assert await j.submit() is True and j.activity_id == "new-job"
    assert hook.run_command.await_args_list[1] == mock.call("apply", "ws")  # waits on the lock


async def test_submit_on_a_deleted_workspace_means_nothing_to_run():
    hook = fake_hook()
    hook.run_command.side_effect = IbmCloudNotFoundError("gone")
    assert await job(hook, activity_id=None).submit() is False


@pytest.mark.parametrize(
    ("status", "later_job", "attached"),
    [
        ("INPROGRESS", False, True),
        ("COMPLETED", False, True),  # its result still holds: not run again
        ("COMPLETED", True, False),  # another job ran after it: stale
        ("FAILED", False, False),
        ("STOPPED", False, False),
    ],
)
async def test_attach_to_a_saved_job(status, later_job, attached):
    hook = fake_hook()
    hook.get_activity.side_effect = None
    hook.get_activity.return_value = {"action_id": "old", "status": status, "performed_at": "1"}
    if later_job:
        hook.list_activities.return_value = [{"action_id": "d", "performed_at": "2"}]
    j = job(hook, activity_id=None)
    assert await j.attach("old") is attached
    assert j.activity_id == ("old" if attached else None)
    assert j.saved_state()["activity_id"] == j.activity_id


async def test_attach_to_a_job_that_no_longer_exists():
    hook = fake_hook()
    hook.get_activity.side_effect = IbmCloudNotFoundError("gone")
    assert await job(hook, activity_id=None).attach("old") is False


async def test_resolve_by_name_and_nothing_without_a_workspace():
    hook = fake_hook()
    hook.resolve_workspace.side_effect = None
    hook.resolve_workspace.return_value = None
    j = SchematicsJob(hook, "destroy", None)
    assert await j.resolve("airflow-x") is False
    hook.resolve_workspace.assert_awaited_once_with(None, "airflow-x", skip_draft=True)


def test_the_result_contract_for_apply_and_for_the_other_commands():
    outcome = JobOutcome(
        command="apply",
        status="COMPLETED",
        workspace_id="ws",
        activity_id=AID,
        summary={"status": "COMPLETED", "resources_added": 7},
        outputs={"vpc_id": "r006-1"},
    )
    value, xcoms = job_result(outcome, returns_outputs=True)
    assert value == xcoms["outputs"] == {"vpc_id": "r006-1"}
    assert xcoms["job"] == {"status": "COMPLETED", "resources_added": 7, "activity_id": AID}
    assert xcoms["activity_id"] == AID
    assert xcoms["_link_SchematicsWorkspaceLink"] == "https://cloud.ibm.com/schematics/workspaces/ws"
    value, xcoms = job_result(outcome, returns_outputs=False)
    assert value == AID and "outputs" not in xcoms
    assert job_result(JobOutcome(command="destroy", status=NOTHING), returns_outputs=False) == (None, {})


def test_an_outcome_survives_a_trigger_event():
    outcome = JobOutcome(command="plan", status="FAILED", workspace_id="ws", activity_id=AID, log_tail=["x"])
    assert JobOutcome.from_event(outcome.to_event()) == outcome
    # An event an older version wrote (a task deferred across an upgrade) still reads.
    assert JobOutcome.from_event({**outcome.to_event(), "log_offset": 3}) == outcome


# -- start: attach or submit ------------------------------------------------------------------------
async def test_start_re_attaches_to_the_saved_job_with_its_deadline_and_retries_used():
    hook = fake_hook()
    hook.get_activity.side_effect = None
    hook.get_activity.return_value = {"action_id": "old", "status": "INPROGRESS"}
    j = job(hook, activity_id=None, job_timeout_s=60, retries=2)
    saved = {"workspace_id": "ws", "activity_id": "old", "deadline": 123.0, "attempt": 1}
    assert await j.start(None, saved=saved) is True
    assert (j.activity_id, j.deadline, j.attempt) == ("old", 123.0, 1)
    hook.run_command.assert_not_awaited()


async def test_start_on_a_later_try_attaches_to_the_job_an_earlier_try_left_running():
    # The worker was killed between the submission and saving the job id: the retry finds the job
    # in the workspace's job list and waits for it, rather than submitting a second one.
    hook = fake_hook()
    hook.running_job.return_value = "left-running"
    j = job(hook, activity_id=None, job_timeout_s=60)
    before = time.time()
    assert await j.start(None, earlier_try=True) is True
    assert j.activity_id == "left-running" and j.deadline >= before + 60
    hook.running_job.assert_awaited_once_with("ws", "apply")
    hook.run_command.assert_not_awaited()


async def test_start_on_a_later_try_with_nothing_running_submits():
    hook = fake_hook()
    j = job(hook, activity_id=None)
    assert await j.start(None, earlier_try=True) is True and j.activity_id == AID
    hook.running_job.assert_awaited_once()
    hook.run_command.assert_awaited_once_with("apply", "ws", wait_on_lock=False)


async def test_a_first_try_submits_without_listing_the_workspaces_jobs():
    hook = fake_hook()
    assert await job(hook, activity_id=None).start(None) is True
    hook.running_job.assert_not_awaited()  # each request counts against the rate limit


async def test_start_without_a_workspace_is_nothing_to_run():
    hook = fake_hook()
    hook.resolve_workspace.side_effect = None
    hook.resolve_workspace.return_value = None
    j = SchematicsJob(hook, "destroy", None)
    assert (await j.run("airflow-x")).status == NOTHING
    hook.run_command.assert_not_awaited()


# -- run: the retry loop ----------------------------------------------------------------------------
async def test_a_failed_job_is_submitted_again_while_retries_are_left():
    hook = fake_hook(["FAILED", "COMPLETED"], ["Error: first\n", "done\n"])
    hook.run_command.side_effect = ["d1", "d2"]
    started = []
    j = job(hook, command="destroy", activity_id=None, retries=1)
    outcome = await j.run(None, on_start=lambda jb: started.append(jb.saved_state()))
    assert outcome.status == "COMPLETED" and outcome.activity_id == "d2"
    assert [(s["activity_id"], s["attempt"]) for s in started] == [("d1", 0), ("d2", 1)]


async def test_when_the_retries_are_used_the_failure_is_the_outcome():
    hook = fake_hook(["FAILED", "FAILED"], ["Error: a\n", "Error: b\n"])
    hook.run_command.side_effect = ["d1", "d2"]
    outcome = await job(hook, command="destroy", activity_id=None, retries=1).run(None)
    assert outcome.status == "FAILED" and outcome.first_error == "b"
    assert hook.run_command.await_count == 2


@pytest.mark.parametrize("status", ["STOPPED", "TIMEOUT", "ERROR"])
def test_only_a_failed_job_is_retried(status):
    j = job(fake_hook(), retries=3)
    assert j.retry(JobOutcome(command="apply", status=status)) is False and j.attempt == 0
    assert j.retry(JobOutcome(command="apply", status="FAILED")) is True and j.attempt == 1


async def test_until_deferred_checks_once_and_leaves_a_running_job_to_the_triggerer():
    hook = fake_hook(["INPROGRESS"])
    j = job(hook, activity_id=None)
    assert await j.run(None, until_deferred=True) is None
    assert hook.get_activity.await_count == 1 and j.activity_id == AID


def test_the_trigger_is_built_from_the_jobs_own_arguments():
    from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger

    j = job(None, deadline=99.0, returns_outputs=True, job_timeout_s=60)
    trigger = SchematicsJobTrigger(**j.trigger_kwargs(), ibm_conn_id="c")
    with mock.patch("ibm_cloud_airflow.triggers.schematics.SchematicsAsyncHook"):
        again = trigger._new_job()
    assert again.trigger_kwargs() == j.trigger_kwargs()

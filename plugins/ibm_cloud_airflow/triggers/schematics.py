"""Trigger that waits for a Schematics job and streams its log into the trigger log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.hooks.schematics import TERMINAL_JOB_STATUSES, SchematicsAsyncHook, job_summary
from ibm_cloud_airflow.links.schematics import SchematicsWorkspaceLink

# Every request counts against Schematics' per-user rate limit: a job's log is read when the job
# ends, and while it runs only on every LOG_EVERY_POLLS-th status poll (every 5 minutes at 30 s).
LOG_EVERY_POLLS = 10
LOG_TAIL_LINES = 40
FIRST_POLL_AFTER_SUBMIT_S = 2.0


def new_log_lines(text: str, offset: int) -> tuple[list[str], int]:
    """Lines of ``text`` after line ``offset`` and the new offset (each line is reported once)."""
    lines = text.splitlines()
    if offset > len(lines):  # the log was rotated or cut; never repeat, never go back
        return [], offset
    return lines[offset:], len(lines)


class SchematicsJobTrigger(BaseTrigger):
    """Polls a Schematics job (activity) until it ends or ``deadline`` passes.

    Events (``TriggerEvent.payload``):

    * ``{"status": "success"|"failed"|"stopped", "job_status", "workspace_id", "activity_id", "log_offset"}``
    * ``{"status": "timeout", ...}`` when ``deadline`` (epoch seconds) passes; the operator
      then stops the job.
    * ``{"status": "error", "message", ...}`` when the API keeps failing.

    :param workspace_id: the workspace.
    :param activity_id: the job (``activityid``) to wait for.
    :param ibm_conn_id: the IBM Cloud connection.
    :param poll_interval: seconds between polls.
    :param deadline: epoch seconds after which a ``timeout`` event is sent.
    :param log_offset: job-log lines already shown (so that a re-deferral does not repeat them).
    :param stream_logs: copy new job-log lines into the trigger log.
    :param end_from_trigger: on success, end the task here (``TaskSuccessEvent``) with the XComs the
        operator would push (``job``, ``return_value`` = the job id), instead of resuming it on a
        worker; every other outcome resumes it.
    :param return_outputs: with ``end_from_trigger``, read the Terraform outputs too and return
        them (XComs ``outputs`` and ``return_value``), as the apply operator does.
    :param command: with no ``activity_id``, submit this command first (a task that starts in the
        triggerer, see :class:`~ibm_cloud_airflow.operators.schematics.SchematicsDestroyOperator`);
        the workspace is ``workspace_id`` or, when that is blank, the one named ``workspace_name``.
        No such workspace means nothing to run: ``{"status": "nothing"}`` (or the task ends here
        with ``end_from_trigger``).
    :param job_timeout_s: with ``command``, the deadline is this long after the submission.
    """

    def __init__(
        self,
        workspace_id: str | None,
        activity_id: str | None = None,
        ibm_conn_id: str = "ibm_cloud_default",
        poll_interval: float = 30.0,
        deadline: float | None = None,
        log_offset: int = 0,
        stream_logs: bool = True,
        end_from_trigger: bool = False,
        return_outputs: bool = False,
        command: str | None = None,
        workspace_name: str | None = None,
        job_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.workspace_id = workspace_id
        self.activity_id = activity_id
        self.ibm_conn_id = ibm_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.log_offset = log_offset
        self.stream_logs = stream_logs
        self.end_from_trigger = end_from_trigger
        self.return_outputs = return_outputs
        self.command = command
        self.workspace_name = workspace_name
        self.job_timeout_s = job_timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger",
            {
                "workspace_id": self.workspace_id,
                "activity_id": self.activity_id,
                "ibm_conn_id": self.ibm_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "log_offset": self.log_offset,
                "stream_logs": self.stream_logs,
                "end_from_trigger": self.end_from_trigger,
                "return_outputs": self.return_outputs,
                "command": self.command,
                "workspace_name": self.workspace_name,
                "job_timeout_s": self.job_timeout_s,
            },
        )

    def _hook(self) -> SchematicsAsyncHook:
        return SchematicsAsyncHook(self.ibm_conn_id)

    def _payload(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "status": status,
            "workspace_id": self.workspace_id,
            "activity_id": self.activity_id,
            "log_offset": self.log_offset,
            **extra,
        }

    async def _stream_log(self, hook: SchematicsAsyncHook, activity: dict[str, Any]) -> str | None:
        """Copy the log's new lines into the trigger log; returns the whole log (None if unread)."""
        if not self.stream_logs:
            return None
        try:
            text = await hook.get_activity_log(self.workspace_id, self.activity_id, activity)
        except Exception as exc:  # logs are best effort; the job status decides
            self.log.warning("Could not read the job log yet: %s", exc)
            return None
        lines, self.log_offset = new_log_lines(text, self.log_offset)
        for line in lines:
            self.log.info("[schematics %s] %s", self.activity_id[:8], line)
        return text

    async def _start_job(self, hook: SchematicsAsyncHook) -> bool:
        """Submit ``command``; False when there is no workspace to run it on."""
        from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError

        workspace_id = await hook.workspace_to_destroy(self.workspace_id, self.workspace_name)
        if workspace_id is None:
            self.log.info(
                "No workspace (id %r, name %r): nothing to %s",
                self.workspace_id,
                self.workspace_name,
                self.command,
            )
            return False
        try:
            self.activity_id = await hook.run_command(self.command, workspace_id)
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s does not exist: nothing to %s", workspace_id, self.command)
            return False
        self.workspace_id = workspace_id
        if self.job_timeout_s is not None:
            self.deadline = time.time() + float(self.job_timeout_s)
        self.log.info(
            "Schematics %s job %s started on workspace %s", self.command, self.activity_id, workspace_id
        )
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        polls = 0
        if self.command and not self.activity_id:
            try:
                started = await self._start_job(hook)
            except Exception as exc:
                self.log.exception("Submitting the Schematics %s job failed", self.command)
                yield TriggerEvent(self._payload("error", message=str(exc)))
                return
            if not started:
                yield (
                    TaskSuccessEvent(xcoms={"return_value": None})
                    if self.end_from_trigger
                    else TriggerEvent(self._payload("nothing"))
                )
                return
            # A poll right after the submission finds every job still running, and the next one
            # comes a whole interval later: poll first after a moment (same number of requests).
            await asyncio.sleep(min(self.poll_interval, FIRST_POLL_AFTER_SUBMIT_S))
        try:
            while True:
                activity = await hook.get_activity(self.workspace_id, self.activity_id)
                status = str(activity.get("status") or "").upper()
                terminal = status in TERMINAL_JOB_STATUSES
                polls += 1
                log_text = None
                if terminal or polls % LOG_EVERY_POLLS == 0:
                    log_text = await self._stream_log(hook, activity)
                if terminal:
                    self.log.info("Schematics job %s ended: %s", self.activity_id, status)
                    if status == "COMPLETED" and self.end_from_trigger:
                        yield TaskSuccessEvent(xcoms=await self._success_xcoms(hook, activity))
                        return
                    yield TriggerEvent(
                        self._payload(
                            {"COMPLETED": "success", "FAILED": "failed", "STOPPED": "stopped"}[status],
                            job_status=status,
                            job=job_summary(activity),
                            # A failed job's message needs it; the operator need not read it again.
                            log_tail=None if log_text is None else log_text.splitlines()[-LOG_TAIL_LINES:],
                        )
                    )
                    return
                now = time.time()
                if self.deadline is not None and now >= self.deadline:
                    self.log.error("Schematics job %s still %s at its deadline", self.activity_id, status)
                    yield TriggerEvent(self._payload("timeout", job_status=status))
                    return
                self.log.info("Schematics job %s: %s", self.activity_id, status or "(no status yet)")
                sleep = self.poll_interval
                if self.deadline is not None:
                    sleep = max(0.0, min(sleep, self.deadline - now))
                await asyncio.sleep(sleep)
        except Exception as exc:
            self.log.exception("Polling Schematics job %s failed", self.activity_id)
            yield TriggerEvent(self._payload("error", message=str(exc)))

    async def _success_xcoms(self, hook: SchematicsAsyncHook, activity: dict[str, Any]) -> dict[str, Any]:
        xcoms: dict[str, Any] = {
            "job": {**job_summary(activity), "activity_id": self.activity_id},
            "activity_id": self.activity_id,
            "return_value": self.activity_id,
            # A task started in the triggerer never ran execute(), where the link is saved.
            **SchematicsWorkspaceLink.xcom_entry(self.workspace_id),
        }
        if self.return_outputs:
            outputs = await hook.get_outputs(self.workspace_id)
            self.log.info("Terraform outputs: %s", sorted(outputs))
            xcoms.update(outputs=outputs, return_value=outputs)
        return xcoms

    async def on_kill(self) -> None:
        """The user marked the deferred task failed/success or cleared it: stop the Schematics job."""
        if not self.activity_id:  # started in the triggerer and killed before it submitted
            return
        self.log.warning("Task killed by the user: stopping Schematics job %s", self.activity_id)
        try:
            await self._hook().stop_activity(self.workspace_id, self.activity_id, timeout=10.0)
        except Exception:
            self.log.exception("Could not stop Schematics job %s", self.activity_id)

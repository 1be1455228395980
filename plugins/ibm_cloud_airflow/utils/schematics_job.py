"""One Schematics job (plan, apply, destroy), driven the same way by the operators and the trigger.

:class:`SchematicsJob` submits the job (or attaches to the one already running), polls it, copies
its log into the task log every few polls, reads the whole log once at the end, and returns a
:class:`JobOutcome`. The trigger runs it on the triggerer's event loop; an operator that does not
defer runs the same coroutine with ``asyncio.run``. :func:`job_result` is the one place that turns a
completed outcome into the task's return value and XComs: ``execute_complete`` calls it, and so
does a trigger that ends the task itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ibm_cloud_airflow.hooks.base import IbmCloudApiError, IbmCloudNotFoundError
from ibm_cloud_airflow.links.schematics import SchematicsWorkspaceLink

if TYPE_CHECKING:
    from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook

# Activity statuses after which a job no longer runs (hooks.schematics.TERMINAL_JOB_STATUSES; repeated
# here so that the operators' module, imported at every DAG parse, need not import the hook).
TERMINAL = frozenset({"COMPLETED", "FAILED", "STOPPED"})
# Outcomes that are not a job status.
TIMEOUT, ERROR, NOTHING = "TIMEOUT", "ERROR", "NOTHING"
# Every request counts against Schematics' per-user rate limit: a job's log is read when the job
# ends, and while it runs only on every LOG_EVERY_POLLS-th status poll (every 5 minutes at 30 s).
LOG_EVERY_POLLS = 10
LOG_TAIL_LINES = 40
# A poll right after the submission finds every job still running, and the next one comes a whole
# interval later: the first poll comes after a moment instead (the same number of requests), so
# that a job with nothing to do (an empty destroy, an unchanged plan) is seen at once.
FIRST_POLL_AFTER_SUBMIT_S = 1.0


@dataclass
class JobOutcome:
    """How a job's wait ended; travels as a trigger event's payload (:meth:`to_event`)."""

    command: str
    #: COMPLETED, FAILED, STOPPED (the job's status), TIMEOUT (the deadline passed, the job still
    #: runs), ERROR (the API kept failing) or NOTHING (no workspace to run the job on).
    status: str
    workspace_id: str | None = None
    activity_id: str | None = None
    #: :func:`hooks.schematics.job_summary` of the finished job (for run reports).
    job: dict[str, Any] | None = None
    log_tail: list[str] = field(default_factory=list)
    #: Terraform outputs of a completed apply (sensitive ones masked).
    outputs: dict[str, Any] | None = None
    message: str = ""
    #: Job-log lines already copied into the task log, and when the job must have ended.
    log_offset: int = 0
    deadline: float | None = None

    def to_event(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> JobOutcome:
        return cls(**event)

    @property
    def first_error(self) -> str:
        """Terraform's first ``Error:`` line, what a one-line failure summary should show."""
        errors = (line.split("Error:", 1)[1].strip() for line in self.log_tail if "Error:" in line)
        return next(errors, "")


def job_result(outcome: JobOutcome, *, returns_outputs: bool) -> tuple[Any, dict[str, Any]]:
    """A completed (or NOTHING) outcome as the task's (return value, other XComs)."""
    if outcome.status == NOTHING:
        return None, {}
    xcoms: dict[str, Any] = {
        "job": {**(outcome.job or {}), "activity_id": outcome.activity_id},
        "activity_id": outcome.activity_id,
        # A task that starts in the triggerer runs no execute(), where the link is otherwise saved.
        **SchematicsWorkspaceLink.xcom_entry(outcome.workspace_id or ""),
    }
    if returns_outputs:
        xcoms["outputs"] = outcome.outputs or {}
        return outcome.outputs or {}, xcoms
    return outcome.activity_id, xcoms


def new_log_lines(text: str, offset: int) -> tuple[list[str], int]:
    """Lines of ``text`` after line ``offset`` and the new offset (each line is reported once)."""
    lines = text.splitlines()
    if offset > len(lines):  # the log was rotated or cut; never repeat, never go back
        return [], offset
    return lines[offset:], len(lines)


class SchematicsJob:
    """Submit or attach to one job, wait for it, and describe how it ended.

    :param hook: the async hook (the operators' synchronous path runs it under ``asyncio.run``).
    :param command: ``plan``, ``apply`` or ``destroy``.
    :param workspace_id: the workspace (after :meth:`resolve`, when it is looked up by name).
    :param activity_id: the job to wait for; None until :meth:`submit`.
    :param job_timeout_s: how long the job may run; the deadline is counted from the submission.
    :param deadline: epoch seconds (a job re-attached keeps its first deadline).
    :param read_outputs: read the Terraform outputs when the job completes (apply).
    """

    def __init__(
        self,
        hook: SchematicsAsyncHook,
        command: str,
        workspace_id: str | None,
        activity_id: str | None = None,
        *,
        poll_interval: float = 30.0,
        job_timeout_s: float | None = None,
        deadline: float | None = None,
        stream_logs: bool = True,
        read_outputs: bool = False,
        log_offset: int = 0,
        log: logging.Logger | None = None,
    ) -> None:
        self.hook = hook
        self.command = command
        self.workspace_id = workspace_id
        self.activity_id = activity_id
        self.poll_interval = poll_interval
        self.job_timeout_s = job_timeout_s
        self.deadline = deadline
        self.stream_logs = stream_logs
        self.read_outputs = read_outputs
        self.log_offset = log_offset
        self.log = log or logging.getLogger(__name__)
        #: an attached job had already completed: waiting for it takes one poll
        self.finished = False

    def outcome(self, status: str, **details: Any) -> JobOutcome:
        return JobOutcome(
            command=self.command,
            status=status,
            workspace_id=self.workspace_id,
            activity_id=self.activity_id,
            log_offset=self.log_offset,
            deadline=self.deadline,
            **details,
        )

    async def resolve(self, workspace_name: str | None) -> bool:
        """Find the workspace by name when no id was given; False when there is none.

        A ``DRAFT`` workspace (it never received a template) counts as none: there is nothing to
        plan, apply or destroy in it.
        """
        self.workspace_id = await self.hook.resolve_workspace(
            self.workspace_id, workspace_name, skip_draft=True
        )
        if self.workspace_id is None:
            self.log.info("No workspace (name %r): nothing to %s", workspace_name, self.command)
        return self.workspace_id is not None

    def trigger(self, ibm_conn_id: str, *, end_from_trigger: bool = False) -> Any:
        """The :class:`SchematicsJobTrigger` that waits for this submitted job in the triggerer.

        Its first poll is one interval from now: the job was just submitted, or checked once.
        """
        from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger

        return SchematicsJobTrigger(
            self.command,
            self.workspace_id,
            self.activity_id,
            ibm_conn_id=ibm_conn_id,
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            next_poll_at=time.time() + self.poll_interval,
            stream_logs=self.stream_logs,
            read_outputs=self.read_outputs,
            end_from_trigger=end_from_trigger,
        )

    def defer_timeout(self) -> timedelta:
        """A safety net for the deferral only: the trigger's own deadline fires first and stops the job."""
        return timedelta(seconds=max(0.0, (self.deadline or time.time()) - time.time()) + 300)

    async def resolve_and_submit(self, workspace_name: str | None) -> bool:
        """:meth:`resolve`, then :meth:`submit`; False when there is no workspace.

        A given id that no longer exists falls back to ``workspace_name``: a task cleared after the
        run's cleanup may have created the workspace again, under the same name and a new id.
        """
        if not await self.resolve(workspace_name):
            return False
        if await self.submit():
            return True
        given, self.workspace_id = self.workspace_id, None
        if not (workspace_name and await self.resolve(workspace_name)) or self.workspace_id == given:
            return False
        self.log.info(
            "Workspace %s is gone; the one named %s is %s", given, workspace_name, self.workspace_id
        )
        return await self.submit()

    async def attach(self, activity_id: str) -> bool:
        """Re-attach to a job this task submitted before (a retry, a restarted worker).

        True when that job still runs, or completed and nothing ran on the workspace after it (its
        result still holds); False when it must be submitted again (gone, failed, stopped, stale).
        """
        try:
            activity = await self.hook.get_activity(self.workspace_id, activity_id)
        except IbmCloudNotFoundError:
            self.log.info("Saved %s job %s no longer exists; submitting a new one", self.command, activity_id)
            return False
        status = str(activity.get("status") or "").upper()
        if status not in TERMINAL or (status == "COMPLETED" and not await self._superseded(activity)):
            self.log.info("Re-attaching to %s job %s (%s)", self.command, activity_id, status)
            self.activity_id = activity_id
            self.finished = status == "COMPLETED"
            return True
        self.log.info("Saved %s job %s ended %s; submitting a new one", self.command, activity_id, status)
        return False

    async def _superseded(self, activity: dict[str, Any]) -> bool:
        """True when another job ran on the workspace after this one (its result may be stale)."""
        when = str(activity.get("performed_at") or "")
        others = await self.hook.list_activities(self.workspace_id)
        return any(
            o.get("action_id") != activity.get("action_id") and str(o.get("performed_at") or "") > when
            for o in others
        )

    async def submit(self) -> bool:
        """Start the job, or attach to this command's job already running on the workspace.

        A locked workspace (HTTP 409) whose running job is this command is one this task started
        before it was interrupted (a restarted triggerer or worker): wait for that job rather than
        queue a second one. Any other lock is waited out. False when the workspace does not exist.
        """
        try:
            try:
                self.activity_id = await self.hook.run_command(
                    self.command, self.workspace_id, wait_on_lock=False
                )
            except IbmCloudApiError as exc:
                if exc.status_code != 409:
                    raise
                self.activity_id = await self.hook.running_job(self.workspace_id, self.command)
                if self.activity_id:
                    self.log.info("Attaching to %s job %s, already running", self.command, self.activity_id)
                else:
                    self.activity_id = await self.hook.run_command(self.command, self.workspace_id)
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s does not exist: nothing to %s", self.workspace_id, self.command)
            return False
        if self.job_timeout_s is not None:
            self.deadline = time.time() + self.job_timeout_s
        self.log.info(
            "Schematics %s job %s started on workspace %s", self.command, self.activity_id, self.workspace_id
        )
        return True

    async def wait(self, *, first_poll_after: float | None = None) -> JobOutcome:
        """Poll until the job ends or the deadline passes; never raises (ERROR carries the reason)."""
        try:
            if first_poll_after is not None:
                await asyncio.sleep(max(0.0, min(self.poll_interval, first_poll_after)))
            polls = 0
            while True:
                outcome, activity = await self._poll()
                polls += 1
                if outcome is not None:
                    return outcome
                if polls % LOG_EVERY_POLLS == 0:
                    await self._copy_log(activity)
                now = time.time()
                status = str(activity.get("status") or "").upper()
                if self.deadline is not None and now >= self.deadline:
                    self.log.error("Schematics job %s still %s at its deadline", self.activity_id, status)
                    return self.outcome(TIMEOUT, message=f"still {status or 'pending'} at its deadline")
                self.log.info("Schematics %s job %s: %s", self.command, self.activity_id, status or "pending")
                sleep = self.poll_interval
                if self.deadline is not None:
                    sleep = max(0.0, min(sleep, self.deadline - now))
                await asyncio.sleep(sleep)
        except Exception as exc:
            self.log.exception("Waiting for Schematics %s job %s failed", self.command, self.activity_id)
            return self.outcome(ERROR, message=str(exc))

    async def check(self, *, after: float) -> JobOutcome | None:
        """One poll ``after`` seconds from now: the outcome when the job has ended, else None.

        An operator checks once before it defers: a job that ends within moments finishes the task
        where it runs, without a round trip through the triggerer. A failing request means None:
        the trigger polls again.
        """
        await asyncio.sleep(after)
        try:
            outcome, _ = await self._poll()
        except Exception as exc:
            self.log.warning("Checking Schematics %s job %s failed: %s", self.command, self.activity_id, exc)
            return None
        return outcome

    async def _poll(self) -> tuple[JobOutcome | None, dict[str, Any]]:
        """Read the job once; when it has ended, also its log and outputs, and return its outcome."""
        from ibm_cloud_airflow.hooks.schematics import job_summary

        activity = await self.hook.get_activity(self.workspace_id, self.activity_id)
        status = str(activity.get("status") or "").upper()
        if status not in TERMINAL:
            return None, activity
        self.log.info("Schematics %s job %s ended: %s", self.command, self.activity_id, status)
        text = await self._copy_log(activity)
        tail = [] if text is None else text.splitlines()[-LOG_TAIL_LINES:]
        outputs = None
        if status == "COMPLETED" and self.read_outputs:
            outputs = await self.hook.get_outputs(self.workspace_id)
            self.log.info("Terraform outputs: %s", sorted(outputs))
        return self.outcome(status, job=job_summary(activity), log_tail=tail, outputs=outputs), activity

    async def _copy_log(self, activity: dict[str, Any]) -> str | None:
        """Copy the log's new lines into the task log; the whole log, or None when it was not read."""
        if not self.stream_logs:
            return None
        try:
            text = await self.hook.get_activity_log(self.workspace_id, self.activity_id, activity)
        except Exception as exc:  # logs are best effort; the job status decides
            self.log.warning("Could not read the job log yet: %s", exc)
            return None
        lines, self.log_offset = new_log_lines(text, self.log_offset)
        for line in lines:
            self.log.info("[schematics %s] %s", str(self.activity_id)[:8], line)
        return text

    async def stop(self, *, timeout: float | None = None) -> None:
        """Ask Schematics to stop the job (best effort: the caller is already failing or killed)."""
        if not (self.workspace_id and self.activity_id):
            return
        try:
            await self.hook.stop_activity(self.workspace_id, self.activity_id, timeout=timeout)
        except Exception as exc:
            self.log.error("Could not stop Schematics job %s: %s", self.activity_id, exc)


def submit_then_defer(operator: Any, context: Any, job: SchematicsJob, method_name: str) -> Any:
    """Submit ``job`` for ``operator``, check it once, and resume in ``method_name(context, event)``:
    at once when the job has already ended, else from the triggerer when it does (no worker slot).

    For an operator that runs a job of its own on the side (a release, a replacement); raises
    :class:`IbmCloudNotFoundError` when the workspace is gone.
    """
    if not asyncio.run(job.submit()):
        raise IbmCloudNotFoundError(f"workspace {job.workspace_id} does not exist: no {job.command} job")
    early = asyncio.run(job.check(after=FIRST_POLL_AFTER_SUBMIT_S))
    if early is not None:
        return getattr(operator, method_name)(context, early.to_event())
    trigger = job.trigger(str(operator.ibm_conn_id))
    operator.defer(trigger=trigger, method_name=method_name, timeout=job.defer_timeout())
    return None

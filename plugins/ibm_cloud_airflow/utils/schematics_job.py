"""One Schematics job (plan, apply, destroy), driven the same way by the operators and the trigger.

:class:`SchematicsJob` finds the workspace, attaches to the job an earlier try left running or
submits one, waits for it (copying its log into the task log every few polls, reading the whole
log once at the end), stops it at its deadline, and submits a failed job again while ``retries``
are left: :meth:`SchematicsJob.run`, one loop. It returns a :class:`JobOutcome`. The trigger runs
it on the triggerer's event loop; an operator runs the same coroutine under one ``asyncio.run``.
:func:`job_result` is the one place that turns a completed outcome into the task's return value
and XComs: ``execute_complete`` calls it, and so does a trigger that ends the task itself.

Three things are called "job" around here, each with a name of its own in this module:

* the Schematics job itself (IBM's *activity*, or *action*): :attr:`SchematicsJob.activity_id`;
* :class:`SchematicsJob`, what drives one, in a variable named ``job``;
* what a finished job did (:func:`~ibm_cloud_airflow.hooks.schematics.job_summary`):
  :attr:`JobOutcome.summary`, which the task pushes as XCom ``job`` (:data:`SUMMARY_XCOM_KEY`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudNotFoundError
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
#: The XCom key of a finished job's summary (the run report reads it).
SUMMARY_XCOM_KEY = "job"
#: The SchematicsJobTrigger arguments that describe the job; the trigger builds its job from them.
JOB_FIELDS = (
    "command",
    "workspace_id",
    "activity_id",
    "poll_interval",
    "job_timeout_s",
    "deadline",
    "stream_logs",
    "returns_outputs",
)


@dataclass
class JobOutcome:
    """How a job's wait ended; travels as a trigger event's payload (:meth:`to_event`)."""

    command: str
    #: COMPLETED, FAILED, STOPPED (the job's status), TIMEOUT (the deadline passed; a stop was
    #: requested), ERROR (the API kept failing) or NOTHING (no workspace to run the job on).
    status: str
    workspace_id: str | None = None
    activity_id: str | None = None
    #: :func:`hooks.schematics.job_summary` of the finished job (for run reports).
    summary: dict[str, Any] | None = None
    log_tail: list[str] = field(default_factory=list)
    #: Terraform outputs of a completed apply (sensitive ones masked).
    outputs: dict[str, Any] | None = None
    message: str = ""

    def to_event(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> JobOutcome:
        """The outcome a trigger reported; keys this version does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in event.items() if key in known})

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
        SUMMARY_XCOM_KEY: {**(outcome.summary or {}), "activity_id": outcome.activity_id},
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
    """Start one job (attach or submit), wait for it, and describe how it ended.

    :param hook: the async hook (the operators run the job under ``asyncio.run``); None for a job
        that only describes itself (:meth:`trigger_kwargs`).
    :param command: ``plan``, ``apply`` or ``destroy``.
    :param workspace_id: the workspace; blank: the one named at :meth:`start`.
    :param activity_id: the job to wait for; None until :meth:`start`.
    :param job_timeout_s: how long the job may run; the deadline is counted from the submission.
    :param deadline: epoch seconds (a job re-attached keeps its first deadline).
    :param returns_outputs: the task returns the Terraform outputs: read them when the job completes.
    :param retries: submit a failed job again this many times (:meth:`run`).
    :param attempt: submissions already retried (0 for the first).
    """

    def __init__(
        self,
        hook: SchematicsAsyncHook | None,
        command: str,
        workspace_id: str | None,
        activity_id: str | None = None,
        *,
        poll_interval: float = 30.0,
        job_timeout_s: float | None = None,
        deadline: float | None = None,
        stream_logs: bool = True,
        returns_outputs: bool = False,
        retries: int = 0,
        attempt: int = 0,
        log: logging.Logger | Any | None = None,
    ) -> None:
        self.hook: Any = hook
        self.command = command
        self.workspace_id = workspace_id or None
        self.activity_id = activity_id
        self.poll_interval = poll_interval
        self.job_timeout_s = job_timeout_s
        self.deadline = deadline
        self.stream_logs = stream_logs
        self.returns_outputs = returns_outputs
        self.retries = retries
        self.attempt = attempt
        self.log = log or logging.getLogger(__name__)
        #: job-log lines already copied into the task log
        self._log_offset = 0
        #: an attached job had already completed: waiting for it takes one poll
        self._completed = False

    # -- what the job is -------------------------------------------------------------------------
    def outcome(self, status: str, **details: Any) -> JobOutcome:
        return JobOutcome(
            command=self.command,
            status=status,
            workspace_id=self.workspace_id,
            activity_id=self.activity_id,
            **details,
        )

    def saved_state(self) -> dict[str, Any]:
        """What a task keeps in ``task_state_store`` to re-attach after a retry or a restart."""
        return {
            "workspace_id": self.workspace_id,
            "activity_id": self.activity_id,
            "attempt": self.attempt,
            "deadline": self.deadline,
        }

    def trigger_kwargs(self) -> dict[str, Any]:
        """This job as :class:`~ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger`
        arguments (:data:`JOB_FIELDS`); the trigger builds the same job from them."""
        return {name: getattr(self, name) for name in JOB_FIELDS}

    def defer_timeout(self) -> timedelta:
        """A safety net for the deferral only: the trigger's own deadline fires first and stops the job."""
        return timedelta(seconds=max(0.0, (self.deadline or time.time()) - time.time()) + 300)

    # -- the loop ---------------------------------------------------------------------------------
    async def run(
        self,
        workspace_name: str | None = None,
        *,
        saved: dict[str, Any] | None = None,
        earlier_try: bool = False,
        on_start: Callable[[SchematicsJob], None] | None = None,
        until_deferred: bool = False,
    ) -> JobOutcome | None:
        """Start the job and wait for it; a failed one is submitted again while retries are left.

        :param saved: :meth:`saved_state` of an earlier try, to re-attach to.
        :param earlier_try: an earlier try of the task may have submitted the job without saving
            it (a worker killed in between): look for one still running before submitting.
        :param on_start: called once the job runs (to save its state, before any waiting).
        :param until_deferred: wait for one check only, a moment after the start, and return None
            when the job still runs: the caller defers to the triggerer.
        :return: how the job ended; ``NOTHING`` when there is no workspace.
        """
        while True:
            if not await self.start(workspace_name, saved=saved, earlier_try=earlier_try):
                return self.outcome(NOTHING)
            if on_start is not None:
                on_start(self)
            first_poll_after = 0.0 if self._completed else FIRST_POLL_AFTER_SUBMIT_S
            if until_deferred:
                outcome = await self.check(after=first_poll_after)
                if outcome is None:
                    return None
            else:
                outcome = await self.wait(first_poll_after=first_poll_after)
            if not self.retry(outcome):
                return outcome
            saved, earlier_try = None, False

    def retry(self, outcome: JobOutcome) -> bool:
        """Whether a failed job is submitted again (a retry left; it is then counted)."""
        if outcome.status != "FAILED" or self.attempt >= self.retries:
            return False
        tail = "\n".join(outcome.log_tail) or "(the job log was not read)"
        self.attempt += 1
        self.log.warning(
            "Schematics %s job %s failed (try %d of %d); submitting it again. Log tail:\n%s",
            self.command,
            outcome.activity_id,
            self.attempt,
            self.retries + 1,
            tail,
        )
        self.activity_id, self._completed, self._log_offset = None, False, 0
        return True

    # -- starting ---------------------------------------------------------------------------------
    async def start(
        self, workspace_name: str | None, *, saved: dict[str, Any] | None = None, earlier_try: bool = False
    ) -> bool:
        """Find the workspace; attach to the saved job, or to this command's job still running there
        (``earlier_try``), or submit one. False when there is no workspace.

        A job re-attached keeps its first deadline, and the retries it had used.
        """
        if not await self.resolve(workspace_name):
            return False
        saved = saved or {}
        same_workspace = saved.get("workspace_id") == self.workspace_id
        if same_workspace and saved.get("activity_id") and await self.attach(saved["activity_id"]):
            self.deadline = saved.get("deadline") or self._deadline_from_now()
            self.attempt = int(saved.get("attempt") or self.attempt)
            return True
        if earlier_try and await self._attach_running():
            return True
        return await self.resolve_and_submit(workspace_name)

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
            self._completed = status == "COMPLETED"
            return True
        self.log.info("Saved %s job %s ended %s; submitting a new one", self.command, activity_id, status)
        return False

    async def _attach_running(self) -> bool:
        """Attach to this command's job running on the workspace: one an earlier try submitted
        and was killed before it could save its id. One listing, made on a retry only."""
        try:
            running = await self.hook.running_job(self.workspace_id, self.command)
        except IbmCloudNotFoundError:
            return False  # the submission finds out, and falls back to the workspace's name
        if not running:
            return False
        self.log.info("Attaching to %s job %s, still running from an earlier try", self.command, running)
        self.activity_id = running
        self.deadline = self._deadline_from_now()
        return True

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
        The hook logs the start.
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
        self.deadline = self._deadline_from_now()
        return True

    def _deadline_from_now(self) -> float | None:
        return None if self.job_timeout_s is None else time.time() + self.job_timeout_s

    # -- waiting ----------------------------------------------------------------------------------
    async def wait(self, *, first_poll_after: float | None = None) -> JobOutcome:
        """Poll until the job ends or the deadline passes; never raises (ERROR carries the reason).

        At the deadline the job is asked to stop (a ``TIMEOUT`` outcome), wherever it is waited for.
        """
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
                    self.log.error(
                        "Schematics job %s still %s at its deadline: stopping it", self.activity_id, status
                    )
                    await self.stop()
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
        if status == "COMPLETED" and self.returns_outputs:
            outputs = await self.hook.get_outputs(self.workspace_id)
            self.log.info("Terraform outputs: %s", sorted(outputs))
        return self.outcome(status, summary=job_summary(activity), log_tail=tail, outputs=outputs), activity

    async def _copy_log(self, activity: dict[str, Any]) -> str | None:
        """Copy the log's new lines into the task log; the whole log, or None when it was not read."""
        if not self.stream_logs:
            return None
        try:
            text = await self.hook.get_activity_log(self.workspace_id, self.activity_id, activity)
        except Exception as exc:  # logs are best effort; the job status decides
            self.log.warning("Could not read the job log yet: %s", exc)
            return None
        lines, self._log_offset = new_log_lines(text, self._log_offset)
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


def defer_to_trigger(
    operator: Any,
    job: SchematicsJob,
    method_name: str,
    *,
    ibm_conn_id: str,
    kwargs: dict[str, Any] | None = None,
    **trigger_kwargs: Any,
) -> None:
    """Defer ``operator`` to a :class:`~ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger`
    waiting for the started ``job``; it resumes in ``method_name(context, event, **kwargs)``.

    The trigger's first poll is one interval from now: the job was just started, or checked once.
    ``trigger_kwargs`` adds the task's own arguments (``workspace_name``, ``end_from_trigger``).
    """
    from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger

    trigger = SchematicsJobTrigger(
        **job.trigger_kwargs(),
        ibm_conn_id=ibm_conn_id,
        next_poll_at=time.time() + job.poll_interval,
        **trigger_kwargs,
    )
    operator.defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=job.defer_timeout())


def submit_then_defer(operator: Any, context: Any, job: SchematicsJob, method_name: str) -> Any:
    """Submit ``job`` for ``operator``, check it once, and resume in ``method_name(context, event)``:
    at once when the job has already ended, else from the triggerer when it does (no worker slot).

    For an operator that runs a job of its own on the side (a release, a replacement); raises
    :class:`IbmCloudNotFoundError` when the workspace is gone.
    """

    async def submit_and_check() -> tuple[bool, JobOutcome | None]:
        if not await job.submit():
            return False, None
        return True, await job.check(after=FIRST_POLL_AFTER_SUBMIT_S)

    submitted, early = asyncio.run(submit_and_check())
    if not submitted:
        raise IbmCloudNotFoundError(f"workspace {job.workspace_id} does not exist: no {job.command} job")
    if early is not None:
        return getattr(operator, method_name)(context, early.to_event())
    defer_to_trigger(operator, job, method_name, ibm_conn_id=str(operator.ibm_conn_id))
    return None

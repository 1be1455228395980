"""Trigger that waits for a Schematics job (and, for a task that starts in the triggerer, submits it)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook
from ibm_cloud_airflow.triggers.native import NativeTemplatesMixin, ends_here, push_xcoms
from ibm_cloud_airflow.utils.schematics_job import (
    ERROR,
    JOB_FIELDS,
    NOTHING,
    SchematicsJob,
    job_result,
)


class SchematicsJobTrigger(NativeTemplatesMixin, BaseTrigger):
    """Drives a :class:`~ibm_cloud_airflow.utils.schematics_job.SchematicsJob` and reports how it ended.

    The event's payload is the job's :class:`~ibm_cloud_airflow.utils.schematics_job.JobOutcome`
    (``JobOutcome.to_event()``); the operator's ``execute_complete`` decides what it means. The
    job's own arguments (:data:`~ibm_cloud_airflow.utils.schematics_job.JOB_FIELDS`) come from
    :meth:`SchematicsJob.trigger_kwargs`.

    :param command: ``plan``, ``apply`` or ``destroy``.
    :param workspace_id: the workspace; when blank, the one named ``workspace_name``.
    :param activity_id: the job to wait for. Without one, the trigger submits ``command`` first (a
        task that starts in the triggerer): no such workspace means nothing to run (``NOTHING``).
    :param deadline: epoch seconds; or ``job_timeout_s`` counted from the submission.
    :param next_poll_at: epoch seconds of the first poll (the operator has just polled); None: at once.
    :param returns_outputs: the task returns the Terraform outputs: read them when the job completes.
    :param end_from_trigger: end the task here when the job completed (or there was nothing to
        run), with the XComs ``execute_complete`` would push (:func:`job_result`), written through
        the Task SDK; any other outcome resumes the task on a worker.
    """

    def __init__(
        self,
        command: str,
        workspace_id: str | None = None,
        activity_id: str | None = None,
        *,
        workspace_name: str | None = None,
        ibm_conn_id: str = "ibm_cloud_default",
        poll_interval: float = 30.0,
        job_timeout_s: float | None = None,
        deadline: float | None = None,
        next_poll_at: float | None = None,
        stream_logs: bool = True,
        returns_outputs: bool = False,
        end_from_trigger: bool = False,
    ) -> None:
        super().__init__()
        self.command = command
        self.workspace_id = workspace_id
        self.activity_id = activity_id
        self.workspace_name = workspace_name
        self.ibm_conn_id = ibm_conn_id
        self.poll_interval = poll_interval
        self.job_timeout_s = job_timeout_s
        self.deadline = deadline
        self.next_poll_at = next_poll_at
        self.stream_logs = stream_logs
        self.returns_outputs = returns_outputs
        self.end_from_trigger = end_from_trigger
        self._job: SchematicsJob | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        names = (*JOB_FIELDS, "workspace_name", "ibm_conn_id", "next_poll_at", "end_from_trigger")
        return (
            "ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger",
            {name: getattr(self, name) for name in names},
        )

    def _new_job(self) -> SchematicsJob:
        job_kwargs = {name: getattr(self, name) for name in JOB_FIELDS}
        return SchematicsJob(SchematicsAsyncHook(self.ibm_conn_id), log=self.log, **job_kwargs)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        job = self._job = self._new_job()
        if self.activity_id:
            first_poll_after = None if self.next_poll_at is None else self.next_poll_at - time.time()
            outcome = await job.wait(first_poll_after=first_poll_after)
        else:
            try:
                # Started here: a restarted trigger finds its job running (HTTP 409) and attaches.
                outcome = await job.run(self.workspace_name)
            except Exception as exc:
                self.log.exception("Submitting the Schematics %s job failed", self.command)
                outcome = job.outcome(ERROR, message=str(exc))
        if ends_here(self) and outcome.status in ("COMPLETED", NOTHING):
            value, xcoms = job_result(outcome, returns_outputs=self.returns_outputs)
            await push_xcoms(self.task_instance, {"return_value": value, **xcoms})
            yield TaskSuccessEvent()
            return
        yield TriggerEvent(outcome.to_event())

    async def on_kill(self) -> None:
        """The user marked the deferred task failed/success or cleared it: stop the Schematics job."""
        job = self._job
        if job is None or not job.activity_id:  # killed before it submitted
            return
        self.log.warning("Task killed by the user: stopping Schematics job %s", job.activity_id)
        await job.stop(timeout=10.0)

"""Operators for IBM Cloud Schematics: create a workspace, plan, apply, destroy, delete.

Job operators (plan/apply/destroy) are deferrable by default and re-attach to their job after a
retry or a worker restart: the job id is written to ``context["task_state_store"]`` right after
the job is submitted and before any waiting, and a retry looks for a job of its command still
running on the workspace before it submits one. Given ``plan_task_id``, the operators take their
values from that task's plan (:mod:`ibm_cloud_airflow.utils.plan`). See ``docs/provider.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from ibm_cloud_airflow.hooks.budget import TEARDOWN, WORK
from ibm_cloud_airflow.links.schematics import SchematicsWorkspaceLink
from ibm_cloud_airflow.utils.plan import native_by_default, require_type, value_or_plan_template

# The hooks, the trigger and the IBM SDKs are imported where a task runs, not at module level:
# the dag-processor imports this module again at every parse of the DAG file.
if TYPE_CHECKING:
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook
    from ibm_cloud_airflow.utils.schematics_job import JobOutcome, SchematicsJob


class SchematicsCreateWorkspaceOperator(BaseOperator):
    """Create (or reuse, or adopt) a Schematics workspace, upload a Terraform folder and set its variables.

    * Without ``workspace_id``: a workspace named ``workspace_name`` is created, or reused when it already
      exists (a retry never creates a second one).
    * With ``workspace_id``: that existing workspace is *adopted*: it is tagged
      ``airflow-lease:<workspace_name>`` (waiting up to ``lease_wait`` while another run holds a lease),
      then the template and variables are uploaded to it.

    Returns the workspace id (XCom ``return_value``).

    :param plan_task_id: take every value below that is not given from this task's plan
        (:class:`~ibm_cloud_airflow.utils.plan.WorkspacePlan`: ``workspace_name``,
        ``terraform_variables``, ``secure_variable_refs``, ``tags``, ``region``,
        ``existing_workspace_id``, ``workspace_description``).
    :param workspace_name: workspace name, e.g. ``airflow-<slug>`` (templated).
    :param template_dir: local Terraform folder, sent as a tar (templated).
    :param variables: Terraform variables (templated); must not hold secrets.
    :param secure_variables: Terraform variables sent as ``secure``; each value is a *reference*
        ``"<conn_id>:password"``, ``"<conn_id>:login"``, ``"<conn_id>:extra.<key>"`` or ``""``, resolved
        at execute time so the secret never appears in rendered fields (templated).
    :param tags: workspace tags (templated).
    :param location: Schematics location (default: the connection's region) (templated).
    :param resource_group: resource group id (default: the connection's) (templated).
    :param terraform_version: e.g. ``terraform_v1.13`` (templated).
    :param workspace_id: adopt this existing workspace instead of creating one (templated).
    :param description: description of a created workspace (templated).
    :param lease_wait: how long to wait for another run's lease on an adopted workspace.
    :param ready_timeout: how long to wait for the workspace to become ready after the upload.
    :param ibm_conn_id: IBM Cloud connection (templated).
    """

    template_fields: Sequence[str] = (
        "workspace_name",
        "template_dir",
        "variables",
        "secure_variables",
        "tags",
        "location",
        "resource_group",
        "terraform_version",
        "workspace_id",
        "description",
        "ibm_conn_id",
    )
    template_fields_renderers = {"variables": "json", "secure_variables": "json"}
    operator_extra_links = (SchematicsWorkspaceLink(),)
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        template_dir: str,
        workspace_name: str | None = None,
        plan_task_id: str | None = None,
        variables: dict[str, Any] | None = None,
        secure_variables: dict[str, str] | None = None,
        tags: list[str] | None = None,
        location: str | None = None,
        resource_group: str | None = None,
        terraform_version: str = "terraform_v1.13",
        workspace_id: str | None = None,
        description: str | None = None,
        lease_wait: timedelta = timedelta(minutes=30),
        lease_poll_interval: float = 30.0,
        ready_timeout: timedelta = timedelta(minutes=15),
        ibm_conn_id: str = "ibm_cloud_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**native_by_default(kwargs))
        self.workspace_name = value_or_plan_template(workspace_name, plan_task_id, "workspace_name")
        self.template_dir = template_dir
        self.variables = value_or_plan_template(variables, plan_task_id, "terraform_variables")
        self.secure_variables = value_or_plan_template(secure_variables, plan_task_id, "secure_variable_refs")
        self.tags = value_or_plan_template(tags, plan_task_id, "tags")
        self.location = value_or_plan_template(location, plan_task_id, "region")
        self.resource_group = resource_group
        self.terraform_version = terraform_version
        self.workspace_id = value_or_plan_template(workspace_id, plan_task_id, "existing_workspace_id")
        self.description = value_or_plan_template(description, plan_task_id, "workspace_description")
        self.lease_wait = lease_wait
        self.lease_poll_interval = lease_poll_interval
        self.ready_timeout = ready_timeout
        self.ibm_conn_id = ibm_conn_id
        if lease_poll_interval <= 0:
            raise ValueError("lease_poll_interval must be positive")

    @cached_property
    def hook(self) -> SchematicsHook:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=self.ibm_conn_id)

    def execute(self, context: Any) -> str:
        from ibm_cloud_airflow.utils.secrets import resolve_secret_references

        name = require_type(self.task_id, "workspace_name", self.workspace_name, str)
        if not name:
            from ibm_cloud_airflow.exceptions import IbmCloudConfigError

            raise IbmCloudConfigError(f"{self.task_id}: workspace_name is empty; pass the workspace name")
        variables = require_type(self.task_id, "variables", self.variables, dict) or {}
        refs = require_type(self.task_id, "secure_variables", self.secure_variables, dict)
        secure = resolve_secret_references(refs)
        _refuse_leaked_secrets(variables, secure)
        hook = self.hook
        hook.config  # noqa: B018 - fail fast on a bad connection before any call
        workspace_id = require_type(self.task_id, "workspace_id", self.workspace_id, str)
        if workspace_id:
            return self._adopt(context, workspace_id, name, variables, secure)
        workspace = hook.create_workspace(
            name=name,
            template_dir=self.template_dir,
            variables=variables,
            secure_variables=secure,
            tags=require_type(self.task_id, "tags", self.tags, list),
            location=self.location or None,
            resource_group=self.resource_group or None,
            terraform_version=self.terraform_version,
            description=self.description or None,
            ready_timeout=self.ready_timeout.total_seconds(),
            # Only an earlier try can have created it (a failed create request is looked up anyway).
            reuse_existing=context["ti"].try_number != 1,
        )
        SchematicsWorkspaceLink.persist(context, workspace["id"])
        self.log.info("Workspace %s is %s", workspace["id"], workspace.get("status"))
        return workspace["id"]

    def _adopt(
        self, context: Any, workspace_id: str, name: str, variables: dict[str, Any], secure: dict[str, str]
    ) -> str:
        from ibm_cloud_airflow.hooks.schematics import build_template_tar
        from ibm_cloud_airflow.utils.leases import acquire_lease

        hook = self.hook
        SchematicsWorkspaceLink.persist(context, workspace_id)
        acquire_lease(
            hook,
            workspace_id,
            name,
            wait_s=self.lease_wait.total_seconds(),
            poll_s=self.lease_poll_interval,
        )
        ready_s = self.ready_timeout.total_seconds()
        hook.wait_for_workspace_ready(workspace_id, timeout=ready_s)
        hook.upload_template(workspace_id, build_template_tar(self.template_dir))
        hook.update_variables(workspace_id, variables, secure)
        hook.wait_for_workspace_ready(workspace_id, timeout=ready_s)
        self.log.info("Adopted workspace %s for %s", workspace_id, name)
        return workspace_id


def _refuse_leaked_secrets(variables: dict[str, Any], secrets: dict[str, str]) -> None:
    """Fail when a plain (non-secure) variable holds a secret value (e.g. a rendered password)."""
    from ibm_cloud_airflow.exceptions import IbmCloudConfigError

    values = [s for s in secrets.values() if s and len(s) >= 6]
    for name, value in variables.items():
        text = str(value)
        if any(secret in text for secret in values):
            raise IbmCloudConfigError(
                f"variable {name!r} contains the value of a secure variable; pass it through "
                "secure_variables as a '<conn_id>:password'-style reference instead"
            )


class _SchematicsJobOperator(BaseOperator):
    """Shared logic of plan/apply/destroy: start the job (re-attach or submit), wait or defer, finish.

    The job itself (attach or submit, the deadline, polls, logs, retries, outcome) is a
    :class:`~ibm_cloud_airflow.utils.schematics_job.SchematicsJob`, which the trigger drives too;
    :meth:`_finish` alone decides what its outcome means for the task.

    :param workspace_id: the workspace (templated); blank means the one named ``workspace_name``.
    :param workspace_name: the workspace's name, looked up when there is no id (templated).
    :param plan_task_id: take ``workspace_name`` (and the apply's ``skip``: ``plan_only``) from the
        plan this task returned (:mod:`ibm_cloud_airflow.utils.plan`).
    :param ibm_conn_id: IBM Cloud connection (templated).
    :param deferrable: wait in the triggerer (no worker slot while the job runs).
    :param start_from_trigger: with ``deferrable``, submit in the triggerer too: no worker start
        at all on the way to success (``dag.test()`` ignores it). The job id is not in
        ``task_state_store`` then: a restarted trigger submits again, and attaches to the job it
        finds running (HTTP 409 on the workspace).
    :param end_from_trigger: a completed job ends the task in the triggerer, with the XComs
        ``execute_complete`` would push; any other outcome resumes the task on a worker.
    :param poll_interval: seconds between job polls.
    :param job_timeout: how long the job may run; then it is stopped and the task fails.
    :param stream_logs: copy the job's log into the task log.
    :param job_retries: submit a failed job again this many times before failing the task.
    :param log_tail_lines: job-log lines in a failure's message.
    """

    command: ClassVar[str] = ""
    #: A failed job raises AirflowFailException (no task retry) when True.
    fail_without_retry: ClassVar[bool] = False
    #: Which share of the Schematics request budget the task's requests use.
    budget_tier: ClassVar[str] = WORK
    #: The task's return value is the Terraform outputs (apply) rather than the job id.
    returns_outputs: ClassVar[bool] = False
    #: No workspace means nothing to do (destroy), rather than a configuration error.
    nothing_without_workspace: ClassVar[bool] = False
    #: The plan field that skips this task when true (apply: ``plan_only``).
    skip_field: ClassVar[str | None] = None
    # Defaults per command, as class attributes: the subclasses need no __init__ (each one costs a
    # copy of the DAG's params at parse time).
    default_job_timeout: ClassVar[timedelta] = timedelta(hours=1)
    default_job_retries: ClassVar[int] = 0

    template_fields: Sequence[str] = ("workspace_id", "workspace_name", "skip", "ibm_conn_id")
    operator_extra_links = (SchematicsWorkspaceLink(),)
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        workspace_id: str | None = None,
        workspace_name: str | None = None,
        plan_task_id: str | None = None,
        skip: bool | None = None,
        ibm_conn_id: str = "ibm_cloud_default",
        deferrable: bool = True,
        start_from_trigger: bool = False,
        end_from_trigger: bool = False,
        poll_interval: float = 30.0,
        job_timeout: timedelta | None = None,
        stream_logs: bool = True,
        job_retries: int | None = None,
        log_tail_lines: int = 40,
        **kwargs: Any,
    ) -> None:
        super().__init__(**native_by_default(kwargs))
        self.workspace_id = workspace_id
        self.workspace_name = value_or_plan_template(workspace_name, plan_task_id, "workspace_name")
        self.skip = value_or_plan_template(
            skip, plan_task_id if self.skip_field else None, self.skip_field or ""
        )
        self.ibm_conn_id = ibm_conn_id
        self.deferrable = deferrable
        self.end_from_trigger = end_from_trigger
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout or self.default_job_timeout
        self.stream_logs = stream_logs
        self.job_retries = self.default_job_retries if job_retries is None else job_retries
        self.log_tail_lines = log_tail_lines
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if self.job_retries < 0:
            raise ValueError("job_retries must be >= 0")
        #: the job this try waits for here (on_kill stops it)
        self._job: SchematicsJob | None = None
        self.start_from_trigger = start_from_trigger and deferrable
        if self.start_from_trigger:
            from airflow.triggers.base import StartTriggerArgs

            # Keys named like template fields are rendered by the triggerer into the trigger.
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger",
                trigger_kwargs={
                    **self._new_job(connected=False).trigger_kwargs(),
                    "workspace_id": self.workspace_id,  # the template, rendered by the triggerer
                    "ibm_conn_id": self.ibm_conn_id,
                    **self._task_trigger_kwargs(),
                },
                next_method="execute_complete",
                next_kwargs=None,
                timeout=self.job_timeout + timedelta(minutes=10),
            )

    @cached_property
    def hook(self) -> SchematicsHook:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=self.ibm_conn_id, default_tier=self.budget_tier)

    @property
    def state_key(self) -> str:
        return f"ibm_schematics_{self.command}_job"

    def _new_job(self, *, attempt: int = 0, connected: bool = True) -> SchematicsJob:
        """The task's job, not started; ``connected=False``: one without a hook or a workspace, that
        only describes the task's settings (the trigger's arguments at parse time, a retry's count)."""
        from ibm_cloud_airflow.utils.schematics_job import SchematicsJob

        hook = workspace_id = None
        if connected:
            from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook

            hook = SchematicsAsyncHook(self.ibm_conn_id, default_tier=self.budget_tier)
            workspace_id = require_type(self.task_id, "workspace_id", self.workspace_id, str)
        return SchematicsJob(
            hook,
            self.command,
            workspace_id,
            poll_interval=self.poll_interval,
            job_timeout_s=self.job_timeout.total_seconds(),
            stream_logs=self.stream_logs,
            returns_outputs=self.returns_outputs,
            retries=self.job_retries,
            attempt=attempt,
            log=self.log,
        )

    def _task_trigger_kwargs(self) -> dict[str, Any]:
        """The trigger's arguments that are the task's rather than the job's."""
        return {"workspace_name": self.workspace_name, "end_from_trigger": self.end_from_trigger}

    def execute(self, context: Any) -> Any:
        if require_type(self.task_id, "skip", self.skip, bool):
            raise AirflowSkipException(f"{self.task_id}: skipped ({self.skip_field})")
        from ibm_cloud_airflow.utils.task_state import TaskState

        saved = TaskState(context, self.log).get(self.state_key)
        # Only an earlier try can have submitted a job whose id it had no time to save.
        try_number = getattr(context.get("ti"), "try_number", None)
        earlier_try = isinstance(try_number, int) and try_number > 1
        return self._run(context, saved=saved, earlier_try=earlier_try)

    def execute_complete(self, context: Any, event: dict[str, Any], attempt: int = 0) -> Any:
        from ibm_cloud_airflow.utils.schematics_job import JobOutcome

        outcome = JobOutcome.from_event(event)
        if self._new_job(attempt=attempt, connected=False).retry(outcome):
            return self._run(context, attempt=attempt + 1)
        return self._finish(context, outcome)

    def _run(
        self,
        context: Any,
        *,
        attempt: int = 0,
        saved: dict[str, Any] | None = None,
        earlier_try: bool = False,
    ) -> Any:
        """Start the job and wait for it: here, or after one check in the triggerer (one ``asyncio.run``)."""
        from ibm_cloud_airflow.utils.schematics_job import defer_to_trigger
        from ibm_cloud_airflow.utils.task_state import TaskState

        state = TaskState(context, self.log)

        def started(job: SchematicsJob) -> None:
            # Saved before waiting: a retry or a restarted worker re-attaches instead of submitting again.
            self._job = job
            SchematicsWorkspaceLink.persist(context, job.workspace_id or "")
            state.set(self.state_key, job.saved_state())

        job = self._new_job(attempt=attempt)
        name = require_type(self.task_id, "workspace_name", self.workspace_name, str)
        outcome = asyncio.run(
            job.run(
                name, saved=saved, earlier_try=earlier_try, on_start=started, until_deferred=self.deferrable
            )
        )
        if outcome is None:
            defer_to_trigger(
                self,
                job,
                "execute_complete",
                ibm_conn_id=self.ibm_conn_id,
                kwargs={"attempt": job.attempt},
                **self._task_trigger_kwargs(),
            )
        return self._finish(context, outcome)

    def _finish(self, context: Any, outcome: JobOutcome) -> Any:
        """The one place that turns a job's outcome into the task's result or error."""
        from ibm_cloud_airflow.utils.schematics_job import ERROR, NOTHING, TIMEOUT, job_result

        if outcome.status == NOTHING and not self.nothing_without_workspace:
            from ibm_cloud_airflow.exceptions import IbmCloudConfigError

            raise IbmCloudConfigError(
                f"{self.task_id}: no workspace to {self.command} (workspace_id {self.workspace_id!r}, "
                f"workspace_name {self.workspace_name!r}); pass the workspace id"
            )
        what = f"Schematics {self.command} job {outcome.activity_id}"
        if outcome.status in ("COMPLETED", NOTHING):
            if outcome.status == "COMPLETED":
                self.log.info("%s completed", what)
            value, xcoms = job_result(outcome, returns_outputs=self.returns_outputs)
            for key, xcom in xcoms.items():
                context["ti"].xcom_push(key=key, value=xcom)
            return value
        if outcome.status == ERROR:
            from ibm_cloud_airflow.exceptions import IbmCloudApiError

            self._fail(
                context,
                IbmCloudApiError(
                    f"Waiting for {what} failed: {outcome.message}; a retry re-attaches to the job"
                ),
            )
        if outcome.status == TIMEOUT:
            # The job's wait asked Schematics to stop it at the deadline.
            self._fail(
                context,
                AirflowException(f"{what} did not finish within {self.job_timeout}; a stop was requested"),
            )
        tail = "\n".join(outcome.log_tail[-self.log_tail_lines :]) or "(the job log was not read)"
        error = outcome.first_error
        message = (
            f"{what} on workspace {outcome.workspace_id} ended {outcome.status}"
            f"{': ' + error if error else ''}. Last lines of the job log:\n{tail}"
        )
        self._fail(
            context, AirflowFailException(message) if self.fail_without_retry else AirflowException(message)
        )

    def _fail(self, context: Any, error: Exception) -> NoReturn:
        """Raise ``error``, led by the cause of the task's failure, and push that cause (XCom
        ``failure_cause``): the first try's error, or the one classified as a cause (no capacity, a
        quota), not a later try's consequence of it (:mod:`ibm_cloud_airflow.utils.failure_cause`).
        The cause is also the message's last line: the last line of the task's log."""
        from ibm_cloud_airflow.utils.failure_cause import describe, error_text, push, record_try

        cause = describe(record_try(context, error))
        push(context, cause)
        if cause is None:
            raise error
        first, *rest = str(error).splitlines() or [""]
        if cause["cause"] != error_text(error):
            first = f"{cause['cause']} (the cause, from try {cause['try']}; this try: {first})"
        if rest or first != str(error):
            raise type(error)("\n".join([first, *rest, f"The cause of this failure: {cause['cause']}"]))
        raise error

    def on_kill(self) -> None:
        """Waiting here (not deferred): ask Schematics to stop the job (one quick request).

        Called from a signal handler, possibly while the job's event loop runs in this thread: the
        request goes through the synchronous hook.
        """
        job = self._job
        if job is None or not (job.workspace_id and job.activity_id):
            return
        try:
            self.hook.stop_activity(job.workspace_id, job.activity_id, timeout=3.0)
        except Exception as exc:
            self.log.error("Could not stop Schematics job %s: %s", job.activity_id, exc)


class SchematicsPlanOperator(_SchematicsJobOperator):
    """Run ``terraform plan`` in a Schematics workspace; a failed plan fails the task without retry.

    Returns the plan job id. Parameters: see :class:`_SchematicsJobOperator`.
    """

    command = "plan"
    fail_without_retry = True
    default_job_timeout = timedelta(minutes=30)


class SchematicsApplyOperator(_SchematicsJobOperator):
    """Run ``terraform apply``; returns the Terraform outputs (also XCom key ``outputs``).

    Sensitive outputs are replaced by ``"<sensitive>"``. XCom ``activity_id`` holds the job id,
    ``job`` its summary. With ``plan_task_id``, a plan whose ``plan_only`` is true skips the task
    (``skip``, templated, does the same without a plan).
    """

    command = "apply"
    returns_outputs = True
    skip_field = "plan_only"
    default_job_timeout = timedelta(hours=2)


class SchematicsDestroyOperator(_SchematicsJobOperator):
    """Run ``terraform destroy``; idempotent and safe to run when nothing exists.

    The workspace is ``workspace_id`` or, when that is empty (the create task failed), the one
    named ``workspace_name``. No workspace, a deleted one or a never-uploaded (``DRAFT``) one means
    there is nothing to destroy: the task succeeds. A failed destroy job is submitted again
    ``job_retries`` times (default 1) before the task fails. Its requests use the teardown share of
    the request budget, which work and polls cannot exhaust.
    """

    command = "destroy"
    budget_tier = TEARDOWN
    nothing_without_workspace = True
    default_job_retries = 1


class SchematicsDeleteWorkspaceOperator(BaseOperator):
    """Delete a workspace (idempotent), or only release the run's lease on an adopted one.

    When the workspace carries any ``airflow-lease:`` tag, or ``keep_workspace`` is True, it is not
    deleted: the lease ``airflow-lease:<workspace_name>`` is removed instead.

    :param workspace_id: the workspace (templated); blank falls back to ``workspace_name``.
    :param workspace_name: the workspace name, and the lease holder name (templated).
    :param plan_task_id: take ``workspace_name`` and ``keep_workspace`` from this task's plan.
    :param destroy_resources: let Schematics destroy resources first (normally the destroy task did).
    :param keep_workspace: never delete, only release the lease (templated).
    :param check_leases: read the workspace's tags first and keep it when another run leased it;
        ``False`` deletes at once (one request less), for a workspace the run created itself.
    :param ibm_conn_id: IBM Cloud connection (templated).
    """

    template_fields: Sequence[str] = ("workspace_id", "workspace_name", "keep_workspace", "ibm_conn_id")
    operator_extra_links = (SchematicsWorkspaceLink(),)
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        workspace_id: str | None = None,
        workspace_name: str | None = None,
        plan_task_id: str | None = None,
        destroy_resources: bool = False,
        keep_workspace: bool | None = None,
        check_leases: bool = True,
        ibm_conn_id: str = "ibm_cloud_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**native_by_default(kwargs))
        self.workspace_id = workspace_id
        self.workspace_name = value_or_plan_template(workspace_name, plan_task_id, "workspace_name")
        self.destroy_resources = destroy_resources
        self.keep_workspace = value_or_plan_template(keep_workspace, plan_task_id, "keep_workspace")
        self.check_leases = check_leases
        self.ibm_conn_id = ibm_conn_id

    @cached_property
    def hook(self) -> SchematicsHook:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=self.ibm_conn_id)

    def execute(self, context: Any) -> bool:
        from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError
        from ibm_cloud_airflow.utils.leases import lease_tags, release_lease

        hook = self.hook
        name = require_type(self.task_id, "workspace_name", self.workspace_name, str)
        keep = bool(require_type(self.task_id, "keep_workspace", self.keep_workspace, bool))
        workspace_id = hook.resolve_workspace(
            require_type(self.task_id, "workspace_id", self.workspace_id, str) or None, name
        )
        if workspace_id is None:
            self.log.info("No workspace (id %r, name %r): nothing to delete", self.workspace_id, name)
            return False
        SchematicsWorkspaceLink.persist(context, workspace_id)
        if not self.check_leases and not keep:
            if hook.delete_workspace(workspace_id, destroy_resources=self.destroy_resources):
                return True
            # Gone by id: a task cleared after the run's cleanup may have created it again by name.
            again = hook.resolve_workspace(None, name) if name else None
            if again and again != workspace_id:
                return hook.delete_workspace(again, destroy_resources=self.destroy_resources)
            return False
        try:
            workspace = hook.get_workspace(workspace_id)
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s is already gone", workspace_id)
            return False
        leases = lease_tags(workspace)
        if keep or leases:
            if not name and leases:
                self.log.warning("No workspace_name given: releasing every lease on %s", workspace_id)
            release_lease(hook, workspace_id, name or None)
            self.log.info("Kept workspace %s (adopted/shared); lease released", workspace_id)
            return False
        return hook.delete_workspace(workspace_id, destroy_resources=self.destroy_resources)

"""Operators for IBM Cloud Schematics: create a workspace, plan, apply, destroy, delete.

Job operators (plan/apply/destroy) are deferrable by default and re-attach to their job after a
retry or a worker restart: the job id is written to ``context["task_state_store"]`` right after
the job is submitted and before any waiting. See ``docs/provider.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from ibm_cloud_airflow.hooks.budget import TEARDOWN, WORK
from ibm_cloud_airflow.links.schematics import SchematicsWorkspaceLink
from ibm_cloud_airflow.utils.ids import is_blank_id as _blank

# The hooks, the trigger and the IBM SDKs are imported where a task runs, not at module level:
# the dag-processor imports this module again at every parse of the DAG file.
if TYPE_CHECKING:
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook

_EVENT_TO_STATUS = {"success": "COMPLETED", "failed": "FAILED", "stopped": "STOPPED"}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _state_store(context: Any) -> Any:
    """``context["task_state_store"]`` (Airflow 3.3+) or ``None`` where it does not exist."""
    try:
        return context.get("task_state_store") if hasattr(context, "get") else None
    except Exception:
        return None


def _try_number(context: Any) -> int | None:
    ti = context.get("ti") if hasattr(context, "get") else None
    return getattr(ti, "try_number", None)


def _resolve_workspace_id(hook: SchematicsHook, workspace_id: Any, workspace_name: Any) -> str | None:
    if not _blank(workspace_id):
        return str(workspace_id)
    if not _blank(workspace_name):
        found = hook.find_workspace_by_name(str(workspace_name))
        if found:
            return found["id"]
    return None


class SchematicsCreateWorkspaceOperator(BaseOperator):
    """Create (or reuse, or adopt) a Schematics workspace, upload a Terraform folder and set its variables.

    * Without ``workspace_id``: a workspace named ``workspace_name`` is created, or reused when it already
      exists (a retry never creates a second one).
    * With ``workspace_id``: that existing workspace is *adopted*: it is tagged
      ``airflow-lease:<workspace_name>`` (waiting up to ``lease_wait`` while another run holds a lease),
      then the template and variables are uploaded to it.

    Returns the workspace id (XCom ``return_value``).

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
        workspace_name: str,
        template_dir: str,
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
        super().__init__(**kwargs)
        self.workspace_name = workspace_name
        self.template_dir = template_dir
        self.variables = variables
        self.secure_variables = secure_variables
        self.tags = tags
        self.location = location
        self.resource_group = resource_group
        self.terraform_version = terraform_version
        self.workspace_id = workspace_id
        self.description = description
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

        secure = resolve_secret_references(self.secure_variables)
        _refuse_leaked_secrets(self.variables or {}, secure)
        hook = self.hook
        hook.config  # noqa: B018 - fail fast on a bad connection before any call
        if not _blank(self.workspace_id):
            workspace_id = str(self.workspace_id)
            SchematicsWorkspaceLink.persist(context, workspace_id)
            hook.acquire_lease(
                workspace_id,
                self.workspace_name,
                wait_s=self.lease_wait.total_seconds(),
                poll_s=self.lease_poll_interval,
            )
            hook.wait_for_workspace_ready(workspace_id, timeout=self.ready_timeout.total_seconds())
            from ibm_cloud_airflow.hooks.schematics import build_template_tar

            hook.upload_template(workspace_id, build_template_tar(self.template_dir))
            hook.update_variables(workspace_id, self.variables, secure)
            hook.wait_for_workspace_ready(workspace_id, timeout=self.ready_timeout.total_seconds())
            self.log.info("Adopted workspace %s for %s", workspace_id, self.workspace_name)
            return workspace_id
        workspace = hook.create_workspace(
            name=self.workspace_name,
            template_dir=self.template_dir,
            variables=self.variables,
            secure_variables=secure,
            tags=self.tags,
            location=self.location,
            resource_group=self.resource_group,
            terraform_version=self.terraform_version,
            description=self.description or None,
            ready_timeout=self.ready_timeout.total_seconds(),
            # Only an earlier try can have created it (a failed create request is looked up anyway).
            reuse_existing=_try_number(context) != 1,
        )
        SchematicsWorkspaceLink.persist(context, workspace["id"])
        self.log.info("Workspace %s is %s", workspace["id"], workspace.get("status"))
        return workspace["id"]


def _refuse_leaked_secrets(variables: dict[str, Any], secrets: dict[str, str]) -> None:
    """Fail when a plain (non-secure) variable holds a secret value (e.g. a rendered password)."""
    from ibm_cloud_airflow.hooks.base import IbmCloudConfigError

    values = [s for s in secrets.values() if s and len(s) >= 6]
    for name, value in variables.items():
        text = str(value)
        if any(secret in text for secret in values):
            raise IbmCloudConfigError(
                f"variable {name!r} contains the value of a secure variable; pass it through "
                "secure_variables as a '<conn_id>:password'-style reference instead"
            )


class _SchematicsJobOperator(BaseOperator):
    """Shared logic of plan/apply/destroy: submit or re-attach, wait (deferred or polling), finish."""

    command: ClassVar[str] = ""
    #: A failed job raises AirflowFailException (no task retry) when True.
    fail_without_retry: ClassVar[bool] = False
    #: Which share of the Schematics request budget the task's requests use.
    budget_tier: ClassVar[str] = WORK
    #: The task's return value is the Terraform outputs (apply) rather than the job id.
    returns_outputs: ClassVar[bool] = False
    #: How long a job may run when ``job_timeout`` is not given (subclasses set their own, so
    #: that they need no ``__init__``: each one costs a copy of the DAG's params at parse time).
    default_job_timeout: ClassVar[timedelta] = timedelta(hours=1)

    template_fields: Sequence[str] = ("workspace_id", "ibm_conn_id")
    operator_extra_links = (SchematicsWorkspaceLink(),)
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        workspace_id: str | None = None,
        ibm_conn_id: str = "ibm_cloud_default",
        deferrable: bool = True,
        poll_interval: float = 30.0,
        job_timeout: timedelta | None = None,
        stream_logs: bool = True,
        job_retries: int = 0,
        log_tail_lines: int = 40,
        end_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.end_from_trigger = end_from_trigger
        self.workspace_id = workspace_id
        self.ibm_conn_id = ibm_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout or self.default_job_timeout
        self.stream_logs = stream_logs
        self.job_retries = job_retries
        self.log_tail_lines = log_tail_lines
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if job_retries < 0:
            raise ValueError("job_retries must be >= 0")
        self._workspace_id: str | None = None
        self._activity_id: str | None = None
        self._killed = False
        self._finished_job: dict[str, Any] | None = None
        self._event_log_tail: list[str] | None = None

    @cached_property
    def hook(self) -> SchematicsHook:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=self.ibm_conn_id, default_tier=self.budget_tier)

    @property
    def state_key(self) -> str:
        return f"ibm_schematics_{self.command}_job"

    # -- hooks for subclasses ------------------------------------------------------------------
    def resolve_workspace(self, context: Any) -> str | None:
        from ibm_cloud_airflow.hooks.base import IbmCloudConfigError

        if _blank(self.workspace_id):
            raise IbmCloudConfigError(f"{self.task_id}: workspace_id is empty; pass the workspace id")
        return str(self.workspace_id)

    def on_job_success(self, context: Any, workspace_id: str, activity_id: str) -> Any:
        return activity_id

    def start_job(self, workspace_id: str) -> str | None:
        """Submit the job; its id, or None when there is nothing to run it on."""
        return self.hook.run_command(self.command, workspace_id)

    # -- execute -----------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        from ibm_cloud_airflow.hooks.schematics import TERMINAL_JOB_STATUSES

        workspace_id = self.resolve_workspace(context)
        if workspace_id is None:
            return None
        self._workspace_id = workspace_id
        SchematicsWorkspaceLink.persist(context, workspace_id)
        store = _state_store(context)
        saved = self._reattach(store, workspace_id)
        if saved is not None:
            activity_id, status, attempt, submitted_at = saved
            self._activity_id = activity_id
            if status in TERMINAL_JOB_STATUSES:
                return self._finish(context, workspace_id, activity_id, status, attempt, submitted_at)
            return self._wait(context, workspace_id, activity_id, attempt, submitted_at)
        return self._submit_and_wait(context, workspace_id, attempt=0)

    def _store_get(self, store: Any) -> dict[str, Any] | None:
        if store is None:
            return None
        try:
            value = store.get(self.state_key)
        except Exception as exc:  # the store is an optimisation; never fail the task for it
            self.log.warning("task_state_store unavailable (%s); a retry will submit a new job", exc)
            return None
        return value if isinstance(value, dict) else None

    def _store_set(self, store: Any, value: dict[str, Any]) -> None:
        if store is None:
            return
        try:
            store.set(self.state_key, value)
        except Exception as exc:
            self.log.warning("Could not save the job id in task_state_store (%s)", exc)

    def _reattach(self, store: Any, workspace_id: str) -> tuple[str, str, int, float] | None:
        from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError
        from ibm_cloud_airflow.hooks.schematics import TERMINAL_JOB_STATUSES

        saved = self._store_get(store)
        if not saved or saved.get("workspace_id") != workspace_id or not saved.get("activity_id"):
            return None
        activity_id = saved["activity_id"]
        attempt = int(saved.get("attempt") or 0)
        submitted_at = float(saved.get("submitted_at") or time.time())
        try:
            activity = self.hook.get_activity(workspace_id, activity_id)
        except IbmCloudNotFoundError:
            self.log.info("Saved %s job %s no longer exists; submitting a new one", self.command, activity_id)
            return None
        status = str(activity.get("status") or "").upper()
        if status not in TERMINAL_JOB_STATUSES:
            self.log.info("Re-attaching to running %s job %s (%s)", self.command, activity_id, status)
            return activity_id, status, attempt, submitted_at
        if status == "COMPLETED" and not self._superseded(workspace_id, activity):
            self.log.info("%s job %s already completed; not submitting it again", self.command, activity_id)
            return activity_id, status, attempt, submitted_at
        self.log.info("Saved %s job %s ended %s; submitting a new one", self.command, activity_id, status)
        return None

    def _superseded(self, workspace_id: str, activity: dict[str, Any]) -> bool:
        """True when another job ran on the workspace after this one (its result may be stale)."""
        when = str(activity.get("performed_at") or "")
        for other in self.hook.list_activities(workspace_id):
            if (
                other.get("action_id") != activity.get("action_id")
                and str(other.get("performed_at") or "") > when
            ):
                return True
        return False

    def _submit_and_wait(self, context: Any, workspace_id: str, attempt: int) -> Any:
        store = _state_store(context)
        activity_id = self.start_job(workspace_id)
        if activity_id is None:
            return None
        submitted_at = time.time()
        self._activity_id = activity_id
        # Save before waiting: a retry or a restarted worker re-attaches instead of submitting again.
        self._store_set(
            store,
            {
                "workspace_id": workspace_id,
                "activity_id": activity_id,
                "attempt": attempt,
                "submitted_at": submitted_at,
            },
        )
        context["ti"].xcom_push(key="activity_id", value=activity_id)
        return self._wait(context, workspace_id, activity_id, attempt, submitted_at)

    def _deadline(self, submitted_at: float) -> float:
        return submitted_at + self.job_timeout.total_seconds()

    def _wait(
        self, context: Any, workspace_id: str, activity_id: str, attempt: int, submitted_at: float
    ) -> Any:
        from ibm_cloud_airflow.triggers.schematics import SchematicsJobTrigger

        deadline = self._deadline(submitted_at)
        if self.deferrable:
            remaining = max(0.0, deadline - time.time())
            self.defer(
                trigger=SchematicsJobTrigger(
                    workspace_id=workspace_id,
                    activity_id=activity_id,
                    ibm_conn_id=self.ibm_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    log_offset=0,
                    stream_logs=self.stream_logs,
                    end_from_trigger=self.end_from_trigger,
                    return_outputs=self.returns_outputs,
                ),
                method_name="execute_complete",
                kwargs={"attempt": attempt, "submitted_at": submitted_at},
                # A safety net only: the trigger's own deadline fires first and stops the job.
                timeout=timedelta(seconds=remaining + 300),
            )
        status = self._poll(workspace_id, activity_id, deadline)
        if status is None:
            self._on_timeout(workspace_id, activity_id)
        return self._finish(context, workspace_id, activity_id, status, attempt, submitted_at)

    def _poll(self, workspace_id: str, activity_id: str, deadline: float) -> str | None:
        """Poll in-process; returns the terminal status, or None at the deadline."""
        from ibm_cloud_airflow.hooks.schematics import TERMINAL_JOB_STATUSES, job_summary
        from ibm_cloud_airflow.triggers.schematics import LOG_EVERY_POLLS

        offset, polls = 0, 0
        while True:
            if self._killed:
                raise AirflowException(f"{self.command} job {activity_id}: task was killed; stop requested")
            activity = self.hook.get_activity(workspace_id, activity_id)
            status = str(activity.get("status") or "").upper()
            polls += 1
            if status in TERMINAL_JOB_STATUSES or polls % LOG_EVERY_POLLS == 0:
                offset = self._stream_log(workspace_id, activity, offset)
            if status in TERMINAL_JOB_STATUSES:
                self._finished_job = job_summary(activity)
                return status
            now = time.time()
            if now >= deadline:
                return None
            self.log.info("Schematics %s job %s: %s", self.command, activity_id, status or "(pending)")
            time.sleep(max(0.0, min(self.poll_interval, deadline - now)))

    def _stream_log(self, workspace_id: str, activity: dict[str, Any], offset: int) -> int:
        from ibm_cloud_airflow.triggers.schematics import new_log_lines

        if not self.stream_logs:
            return offset
        activity_id = str(activity.get("action_id") or self._activity_id)
        try:
            text = self.hook.get_activity_log(workspace_id, activity_id, activity)
        except Exception as exc:
            self.log.warning("Could not read the job log yet: %s", exc)
            return offset
        lines, offset = new_log_lines(text, offset)
        for line in lines:
            self.log.info("[schematics %s] %s", activity_id[:8], line)
        return offset

    def execute_complete(
        self, context: Any, event: dict[str, Any] | str, attempt: int = 0, submitted_at: float | None = None
    ) -> Any:
        from ibm_cloud_airflow.hooks.base import IbmCloudApiError

        if not isinstance(event, dict):
            event = self._ended_by_trigger(context, event)
        if event.get("status") == "nothing":  # started in the triggerer, found no workspace
            return None
        workspace_id = event.get("workspace_id") or self._workspace_id
        activity_id = event.get("activity_id") or self._activity_id
        self._finished_job = event.get("job")
        self._event_log_tail = event.get("log_tail")
        self._workspace_id, self._activity_id = workspace_id, activity_id
        status = event.get("status")
        if status == "error":
            raise IbmCloudApiError(
                f"Waiting for Schematics {self.command} job {activity_id} failed: {event.get('message')}; "
                "a retry re-attaches to the job"
            )
        if status == "timeout":
            self._on_timeout(workspace_id, activity_id)
        if status not in _EVENT_TO_STATUS:
            raise AirflowException(f"Unexpected trigger event {event!r}")
        return self._finish(
            context, workspace_id, activity_id, _EVENT_TO_STATUS[status], attempt, submitted_at or time.time()
        )

    def _ended_by_trigger(self, context: Any, payload: Any) -> dict[str, Any]:
        """``dag.test()`` resumes a task whose trigger ended it (``TaskSuccessEvent``) with only the
        event's payload, ``"success"``: finish it here from the job saved at submit time."""
        if str(payload) != "success":
            raise AirflowException(f"Unexpected trigger event {payload!r}")
        saved = self._store_get(_state_store(context)) or {}
        activity_id = saved.get("activity_id") or context["ti"].xcom_pull(
            task_ids=self.task_id, key="activity_id"
        )
        workspace_id = saved.get("workspace_id") or self.workspace_id
        return {"status": "success", "workspace_id": workspace_id, "activity_id": activity_id}

    def _on_timeout(self, workspace_id: str, activity_id: str) -> None:
        try:
            self.hook.stop_activity(workspace_id, activity_id)
        except Exception as exc:
            self.log.error("Could not stop job %s after its timeout: %s", activity_id, exc)
        raise AirflowException(
            f"Schematics {self.command} job {activity_id} did not finish within {self.job_timeout}; "
            "a stop was requested"
        )

    def _job_summary(self, workspace_id: str, activity_id: str) -> dict[str, Any]:
        """The finished job's summary: from the trigger's event when deferred, else one more read."""
        from ibm_cloud_airflow.hooks.schematics import job_summary

        if self._finished_job is None:
            self._finished_job = job_summary(self.hook.get_activity(workspace_id, activity_id))
        return {**self._finished_job, "activity_id": activity_id}

    def _log_tail(self, workspace_id: str, activity_id: str) -> str:
        if self._event_log_tail is not None:  # the trigger read the final log already
            return "\n".join(self._event_log_tail[-self.log_tail_lines :])
        try:
            lines = self.hook.get_activity_log(workspace_id, activity_id).splitlines()
        except Exception as exc:
            return f"(job log unavailable: {exc})"
        return "\n".join(lines[-self.log_tail_lines :])

    def _finish(
        self,
        context: Any,
        workspace_id: str,
        activity_id: str,
        status: str,
        attempt: int,
        submitted_at: float,
    ) -> Any:
        if status == "COMPLETED":
            self.log.info("Schematics %s job %s completed", self.command, activity_id)
            context["ti"].xcom_push(key="job", value=self._job_summary(workspace_id, activity_id))
            return self.on_job_success(context, workspace_id, activity_id)
        tail = self._log_tail(workspace_id, activity_id)
        if status == "FAILED" and attempt < self.job_retries:
            self.log.warning(
                "Schematics %s job %s failed (try %d of %d); submitting it again. Log tail:\n%s",
                self.command,
                activity_id,
                attempt + 1,
                self.job_retries + 1,
                tail,
            )
            return self._submit_and_wait(context, workspace_id, attempt + 1)
        # Terraform's first "Error:" line goes on the first line: what a one-line summary shows
        errors = (line.split("Error:", 1)[1].strip() for line in tail.splitlines() if "Error:" in line)
        error = next(errors, "")
        message = (
            f"Schematics {self.command} job {activity_id} on workspace {workspace_id} ended {status}"
            f"{': ' + error if error else ''}. Last lines of the job log:\n{tail}"
        )
        if self.fail_without_retry:
            raise AirflowFailException(message)
        raise AirflowException(message)

    def on_kill(self) -> None:
        """Sync mode: ask Schematics to stop the running job (one quick request; no waiting)."""
        self._killed = True
        if self._workspace_id and self._activity_id:
            try:
                self.hook.stop_activity(self._workspace_id, self._activity_id, timeout=3.0)
            except Exception as exc:
                self.log.error("Could not stop Schematics job %s: %s", self._activity_id, exc)


class SchematicsPlanOperator(_SchematicsJobOperator):
    """Run ``terraform plan`` in a Schematics workspace; a failed plan fails the task without retry.

    Returns the plan job id. See :class:`_SchematicsJobOperator` parameters: ``workspace_id``
    (templated), ``ibm_conn_id`` (templated), ``deferrable``, ``poll_interval``, ``job_timeout``,
    ``stream_logs``, ``job_retries``, ``log_tail_lines``.
    """

    command = "plan"
    fail_without_retry = True
    default_job_timeout = timedelta(minutes=30)


class SchematicsApplyOperator(_SchematicsJobOperator):
    """Run ``terraform apply``; returns the Terraform outputs (also XCom key ``outputs``).

    Sensitive outputs are replaced by ``"<sensitive>"``. XCom ``activity_id`` holds the job id.
    """

    command = "apply"
    returns_outputs = True
    default_job_timeout = timedelta(hours=2)

    def on_job_success(self, context: Any, workspace_id: str, activity_id: str) -> dict[str, Any]:
        outputs = self.hook.get_outputs(workspace_id)
        context["ti"].xcom_push(key="outputs", value=outputs)
        self.log.info("Terraform outputs: %s", sorted(outputs))
        return outputs


class SchematicsDestroyOperator(_SchematicsJobOperator):
    """Run ``terraform destroy``; idempotent and safe to run when nothing exists.

    The workspace is ``workspace_id`` or, when that is empty (e.g. rendered as ``""``/``"None"`` because
    the create task failed), the workspace named ``workspace_name``. No workspace, a deleted workspace or
    a never-uploaded (``DRAFT``) one means there is nothing to destroy: the task succeeds. A failed
    destroy job is submitted again ``job_retries`` times (default 1) before the task fails.

    With ``start_from_trigger=True`` (and ``deferrable``) no worker is started to submit the
    destroy: the scheduler hands the task to the triggerer, which renders ``workspace_id`` and
    ``workspace_name``, submits the job and waits for it (``SchematicsJobTrigger`` with
    ``command="destroy"``). A failed job comes back to a worker for ``job_retries``. The job id is
    not in ``task_state_store`` then: a trigger restarted mid-job (triggerer restart) submits
    again, which waits for the workspace lock and destroys nothing more. ``dag.test()`` ignores
    ``start_from_trigger``.

    :param workspace_name: fallback lookup by name (templated).
    :param start_from_trigger: submit and wait in the triggerer, with no worker start.
    """

    command = "destroy"
    budget_tier = TEARDOWN
    template_fields: Sequence[str] = ("workspace_id", "workspace_name", "ibm_conn_id")

    def __init__(
        self,
        *,
        workspace_name: str | None = None,
        job_retries: int = 1,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(job_retries=job_retries, **kwargs)
        self.workspace_name = workspace_name
        self.start_from_trigger = start_from_trigger and self.deferrable
        if self.start_from_trigger:
            from airflow.triggers.base import StartTriggerArgs

            # Keys named like template fields are rendered by the triggerer into the trigger.
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="ibm_cloud_airflow.triggers.schematics.SchematicsJobTrigger",
                trigger_kwargs={
                    "workspace_id": self.workspace_id,
                    "workspace_name": workspace_name,
                    "ibm_conn_id": self.ibm_conn_id,
                    "command": self.command,
                    "poll_interval": self.poll_interval,
                    "job_timeout_s": self.job_timeout.total_seconds(),
                    "stream_logs": self.stream_logs,
                    "end_from_trigger": self.end_from_trigger,
                },
                next_method="execute_complete",
                next_kwargs=None,
                timeout=self.job_timeout + timedelta(minutes=10),
            )

    def resolve_workspace(self, context: Any) -> str | None:
        from ibm_cloud_airflow.hooks.schematics import workspace_to_destroy

        workspace_id = workspace_to_destroy(self.hook, self.workspace_id, self.workspace_name)
        if workspace_id is None:
            self.log.info(
                "No workspace (id %r, name %r): nothing to destroy", self.workspace_id, self.workspace_name
            )
        return workspace_id

    def start_job(self, workspace_id: str) -> str | None:
        from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError

        try:
            return super().start_job(workspace_id)
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s does not exist: nothing to destroy", workspace_id)
            return None


class SchematicsDeleteWorkspaceOperator(BaseOperator):
    """Delete a workspace (idempotent), or only release the run's lease on an adopted one.

    When the workspace carries any ``airflow-lease:`` tag, or ``keep_workspace`` is True, it is not
    deleted: the lease ``airflow-lease:<workspace_name>`` is removed instead.

    :param workspace_id: the workspace (templated); blank/``"None"`` falls back to ``workspace_name``.
    :param workspace_name: the workspace name, and the lease holder name (templated).
    :param destroy_resources: let Schematics destroy resources first (normally the destroy task did).
    :param keep_workspace: never delete, only release the lease (templated; ``"True"``/``"False"``
        strings are accepted).
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
        destroy_resources: bool = False,
        keep_workspace: bool | str = False,
        check_leases: bool = True,
        ibm_conn_id: str = "ibm_cloud_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workspace_id = workspace_id
        self.workspace_name = workspace_name
        self.destroy_resources = destroy_resources
        self.keep_workspace = keep_workspace
        self.check_leases = check_leases
        self.ibm_conn_id = ibm_conn_id

    @cached_property
    def hook(self) -> SchematicsHook:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=self.ibm_conn_id)

    def execute(self, context: Any) -> bool:
        from ibm_cloud_airflow.hooks.base import IbmCloudNotFoundError
        from ibm_cloud_airflow.hooks.schematics import LEASE_TAG_PREFIX

        hook = self.hook
        workspace_id = _resolve_workspace_id(hook, self.workspace_id, self.workspace_name)
        if workspace_id is None:
            self.log.info(
                "No workspace (id %r, name %r): nothing to delete", self.workspace_id, self.workspace_name
            )
            return False
        SchematicsWorkspaceLink.persist(context, workspace_id)
        if not self.check_leases and not _truthy(self.keep_workspace):
            return hook.delete_workspace(workspace_id, destroy_resources=self.destroy_resources)
        try:
            workspace = hook.get_workspace(workspace_id)
        except IbmCloudNotFoundError:
            self.log.info("Workspace %s is already gone", workspace_id)
            return False
        leases = [t for t in workspace.get("tags") or [] if str(t).startswith(LEASE_TAG_PREFIX)]
        if _truthy(self.keep_workspace) or leases:
            holder = None if _blank(self.workspace_name) else str(self.workspace_name)
            if holder is None and leases:
                self.log.warning("No workspace_name given: releasing every lease on %s", workspace_id)
            hook.release_lease(workspace_id, holder)
            self.log.info("Kept workspace %s (adopted/shared); lease released", workspace_id)
            return False
        return hook.delete_workspace(workspace_id, destroy_resources=self.destroy_resources)

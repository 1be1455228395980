"""The training wait that replaces lost servers, and that a clear after the run's cleanup resumes.

:class:`TrainingWaitSensor` is the pipeline's ``wait_for_output``: the provider's COS marker wait,
plus one thing the provider cannot know, what to do when the servers are gone.

* A server that stopped or disappeared without a marker, while the workload reported no failure (a
  host failure, capacity reclaimed, a server deleted by hand), is replaced: the run's stopped
  servers are deleted, the workspace is applied again (Terraform creates what is missing), and
  the training resumes from its last checkpoint in COS. At most ``max_recoveries`` times per try.
  A server stopped because its trusted profile cannot write to COS is not replaced: a new one
  would stop alike.
* A workload that wrote ``_FAILED`` is not recovered: a bug or a NaN would fail again. Except a
  multi-worker server's ``"cause": "peer_lost"``: another server vanished under it, which is the
  loss above seen from the other side.
* A clear of this task after the run's cleanup finds no servers, and maybe a ``_FAILED`` of the
  try before: that marker is moved aside (``failed-attempts/``), and the servers are created again.
  Clearing is a person's decision, so it does not count against ``max_recoveries``.

Every recovery is logged as a warning and pushed as XCom ``recoveries`` (the run report shows it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from gpu_pipeline.access import COS_ACCESS_DENIED, explain_stopped_servers
from gpu_pipeline.server_check import GONE, STOPPED, STOPPED_STATES, liveness_check, run_servers
from gpu_pipeline.workspace import RecreatesWorkspace
from ibm_cloud_airflow.sensors.cos import CosKeySensor
from ibm_cloud_airflow.utils.cos_watch import WatchResult, WatchStatus
from ibm_cloud_airflow.utils.plan import plan_field_template, require_type, value_or_plan_template
from ibm_cloud_airflow.utils.task_state import TaskState

RECOVERIES_KEY = "gpu_pipeline_recoveries"
# The cause a multi-worker server writes in _FAILED when another server vanished (workload/distributed.py).
PEER_LOST = "peer_lost"
# How long a deleted server may take to leave the VPC API's listing before the apply.
SERVER_DELETE_TIMEOUT_S = 600


class TrainingWaitSensor(RecreatesWorkspace, CosKeySensor):
    """:class:`CosKeySensor` on the run's servers, that replaces lost ones (see the module's docs).

    Every ``server_check_interval`` seconds while it waits, it lists the run's servers
    (:mod:`gpu_pipeline.server_check`): one stopped or gone without its marker ends the wait. A
    server stopped because its trusted profile cannot write to COS fails the task, explained from
    the profile's IAM policies; any other lost server is replaced.

    :param ibm_conn_id: the IBM Cloud connection: VPC (the servers), IAM, Schematics.
    :param outputs_task_id: the apply task whose Terraform outputs name the servers'
        ``trusted_profile_id``.
    :param server_check_interval: seconds between two listings of the run's servers.
    :param workspace_id: the run's workspace (templated); gone or blank: found by the plan's name.
    :param template_dir: the Terraform folder, should the workspace have to be created again.
    :param poll_interval: seconds between Schematics job polls while servers are replaced.
    :param job_timeout: how long the apply that replaces them may run.
    """

    template_fields: Sequence[str] = (
        *CosKeySensor.template_fields,
        *RecreatesWorkspace.workspace_template_fields,
        "workspace_id",
        "workspace_name",
        "max_recoveries",
        "slug",
        "trusted_profile_id",
    )

    def __init__(
        self,
        *,
        plan_task_id: str,
        ibm_conn_id: str = "ibm_cloud_default",
        outputs_task_id: str | None = None,
        server_check_interval: float = 30.0,
        workspace_id: str | None = None,
        template_dir: str | None = None,
        poll_interval: float = 30.0,
        job_timeout: timedelta = timedelta(minutes=90),
        **kwargs: Any,
    ) -> None:
        slug = plan_field_template(plan_task_id, "slug")
        super().__init__(
            plan_task_id=plan_task_id,
            liveness_check=liveness_check(ibm_conn_id, slug, server_check_interval),
            **kwargs,
        )
        self.ibm_conn_id = ibm_conn_id
        self.slug = slug
        self.trusted_profile_id = (
            plan_field_template(outputs_task_id, "trusted_profile_id") if outputs_task_id else None
        )
        self.workspace_id = workspace_id
        self.workspace_name = value_or_plan_template(None, plan_task_id, "workspace_name")
        self.max_recoveries = value_or_plan_template(None, plan_task_id, "max_recoveries")
        self._explanation: str | None = None
        self.poll_interval = poll_interval
        self.job_timeout = job_timeout
        self._init_workspace_fields(plan_task_id, template_dir)

    @cached_property
    def workspace_hook(self) -> Any:
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        return SchematicsHook(ibm_conn_id=str(self.ibm_conn_id))

    # -- outcomes ---------------------------------------------------------------------------------
    def outcome(self, result: WatchResult) -> bool:
        """A stopped server's failure says why, from its trusted profile's IAM policies."""
        if result.status is WatchStatus.LOST and result.reason == STOPPED:
            result = replace(result, message=f"{result.message}; {self._stopped_explanation()}")
        return super().outcome(result)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[str]:
        result = WatchResult.from_event(event)
        failed = result.status is WatchStatus.FAILED
        if failed and result.failed_key and self._left_by_an_earlier_try(context, result.failed_key):
            self._move_aside(result.failed_key)
            return self._recover(context, "a cleared try found the previous try's failure", counted=False)
        if result.status is WatchStatus.LOST and (result.reason == GONE or not self._denied_cos()):
            return self._recover(context, result.message, servers=list(result.lost))
        if failed and result.cause == PEER_LOST:
            # A multi-worker run's server saw another one vanish mid-exchange. Only a server that is
            # really gone or stopped (the VPC API says) is a loss to recover; a training process that
            # died on a running server is a workload failure.
            lost = self._lost_servers(context)
            if lost is not None:
                return self._recover(context, f"{lost.message} ({result.message})", servers=list(lost.lost))
        return super().execute_complete(context, event)

    def _lost_servers(self, context: Any) -> WatchResult | None:
        """The liveness check, now (None when it cannot be made: the failure then stands)."""
        watch = self.marker_watch(context)
        try:
            return watch.liveness.run(watch.pending()) if watch.liveness else None
        except Exception as exc:
            self.log.warning("Could not check the servers' state: %s", exc)
            return None

    def _left_by_an_earlier_try(self, context: Any, key: str | None) -> bool:
        """A ``_FAILED`` older than this try, on a later try (a clear): not this try's failure."""
        ti = context["ti"]
        started = getattr(ti, "start_date", None)
        if not key or (getattr(ti, "try_number", 1) or 1) <= 1 or started is None:
            return False
        head = self.hook.head(str(self.bucket_name), key) or {}
        written = head.get("LastModified")
        return written is not None and written < started

    def _move_aside(self, key: str) -> None:
        folder, _, name = key.rpartition("/")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = f"{folder}/failed-attempts/{stamp}{name}"
        self.hook.copy(str(self.bucket_name), key, kept)
        self.hook.delete_keys(str(self.bucket_name), [key])
        self.log.warning("Moved the previous try's %s to %s", key, kept)

    def _stopped_explanation(self) -> str:
        """Why servers that cannot report stopped: one sentence from IAM (asked once per task)."""
        if self._explanation is None:
            self._explanation = explain_stopped_servers(
                str(self.ibm_conn_id), self.trusted_profile_id or "", str(self.bucket_name)
            )
        return self._explanation

    def _denied_cos(self) -> bool:
        return self._stopped_explanation().startswith(COS_ACCESS_DENIED)

    # -- recovery ---------------------------------------------------------------------------------
    def _recover(self, context: Any, reason: str, *, counted: bool = True, servers: list[str] | None = None):
        store = TaskState(context, self.log)
        history: list[dict[str, Any]] = list((store.get(RECOVERIES_KEY) or {}).get("list", []))
        limit = int(self.max_recoveries or 0)
        used = sum(1 for r in history if r.get("counted"))
        if counted and used >= limit:
            raise AirflowFailException(
                f"{reason}; the servers were not replaced: this try used its {limit} "
                "recovery(ies) (max_recoveries)"
            )
        history.append(
            {
                "number": len(history) + 1,
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reason": reason,
                "servers": servers or [],
                "counted": counted,
            }
        )
        store.set(RECOVERIES_KEY, {"list": history})
        context["ti"].xcom_push(key="recoveries", value=history)
        self.log.warning(
            "Recovery %d (%s): %s. Replacing the servers; the training resumes from its last checkpoint.",
            len(history),
            f"{used + 1} of {limit} allowed" if counted else "a clear, not counted",
            reason,
        )
        self._move_aside_peer_failures()
        self._delete_stopped_servers()
        return self._apply(context, self._ensure_workspace())

    def _move_aside_peer_failures(self) -> None:
        """The other servers' ``_FAILED`` written because a server was lost: consequences, not causes."""
        bucket = str(self.bucket_name)
        for folder in self.watched_folders:
            key = f"{folder.rstrip('/')}/_FAILED"
            body = self.hook.read_json(bucket, key) if self.hook.head(bucket, key) else None
            if isinstance(body, dict) and body.get("cause") == PEER_LOST:
                self._move_aside(key)

    def _delete_stopped_servers(self) -> None:
        """Terraform does not start a stopped server: delete it, so that the apply creates it again."""
        from ibm_cloud_airflow.hooks.vpc import VpcHook, delete_resource

        vpc = VpcHook(str(self.ibm_conn_id))
        stopped = [i for i in run_servers(vpc, str(self.slug)) if i.get("status") in STOPPED_STATES]
        for instance in stopped:
            self.log.info("Deleting stopped server %s (%s)", instance["name"], instance["id"])
            delete_resource(vpc, "instance", instance["id"])
        ids = {i["id"] for i in stopped}
        deadline = time.monotonic() + SERVER_DELETE_TIMEOUT_S
        while ids and any(i["id"] in ids for i in vpc.list_all("instance")):
            if time.monotonic() > deadline:
                raise AirflowFailException(
                    f"Stopped servers {sorted(ids)} were not deleted within 10 minutes"
                )
            time.sleep(min(self.poll_interval, 10))

    def _apply(self, context: Any, workspace_id: str | None) -> Any:
        """Apply the workspace again (Terraform creates what is missing); then :meth:`replaced`."""
        from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook
        from ibm_cloud_airflow.utils.schematics_job import SchematicsJob, submit_then_defer

        if not workspace_id:
            raise AirflowFailException(f"{self.task_id}: no workspace to create the servers again")
        job = SchematicsJob(
            SchematicsAsyncHook(str(self.ibm_conn_id)),
            "apply",
            workspace_id,
            poll_interval=self.poll_interval,
            job_timeout_s=self.job_timeout.total_seconds(),
            log=self.log,
        )
        return submit_then_defer(self, context, job, "replaced")

    def replaced(self, context: Any, event: dict[str, Any]) -> Any:
        """The servers are back: wait for the markers again, with fresh stall clocks."""
        from ibm_cloud_airflow.utils.schematics_job import JobOutcome

        outcome = JobOutcome.from_event(event)
        if outcome.status != "COMPLETED":
            raise AirflowFailException(
                f"Replacing the servers failed: the apply ended {outcome.status}: "
                f"{outcome.first_error or outcome.message}"
            )
        self.log.info(
            "Servers replaced; waiting for %s again",
            require_type(self.task_id, "bucket_key", self.bucket_key, list),
        )
        self.restart_watch(context)
        return self.execute(context)

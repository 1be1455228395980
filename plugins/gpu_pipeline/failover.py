"""The apply that moves to the next placement when a zone has no capacity for the run's servers.

One task, one apply at a time: apply at the current placement; when IBM cannot start the servers
there (:data:`~gpu_pipeline.placement.CAPACITY_CODES`), destroy what that apply created, point the
workspace's ``zone`` and ``gpu_profile`` variables at the next placement, and apply again (a
Schematics apply plans first). Each wait is deferred, like the plain apply's. Where the run stands
is kept in ``task_state_store`` (a retry or a restarted worker goes on from the same placement)
and pushed as XCom ``placement`` after each step, for the task's XCom tab and the run report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from gpu_pipeline.placement import Placement, PlacementState, capacity_error, explain_capacity
from gpu_pipeline.workspace import RecreatesWorkspace
from ibm_cloud_airflow.operators.schematics import SchematicsApplyOperator
from ibm_cloud_airflow.utils.plan import require_type, value_or_plan_template
from ibm_cloud_airflow.utils.task_state import TaskState

if TYPE_CHECKING:
    from ibm_cloud_airflow.utils.schematics_job import JobOutcome

STATE_KEY = "gpu_pipeline_placement"


class PlacementApplyOperator(RecreatesWorkspace, SchematicsApplyOperator):
    """:class:`SchematicsApplyOperator` with placement failover; returns the Terraform outputs.

    :param placements: ``[{"zone", "gpu_profile"}, ...]`` in order (templated; default: the plan's).
    :param placement_timeout_minutes: after this long, no new placement is tried (templated).
    :param template_dir: the Terraform folder, should the run's workspace have to be created again
        (:class:`~gpu_pipeline.workspace.RecreatesWorkspace`).

    ``job_retries`` (default 0) would submit a failed apply again at the same placement before the
    failover sees it (the job's own loop): leave it at 0, the failover is the apply's retry.
    """

    template_fields: Sequence[str] = (
        *SchematicsApplyOperator.template_fields,
        *RecreatesWorkspace.workspace_template_fields,
        "placements",
        "placement_timeout_minutes",
    )

    def __init__(
        self,
        *,
        plan_task_id: str | None = None,
        placements: list[dict[str, str]] | None = None,
        placement_timeout_minutes: int | str | None = None,
        template_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(plan_task_id=plan_task_id, **kwargs)
        self.placements = value_or_plan_template(placements, plan_task_id, "placements")
        self.placement_timeout_minutes = value_or_plan_template(
            placement_timeout_minutes, plan_task_id, "placement_timeout_minutes"
        )
        self._init_workspace_fields(plan_task_id, template_dir)

    # -- state ------------------------------------------------------------------------------------
    def _load(self, context: Any) -> PlacementState:
        saved = TaskState(context, self.log).get(STATE_KEY)
        if saved:
            return PlacementState.from_dict(saved)
        listed = require_type(self.task_id, "placements", self.placements, list) or []
        variables = self._variables()
        placements = [Placement(p["zone"], p["gpu_profile"]) for p in listed] or [
            Placement(variables["zone"], variables["gpu_profile"])
        ]
        minutes = float(self.placement_timeout_minutes or 0)
        return PlacementState(placements, deadline=time.time() + minutes * 60 if minutes else None)

    def _save(self, context: Any, state: PlacementState) -> None:
        TaskState(context, self.log).set(STATE_KEY, state.to_dict())
        context["ti"].xcom_push(key="placement", value=state.summary())

    def _variables(self) -> dict[str, Any]:
        return dict(require_type(self.task_id, "variables", self.variables, dict) or {})

    # -- flow -------------------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if require_type(self.task_id, "skip", self.skip, bool):
            return super().execute(context)  # skips the task (plan_only)
        state = self._load(context)
        if not state.attempts or state.attempts[-1].outcome != "running":
            if state.index > 0:  # a retry or a clear: the workspace may hold another placement's values
                self._point_workspace_at(state.current)
            state.start()
        self.log.info("Placement %d of %d: %s", state.index + 1, len(state.placements), state.current)
        self._save(context, state)
        return super().execute(context)

    def _finish(self, context: Any, outcome: JobOutcome) -> Any:
        state = self._load(context)
        if outcome.status == "COMPLETED":
            state.end("succeeded")
            self._save(context, state)
            self.log.info("Servers started at %s", state.current)
            return super()._finish(context, outcome)
        if outcome.status != "FAILED":
            return super()._finish(context, outcome)
        error = outcome.first_error or "\n".join(outcome.log_tail[-5:])
        code = capacity_error(" ".join([error, *outcome.log_tail]))
        if code is None:  # not about capacity: fail (and retry) where it is, as any apply
            state.end("failed", error=error)
            self._save(context, state)
            return super()._finish(context, outcome)
        state.end("no_capacity", error=explain_capacity(code, " ".join([error, *outcome.log_tail])))
        if state.exhausted or state.timed_out:
            self._save(context, state)
            # The same placements minutes later would fail alike: no task retry.
            raise AirflowFailException(state.why_exhausted())
        failed = state.current
        state.index += 1
        self._save(context, state)
        self.log.warning(
            "No capacity at %s (%s): releasing what the apply created, then trying %s (placement %d of %d)",
            failed,
            code,
            state.current,
            state.index + 1,
            len(state.placements),
        )
        return self._release(context, outcome.workspace_id)

    def _release(self, context: Any, workspace_id: str | None) -> Any:
        """Destroy the failed placement's partial apply; then :meth:`released` applies again."""
        from ibm_cloud_airflow.hooks.budget import TEARDOWN
        from ibm_cloud_airflow.hooks.schematics import SchematicsAsyncHook
        from ibm_cloud_airflow.utils.schematics_job import SchematicsJob, submit_then_defer

        job = SchematicsJob(
            SchematicsAsyncHook(self.ibm_conn_id, default_tier=TEARDOWN),
            "destroy",
            workspace_id,
            poll_interval=self.poll_interval,
            job_timeout_s=self.job_timeout.total_seconds(),
            stream_logs=self.stream_logs,
            log=self.log,
        )
        return submit_then_defer(self, context, job, "released")

    def released(self, context: Any, event: dict[str, Any]) -> Any:
        """The partial apply is gone: point the workspace at the next placement and apply there."""
        from ibm_cloud_airflow.utils.schematics_job import JobOutcome

        outcome = JobOutcome.from_event(event)
        if outcome.status != "COMPLETED":
            # A retry of this task goes on at the next placement; destroy cleans up in any case.
            raise AirflowException(
                f"{self.task_id}: releasing the failed placement's servers ended {outcome.status}: "
                f"{outcome.first_error or outcome.message}"
            )
        state = self._load(context)
        self._point_workspace_at(state.current)
        state.start()
        self._save(context, state)
        self.log.info("Placement %d of %d: %s", state.index + 1, len(state.placements), state.current)
        return self._run(context)  # a new apply at the new placement, never the failed one

    def _point_workspace_at(self, placement: Placement) -> None:
        from ibm_cloud_airflow.utils.secrets import resolve_secret_references

        workspace_id = self.hook.resolve_workspace(
            require_type(self.task_id, "workspace_id", self.workspace_id, str) or None,
            require_type(self.task_id, "workspace_name", self.workspace_name, str),
        )
        variables = {**self._variables(), "zone": placement.zone, "gpu_profile": placement.gpu_profile}
        secure = resolve_secret_references(
            require_type(self.task_id, "secure_variables", self.secure_variables, dict)
        )
        self.hook.update_variables(workspace_id, variables, secure)
        self.hook.wait_for_workspace_ready(workspace_id, timeout=600)
        self.log.info("Workspace %s now places the servers in %s", workspace_id, placement)

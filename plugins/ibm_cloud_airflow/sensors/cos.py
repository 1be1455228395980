"""Sensor that waits for a workload's COS completion markers (deferrable by default)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow.triggers.base import StartTriggerArgs

from ibm_cloud_airflow.triggers.cos import CosKeyTrigger
from ibm_cloud_airflow.utils.cos_watch import (
    CosMarkerWatch,
    LivenessCheck,
    WatchResult,
    WatchState,
    WatchStatus,
    key_list,
)
from ibm_cloud_airflow.utils.plan import (
    native_by_default,
    plan_field_template,
    require_type,
    value_or_plan_template,
)
from ibm_cloud_airflow.utils.task_state import TaskState

if TYPE_CHECKING:  # imported where the sensor runs, not at every parse of the DAG file
    from ibm_cloud_airflow.hooks.cos import CosHook

#: the watch's state in ``task_state_store`` (kept across reschedules)
STATE_KEY = "ibm_cos_sensor_progress"


class CosKeySensor(BaseSensorOperator):
    """Wait until every key in ``bucket_key`` exists in COS (e.g. one ``_SUCCESS`` marker per server).

    Each look is one step of :class:`~ibm_cloud_airflow.utils.cos_watch.CosMarkerWatch`, and
    :meth:`outcome` turns its result into what the task does, whatever the mode:

    * every key present: success, the keys as the task's return value;
    * a ``_FAILED`` next to a key (or in a ``watch_prefixes`` folder): fails at once, without retry
      (``AirflowFailException``), with the workload's ``error`` and ``log_tail`` in the task log;
    * no ``progress.json`` change for ``stall_timeout`` seconds once the workload reported: fails
      without retry (booting, before the first report, is bounded by ``timeout`` only);
    * a ``liveness_check`` finding a worker gone: fails without retry;
    * COS unreachable (three tries in a row in the triggerer): ``AirflowException``, retried.

    Where it waits: ``deferrable=True`` (default) looks once, then in the triggerer
    (:class:`~ibm_cloud_airflow.triggers.cos.CosKeyTrigger`); with ``start_from_trigger`` too, it
    starts there (the triggerer renders the templated fields) and succeeds there, without a worker;
    only a failure returns to a worker, to raise. ``deferrable=False`` pokes, in Airflow's ``poke``
    or ``reschedule`` mode (the watch's state is kept in ``task_state_store``).

    :param bucket_name: the bucket (templated).
    :param bucket_key: one key or a list of keys (templated).
    :param plan_task_id: take every value not given from this task's plan
        (:class:`~ibm_cloud_airflow.utils.plan.CosWaitPlan`), the ``timeout`` included
        (``max_runtime_s``, applied when the task runs).
    :param cos_conn_id: COS connection (templated).
    :param stall_timeout: seconds without progress before failing; ``None`` disables the check
        (templated, a number).
    :param watch_prefixes: more folders (templated, a list) whose ``_FAILED`` fails the task and
        whose ``progress.json`` counts for stalls, though no key is awaited there (the workers of
        a multi-worker run).
    :param liveness_check: what no marker can tell, checked while waiting (a
        :class:`~ibm_cloud_airflow.utils.cos_watch.LivenessCheck`; its ``params`` are templated).
    :param lineage_inputs: keys in the bucket that the awaited work reads (templated, a list): the
        task's OpenLineage input datasets.
    :param lineage_outputs: keys in the bucket that it writes (templated, a list): the task's
        OpenLineage output datasets once it succeeded.
    :param deferrable: wait in the triggerer.
    :param start_from_trigger: start (and succeed) in the triggerer, without a worker; with
        ``deferrable`` only. ``dag.test()`` ignores it and runs the deferrable path.
    """

    template_fields: Sequence[str] = (
        "bucket_name",
        "bucket_key",
        "cos_conn_id",
        "stall_timeout",
        "wait_timeout",
        "watch_prefixes",
        "liveness_check",
        "lineage_inputs",
        "lineage_outputs",
    )
    ui_color = "#e6f1f2"

    def __init__(
        self,
        *,
        bucket_name: str | None = None,
        bucket_key: str | list[str] | None = None,
        plan_task_id: str | None = None,
        cos_conn_id: str = "ibm_cos_default",
        stall_timeout: float | str | None = 1800.0,
        watch_prefixes: list[str] | str | None = None,
        liveness_check: LivenessCheck | None = None,
        lineage_inputs: list[str] | str | None = None,
        lineage_outputs: list[str] | str | None = None,
        deferrable: bool = True,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**native_by_default(kwargs))
        self.bucket_name = value_or_plan_template(bucket_name, plan_task_id, "bucket")
        self.bucket_key = value_or_plan_template(bucket_key, plan_task_id, "marker_keys")
        self.cos_conn_id = cos_conn_id
        # with a plan, the plan's stall timeout (None there disables the check)
        self.stall_timeout = (
            plan_field_template(plan_task_id, "stall_timeout_s") if plan_task_id else stall_timeout
        )
        # the plan's timeout, rendered when the task runs (BaseSensorOperator needs a number now)
        self.wait_timeout = value_or_plan_template(None, plan_task_id, "max_runtime_s")
        self.watch_prefixes = value_or_plan_template(watch_prefixes, plan_task_id, "server_prefixes")
        # plain values: rendered in place, and carried in the trigger's kwargs
        self.liveness_check = liveness_check.to_dict() if liveness_check is not None else None
        self.lineage_inputs = value_or_plan_template(lineage_inputs, plan_task_id, "lineage_inputs")
        self.lineage_outputs = value_or_plan_template(lineage_outputs, plan_task_id, "lineage_outputs")
        self.deferrable = deferrable
        self.start_from_trigger = start_from_trigger and deferrable
        # Airflow checks this name: listener plugins cannot see tasks that end in the triggerer.
        self.end_from_trigger = self.start_from_trigger
        self._watch: CosMarkerWatch | None = None
        self._task_state: TaskState | None = None
        if self.start_from_trigger:
            # Kwargs named like template fields are rendered by the triggerer into the trigger.
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="ibm_cloud_airflow.triggers.cos.CosKeyTrigger",
                trigger_kwargs={
                    **self._trigger_kwargs(),
                    "wait_timeout": self.wait_timeout if self.wait_timeout is not None else self.timeout,
                    "end_from_trigger": True,
                },
                next_method="execute_complete",
                next_kwargs=None,
                timeout=None,
            )

    def _trigger_kwargs(self) -> dict[str, Any]:
        """The trigger's kwargs from this task's fields (as given, or once rendered)."""
        return {
            "bucket_name": self.bucket_name,
            "bucket_key": self.bucket_key,
            "cos_conn_id": self.cos_conn_id,
            "poke_interval": self.poke_interval,
            "stall_timeout": self.stall_timeout,
            "watch_prefixes": self.watch_prefixes,
            "liveness_check": self.liveness_check,
        }

    @cached_property
    def hook(self) -> CosHook:
        from ibm_cloud_airflow.hooks.cos import CosHook

        return CosHook(self.cos_conn_id)

    @property
    def keys(self) -> list[str]:
        keys = key_list(require_type(self.task_id, "bucket_key", self.bucket_key, (str, list)))
        if not keys or any(not k for k in keys):
            raise AirflowFailException(f"{self.task_id}: bucket_key is empty; pass the marker key(s)")
        return keys

    @property
    def watched_folders(self) -> list[str]:
        """The watched folders, rendered."""
        return key_list(require_type(self.task_id, "watch_prefixes", self.watch_prefixes, list))

    def _apply_rendered_timeouts(self) -> None:
        """The rendered timeouts are numbers (a plan's, or given); the sensor's own follows them."""
        for name in ("wait_timeout", "stall_timeout"):
            require_type(self.task_id, name, getattr(self, name), (int, float))
        if self.wait_timeout is not None:
            self.timeout = float(self.wait_timeout)

    # -- the watch and its state ------------------------------------------------------------------
    def marker_watch(self, context: Any) -> CosMarkerWatch:
        """This task's watch; its state from ``task_state_store`` on a reschedule."""
        if self._watch is None:
            self._task_state = TaskState(context, self.log)
            saved = self._task_state.get(STATE_KEY)
            saved = saved if isinstance(saved, dict) else None
            self._watch = CosMarkerWatch(
                bucket=str(self.bucket_name),
                keys=self.keys,
                state=WatchState.from_dict(saved),
                watch_prefixes=self.watched_folders,
                stall_timeout=self.stall_timeout,
                liveness=LivenessCheck.from_dict(
                    require_type(self.task_id, "liveness_check", self.liveness_check, dict)
                ),
                log=self.log,
            )
            if saved is None:
                self._save_state()
        return self._watch

    def restart_watch(self, context: Any) -> None:
        """Watch again from a fresh state: every stall clock restarts (the workers were replaced)."""
        self._watch = None
        TaskState(context, self.log).set(STATE_KEY, WatchState.fresh().to_dict())

    def _save_state(self) -> None:
        if self._watch is not None and self._task_state is not None:
            self._task_state.set(STATE_KEY, self._watch.state.to_dict())

    # -- outcomes ---------------------------------------------------------------------------------
    def poke(self, context: Any) -> bool:
        self._apply_rendered_timeouts()
        watch = self.marker_watch(context)
        before = watch.state.to_dict()
        result = watch.step(self.hook)
        if watch.state.to_dict() != before:
            self._save_state()
        return self.outcome(result)

    def outcome(self, result: WatchResult) -> bool:
        """What a result means for the task: True done, False wait on; raises for the rest."""
        for line in result.progress:
            self.log.info("Progress %s", line)
        status = result.status
        if status is WatchStatus.DONE:
            self.log.info("All markers present: %s", self.keys)
            return True
        if status is WatchStatus.WAITING:
            return False
        if status is WatchStatus.FAILED:
            self.log.error(
                "Workload failed: %s\n--- workload log tail ---\n%s", result.error, result.log_tail
            )
            raise AirflowFailException(
                f"{result.message}\n--- workload log tail ---\n{result.log_tail}".rstrip()
            )
        if status in (WatchStatus.STALLED, WatchStatus.LOST):
            raise AirflowFailException(result.message)
        if status is WatchStatus.TIMEOUT:
            raise AirflowSensorTimeout(result.message)
        raise AirflowException(f"Waiting for COS markers failed: {result.message}")

    def execute(self, context: Any) -> Any:
        self._apply_rendered_timeouts()
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self.keys
        self.defer(
            trigger=CosKeyTrigger(
                **{**self._trigger_kwargs(), "bucket_key": self.keys, "watch_prefixes": self.watched_folders},
                state=self.marker_watch(context).state.to_dict(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[str]:
        if not self.outcome(WatchResult.from_event(event)):
            raise AirflowException(f"Unexpected trigger event {event!r}")
        return self.keys

    # -- OpenLineage (called by its provider, where installed; the task then ends on a worker) -----
    def _lineage(self, *, outputs: bool) -> Any:
        from ibm_cloud_airflow.utils.lineage import operator_lineage

        inputs = require_type(self.task_id, "lineage_inputs", self.lineage_inputs, list) or []
        written = require_type(self.task_id, "lineage_outputs", self.lineage_outputs, list) or []
        return operator_lineage(str(self.bucket_name), inputs, written if outputs else [])

    def get_openlineage_facets_on_start(self) -> Any:
        """What the awaited work reads; what it writes is not there yet."""
        return self._lineage(outputs=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What the awaited work read and wrote (every marker is there)."""
        return self._lineage(outputs=True)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """What the awaited work read; its outputs are not all there."""
        return self._lineage(outputs=False)

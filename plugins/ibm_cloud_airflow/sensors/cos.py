"""Sensor that waits for the run's COS completion markers (deferrable by default)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow.triggers.base import StartTriggerArgs

from ibm_cloud_airflow.triggers.cos import CosKeyTrigger, check_markers, check_servers, key_list, new_state
from ibm_cloud_airflow.utils.plan import from_plan, native_by_default, plan_field, typed

if TYPE_CHECKING:  # imported where the sensor runs, not at every parse of the DAG file
    from ibm_cloud_airflow.hooks.cos import CosHook

_STATE_KEY = "ibm_cos_sensor_progress"


class CosKeySensor(BaseSensorOperator):
    """Wait until every key in ``bucket_key`` exists in COS (e.g. one ``_SUCCESS`` marker per VM).

    * A sibling ``_FAILED`` object (same directory as a key, or in a ``watch_prefixes`` folder) fails
      the task at once, without retry
      (``AirflowFailException``), and its JSON (``error``, ``log_tail``) is written to the task log.
    * Each new sibling ``progress.json`` (epoch, metrics) is logged while waiting.
    * When none of them changes for ``stall_timeout`` seconds once the workload has reported progress,
      the task fails without retry (booting, before the first report, is bounded by ``timeout`` only).
    * ``deferrable=True`` (default) waits in the triggerer; ``mode="poke"``/``"reschedule"`` work too
      (progress state is kept in ``task_state_store`` across reschedules where Airflow offers it).
    * ``start_from_trigger=True`` (with ``deferrable``) never uses a worker on the way to success:
      the scheduler hands the task straight to the triggerer, which renders the templated fields,
      waits, and marks the task successful itself. Only a failure comes back to a worker, to raise
      the error. ``dag.test()`` ignores it and runs the deferrable path.

    :param plan_task_id: take every value below that is not given from this task's plan
        (:class:`~ibm_cloud_airflow.utils.plan.CosWaitPlan`: ``bucket``, ``marker_keys``,
        ``server_prefixes``, ``slug``, ``stall_timeout_s``, ``max_runtime_s``).
    :param outputs_task_id: the apply task whose Terraform outputs name the servers'
        ``trusted_profile_id`` (the explanation of a server that stopped).
    :param bucket_name: the bucket (templated).
    :param bucket_key: one key or a list of keys (templated).
    :param cos_conn_id: COS connection (templated).
    :param stall_timeout: seconds without progress before failing; ``None`` disables the check
        (templated, a number).
    :param timeout: as for every sensor (seconds or timedelta).
    :param wait_timeout: templated override of ``timeout`` in seconds, applied at execute time.
    :param deferrable: wait in the triggerer.
    :param start_from_trigger: start (and succeed) in the triggerer, without a worker.
    :param check_failed: look for ``_FAILED`` markers.
    :param watch_prefixes: more folders (templated: a list, or its text) whose ``_FAILED`` fails the
        task and whose ``progress.json`` counts for stall detection, though no key is awaited there
        (the workers of a multi-worker run).
    :param ibm_conn_id: IBM Cloud connection for the VPC API; with ``server_name_prefix`` (the run
        slug, templated) the sensor fails when a server ``<slug>-vm-<i>`` whose marker is missing
        has stopped (the workload powers off when it cannot write to COS), checked every
        ``server_check_interval`` seconds, and explains it from ``trusted_profile_id``'s IAM policies.
    :param lineage_inputs: keys in the bucket that the awaited work reads (templated, a list; from
        the plan's ``lineage_inputs``): the task's OpenLineage input datasets.
    :param lineage_outputs: keys in the bucket that the awaited work writes (templated, a list; from
        the plan's ``lineage_outputs``): the task's OpenLineage output datasets once it succeeded.
    """

    template_fields: Sequence[str] = (
        "bucket_name",
        "bucket_key",
        "cos_conn_id",
        "stall_timeout",
        "wait_timeout",
        "watch_prefixes",
        "server_name_prefix",
        "trusted_profile_id",
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
        outputs_task_id: str | None = None,
        cos_conn_id: str = "ibm_cos_default",
        stall_timeout: float | str | None = 1800.0,
        deferrable: bool = True,
        start_from_trigger: bool = False,
        check_failed: bool = True,
        wait_timeout: float | str | None = None,
        timeout: Any = None,
        watch_prefixes: list[str] | None = None,
        ibm_conn_id: str | None = None,
        server_name_prefix: str | None = None,
        trusted_profile_id: str | None = None,
        server_check_interval: float = 30.0,
        lineage_inputs: list[str] | None = None,
        lineage_outputs: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(timeout=timeout, **native_by_default(kwargs))
        self.lineage_inputs = from_plan(lineage_inputs, plan_task_id, "lineage_inputs")
        self.lineage_outputs = from_plan(lineage_outputs, plan_task_id, "lineage_outputs")
        self.wait_timeout = from_plan(wait_timeout, plan_task_id, "max_runtime_s")
        self.bucket_name = from_plan(bucket_name, plan_task_id, "bucket")
        self.bucket_key = from_plan(bucket_key, plan_task_id, "marker_keys")
        self.cos_conn_id = cos_conn_id
        # with a plan, the plan's stall timeout (None there disables the check)
        self.stall_timeout = plan_field(plan_task_id, "stall_timeout_s") if plan_task_id else stall_timeout
        self.deferrable = deferrable
        self.check_failed = check_failed
        self.watch_prefixes = from_plan(watch_prefixes, plan_task_id, "server_prefixes")
        self.ibm_conn_id = ibm_conn_id
        self.server_name_prefix = from_plan(server_name_prefix, plan_task_id, "slug")
        if trusted_profile_id is None and outputs_task_id is not None:
            trusted_profile_id = plan_field(outputs_task_id, "trusted_profile_id")
        self.trusted_profile_id = trusted_profile_id
        self.server_check_interval = server_check_interval
        self._next_server_check = 0.0
        self._state: dict[str, Any] | None = None
        self.start_from_trigger = start_from_trigger and deferrable
        # Airflow checks this name: listener plugins cannot see tasks that end in the triggerer.
        self.end_from_trigger = self.start_from_trigger
        if self.start_from_trigger:
            # Keys named like template fields are rendered by the triggerer into the trigger.
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls="ibm_cloud_airflow.triggers.cos.CosKeyTrigger",
                trigger_kwargs={
                    "bucket_name": self.bucket_name,
                    "bucket_key": self.bucket_key,
                    "cos_conn_id": cos_conn_id,
                    "stall_timeout": self.stall_timeout,
                    "wait_timeout": self.wait_timeout if self.wait_timeout is not None else self.timeout,
                    "poke_interval": self.poke_interval,
                    "check_failed": check_failed,
                    "end_from_trigger": True,
                    "watch_prefixes": self.watch_prefixes,
                    "ibm_conn_id": ibm_conn_id,
                    "server_name_prefix": self.server_name_prefix,
                    "server_check_interval": server_check_interval,
                },
                next_method="execute_complete",
                next_kwargs=None,
                timeout=None,
            )

    @cached_property
    def hook(self) -> CosHook:
        from ibm_cloud_airflow.hooks.cos import CosHook

        return CosHook(self.cos_conn_id)

    @property
    def keys(self) -> list[str]:
        keys = key_list(typed(self.task_id, "bucket_key", self.bucket_key, (str, list)))
        if not keys or any(not k for k in keys):
            raise AirflowFailException(f"{self.task_id}: bucket_key is empty; pass the marker key(s)")
        return keys

    @property
    def watch(self) -> list[str]:
        return key_list(typed(self.task_id, "watch_prefixes", self.watch_prefixes, list))

    def _apply_rendered_timeouts(self) -> None:
        """The rendered timeouts are numbers (a plan's, or given); the sensor's own follows them."""
        for name in ("wait_timeout", "stall_timeout"):
            typed(self.task_id, name, getattr(self, name), (int, float))
        if self.wait_timeout is not None:
            self.timeout = float(self.wait_timeout)

    def _load_state(self, context: Any) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        store = context.get("task_state_store") if hasattr(context, "get") else None
        saved = None
        if store is not None:
            try:
                saved = store.get(_STATE_KEY)
            except Exception:
                saved = None
        self._state = saved if isinstance(saved, dict) else new_state(time.time())
        self._store = store
        if saved is None:
            self._save_state()
        return self._state

    def _save_state(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None and self._state is not None:
            try:
                store.set(_STATE_KEY, self._state)
            except Exception as exc:
                self.log.warning("Could not save sensor progress in task_state_store: %s", exc)

    def poke(self, context: Any) -> bool:
        self._apply_rendered_timeouts()
        state = self._load_state(context)
        before = repr(state)
        result = check_markers(
            self.hook,
            self.bucket_name,
            self.keys,
            state,
            stall_timeout=self.stall_timeout,
            check_failed=self.check_failed,
            watch=self.watch,
        )
        if repr(state) != before:
            self._save_state()
        if result.get("status") == "waiting" and self._servers_due():
            result = self._check_servers(state) or result
        return self._handle(result)

    def _servers_due(self) -> bool:
        if not (self.ibm_conn_id and self.server_name_prefix) or time.monotonic() < self._next_server_check:
            return False
        self._next_server_check = time.monotonic() + self.server_check_interval
        return True

    def _check_servers(self, state: dict[str, Any]) -> dict[str, Any] | None:
        from ibm_cloud_airflow.hooks.vpc import VpcHook

        try:
            return check_servers(
                VpcHook(str(self.ibm_conn_id)), str(self.server_name_prefix), self.keys, state, self.watch
            )
        except Exception as exc:  # the markers stay the main signal
            self.log.warning("Could not check the servers' state: %s", exc)
            return None

    def _handle(self, result: dict[str, Any]) -> bool:
        for line in result.get("progress") or []:
            self.log.info("Progress %s", line)
        status = result.get("status")
        if status == "success":
            self.log.info("All markers present: %s", self.keys)
            return True
        if status == "failed":
            self.log.error(
                "Workload failed: %s\n--- workload log tail ---\n%s",
                result.get("error"),
                result.get("log_tail"),
            )
            raise AirflowFailException(
                f"{result.get('message')}\n--- workload log tail ---\n{result.get('log_tail') or ''}".rstrip()
            )
        if status == "stalled":
            raise AirflowFailException(str(result.get("message")))
        if status == "server_stopped":
            from ibm_cloud_airflow.hooks.iam import explain_stopped_servers

            why = explain_stopped_servers(
                str(self.ibm_conn_id), self.trusted_profile_id or "", str(self.bucket_name)
            )
            raise AirflowFailException(f"{result.get('message')}; {why}")
        if status == "server_missing":
            raise AirflowFailException(str(result.get("message")))
        if status == "timeout":
            raise AirflowSensorTimeout(str(result.get("message")))
        if status == "error":
            raise AirflowException(f"Waiting for COS markers failed: {result.get('message')}")
        return False

    def execute(self, context: Any) -> Any:
        self._apply_rendered_timeouts()
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return self.keys
        self.defer(
            trigger=CosKeyTrigger(
                bucket_name=self.bucket_name,
                bucket_key=self.keys,
                cos_conn_id=self.cos_conn_id,
                poke_interval=self.poke_interval,
                stall_timeout=self.stall_timeout,
                check_failed=self.check_failed,
                state=self._state,
                watch_prefixes=self.watch,
                ibm_conn_id=self.ibm_conn_id,
                server_name_prefix=self.server_name_prefix,
                server_check_interval=self.server_check_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> list[str]:
        if not self._handle(event):
            raise AirflowException(f"Unexpected trigger event {event!r}")
        return self.keys

    # -- OpenLineage (called by its provider, where installed; the task then ends on a worker) -----
    def _lineage(self, *, outputs: bool) -> Any:
        from ibm_cloud_airflow.utils.lineage import operator_lineage

        inputs = typed(self.task_id, "lineage_inputs", self.lineage_inputs, list) or []
        written = typed(self.task_id, "lineage_outputs", self.lineage_outputs, list) or []
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

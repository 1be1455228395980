"""Trigger that waits for COS completion markers: :class:`~ibm_cloud_airflow.utils.cos_watch.CosMarkerWatch`
in a loop, in the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from ibm_cloud_airflow.triggers.native import NativeTemplatesMixin, ends_here, push_xcoms
from ibm_cloud_airflow.utils.cos_watch import (
    CosMarkerWatch,
    LivenessCheck,
    WatchResult,
    WatchState,
    WatchStatus,
    key_list,
)


class CosKeyTrigger(NativeTemplatesMixin, BaseTrigger):
    """Waits until every key in ``bucket_key`` exists in ``bucket_name``.

    Each look is one step of the watch (``_FAILED``, stalls, the liveness check: see
    :mod:`ibm_cloud_airflow.utils.cos_watch`); the first result other than *waiting* is the event
    (:meth:`~ibm_cloud_airflow.utils.cos_watch.WatchResult.to_event`). Also ``timeout`` once
    ``wait_timeout`` seconds pass, and ``error`` after ``max_consecutive_errors`` failed looks in a
    row. New progress is logged as it appears. COS calls run in worker threads.

    For a sensor that starts in the triggerer (``start_from_trigger``), the triggerer renders the
    sensor's templated fields into the attributes of the same name, as Python objects
    (:class:`~ibm_cloud_airflow.triggers.native.NativeTemplatesMixin`). With ``end_from_trigger``
    the task ends here on success, without a worker.

    :param state: the watch's state to go on from (:meth:`WatchState.to_dict`); fresh when None.
    :param liveness_check: a :class:`~ibm_cloud_airflow.utils.cos_watch.LivenessCheck` as a dict;
        its first check is one interval after the start.
    """

    def __init__(
        self,
        bucket_name: str,
        bucket_key: str | list[str] | None = None,
        cos_conn_id: str = "ibm_cos_default",
        poke_interval: float = 60.0,
        stall_timeout: float | None = None,
        wait_timeout: float | None = None,
        watch_prefixes: list[str] | None = None,
        liveness_check: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        max_consecutive_errors: int = 3,
        end_from_trigger: bool = False,
    ) -> None:
        super().__init__()
        self.bucket_name = bucket_name
        self.bucket_key = bucket_key
        self.cos_conn_id = cos_conn_id
        self.poke_interval = poke_interval
        self.stall_timeout = stall_timeout
        self.wait_timeout = wait_timeout
        self.watch_prefixes = watch_prefixes
        self.liveness_check = liveness_check
        self.state = state
        self.max_consecutive_errors = max_consecutive_errors
        self.end_from_trigger = end_from_trigger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ibm_cloud_airflow.triggers.cos.CosKeyTrigger",
            {
                "bucket_name": self.bucket_name,
                "bucket_key": self.bucket_key,
                "cos_conn_id": self.cos_conn_id,
                "poke_interval": self.poke_interval,
                "stall_timeout": self.stall_timeout,
                "wait_timeout": self.wait_timeout,
                "watch_prefixes": self.watch_prefixes,
                "liveness_check": self.liveness_check,
                "state": self.state,
                "max_consecutive_errors": self.max_consecutive_errors,
                "end_from_trigger": self.end_from_trigger,
            },
        )

    def _make_hook(self) -> Any:
        from ibm_cloud_airflow.hooks.cos import CosHook

        hook = CosHook(self.cos_conn_id)
        hook.client  # noqa: B018 - resolve the connection and build the client in this thread
        return hook

    def _watch(self) -> CosMarkerWatch:
        keys = key_list(self.bucket_key)
        if not keys or not all(keys):
            raise ValueError(f"no marker keys to wait for (bucket_key {self.bucket_key!r})")
        watch = CosMarkerWatch(
            bucket=self.bucket_name,
            keys=keys,
            state=WatchState.from_dict(self.state),
            watch_prefixes=key_list(self.watch_prefixes),
            stall_timeout=self.stall_timeout,
            liveness=LivenessCheck.from_dict(self.liveness_check),
            log=self.log,
        )
        watch.postpone_liveness()  # the sensor checked before deferring; new servers need not be
        return watch

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            watch = self._watch()
            hook = await asyncio.to_thread(self._make_hook)
        except Exception as exc:
            yield TriggerEvent(WatchResult(WatchStatus.ERROR, str(exc)).to_event())
            return
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        errors = 0
        while True:
            try:
                result = await asyncio.to_thread(watch.step, hook)
                errors = 0
            except Exception as exc:
                errors += 1
                self.log.warning("COS check failed (%d/%d): %s", errors, self.max_consecutive_errors, exc)
                if errors >= self.max_consecutive_errors:
                    yield TriggerEvent(WatchResult(WatchStatus.ERROR, str(exc)).to_event())
                    return
                await asyncio.sleep(self.poke_interval)
                continue
            for line in result.progress:
                self.log.info("Progress %s", line)
            if result.status is WatchStatus.DONE and ends_here(self):
                self.log.info("All markers present: %s", watch.keys)
                await push_xcoms(self.task_instance, {"return_value": watch.keys})
                yield TaskSuccessEvent()
                return
            if result.status is WatchStatus.FAILED:
                self.log.error("%s\n--- workload log tail ---\n%s", result.message, result.log_tail)
            if result.status is not WatchStatus.WAITING:
                yield TriggerEvent(result.to_event())
                return
            if deadline is not None and time.monotonic() >= deadline:
                message = f"{watch.keys} did not all appear within {self.wait_timeout:.0f} s"
                yield TriggerEvent(WatchResult(WatchStatus.TIMEOUT, message).to_event())
                return
            await asyncio.sleep(self.poke_interval)

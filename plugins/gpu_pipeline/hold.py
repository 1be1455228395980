"""Keep a failed run's servers for a while before cleanup, so that someone can look at them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from gpu_pipeline.params import MAX_KEEP_ON_FAILURE_MINUTES

FAILED_STATES = {"failed", "upstream_failed"}


class HoldOnFailureOperator(BaseOperator):
    """Wait ``minutes`` (deferred, no worker slot) when any watched task failed; else pass at once.

    :param watched_task_ids: the work tasks whose failure starts the hold.
    :param minutes: how long to hold (templated), at most ``MAX_KEEP_ON_FAILURE_MINUTES``.
    """

    template_fields: Sequence[str] = ("minutes",)

    def __init__(self, *, watched_task_ids: list[str], minutes: int | str = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watched_task_ids = watched_task_ids
        self.minutes = minutes

    def execute(self, context: Any) -> None:
        minutes = min(int(self.minutes or 0), MAX_KEEP_ON_FAILURE_MINUTES)
        if minutes <= 0:
            return
        ti = context["ti"]
        states = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=self.watched_task_ids, run_ids=[ti.run_id]
        ).get(ti.run_id, {})
        failed = sorted(task_id for task_id, state in states.items() if state in FAILED_STATES)
        if not failed:
            return
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        until = datetime.now(UTC) + timedelta(minutes=minutes)
        self.log.warning(
            "Tasks %s failed: keeping the run's resources until %s for debugging, then destroying them.",
            ", ".join(failed),
            until.isoformat(timespec="seconds"),
        )
        self.defer(
            trigger=DateTimeTrigger(moment=until),
            method_name="execute_complete",
            timeout=timedelta(minutes=minutes + 5),
        )

    def execute_complete(self, context: Any, event: Any = None) -> None:
        self.log.info("Hold over; cleanup proceeds.")

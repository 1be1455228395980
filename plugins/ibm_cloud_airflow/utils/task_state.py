"""What a task keeps across its tries: Airflow 3.3's ``context["task_state_store"]``, best effort.

The store outlives a try (a retry, a restarted worker, a cleared task reads what the last try
wrote), which is what re-attaching to a running job needs. It is an optimisation: where Airflow
offers none, or a read or a write fails, the task goes on without it and says so in its log.

    state = TaskState(context, self.log)
    saved = state.get("my_key")           # a dict, or None
    state.set("my_key", {"job": "..."})
"""

from __future__ import annotations

import logging
from typing import Any


class TaskState:
    """A task's ``task_state_store`` (Airflow 3.3+), whose failures are logged, never raised.

    :param context: the task's context; one without ``task_state_store`` gives a state that keeps
        nothing (every :meth:`get` is None).
    :param log: where a failing store is reported.
    """

    def __init__(self, context: Any, log: logging.Logger | Any | None = None) -> None:
        self.store = _store_of(context)
        self.log = log or logging.getLogger(__name__)

    def get(self, key: str) -> dict[str, Any] | None:
        """The dict saved under ``key``; None when there is none, or the store cannot be read."""
        if self.store is None:
            return None
        try:
            value = self.store.get(key)
        except Exception as exc:  # the store is an optimisation; never fail the task for it
            self.log.warning("task_state_store unavailable (%s): going on without %s", exc, key)
            return None
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        """Save ``value`` under ``key``; a failing store is logged, not raised."""
        if self.store is None:
            return
        try:
            self.store.set(key, value)
        except Exception as exc:
            self.log.warning("Could not save %s in task_state_store (%s)", key, exc)


def _store_of(context: Any) -> Any:
    try:
        return context.get("task_state_store") if hasattr(context, "get") else None
    except Exception:  # Airflow before 3.3 has none
        return None

"""TaskState: a task's task_state_store, whose failures are logged and never fail the task.

The store is the in-memory stand-in for Airflow 3.3's (same get/set API, values through JSON as the
execution API stores them); a broken one stands for a store that cannot be reached.
"""

from __future__ import annotations

import logging

from ibm_cloud_airflow.utils.task_state import TaskState

from ..conftest import FakeStore, make_context


class BrokenStore:
    def get(self, key, default=None):
        raise RuntimeError("execution API unreachable")

    def set(self, key, value, *, retention=None):
        raise RuntimeError("execution API unreachable")


def test_a_value_survives_a_try():
    store = FakeStore()
    TaskState(make_context(store)).set("k", {"activity_id": "a", "deadline": 1.5})
    assert TaskState(make_context(store)).get("k") == {"activity_id": "a", "deadline": 1.5}
    assert TaskState(make_context(store)).get("other") is None


def test_without_a_store_nothing_is_kept_and_nothing_fails():
    state = TaskState(make_context(None))
    state.set("k", {"a": 1})
    assert state.get("k") is None
    assert TaskState(object()).get("k") is None  # not even a mapping


def test_what_is_not_a_dict_reads_as_nothing():
    store = FakeStore()
    store.set("k", ["not", "a", "dict"])
    assert TaskState(make_context(store)).get("k") is None


def test_a_failing_store_is_logged_not_raised(caplog):
    ctx = make_context(None)
    ctx["task_state_store"] = BrokenStore()
    state = TaskState(ctx, logging.getLogger("t"))
    with caplog.at_level(logging.WARNING):
        assert state.get("k") is None
        state.set("k", {"a": 1})
    assert caplog.text.count("execution API unreachable") == 2

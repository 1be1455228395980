"""A trigger ends its task itself on the first try only (Airflow keeps a cleared task's end_date)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ibm_cloud_airflow.triggers.native import ends_here


@pytest.mark.parametrize(
    ("end_from_trigger", "try_number", "expected"),
    [(True, 1, True), (True, 2, False), (True, 5, False), (False, 1, False)],
)
def test_only_a_first_try_ends_in_the_triggerer(end_from_trigger, try_number, expected):
    trigger = SimpleNamespace(
        end_from_trigger=end_from_trigger, task_instance=SimpleNamespace(try_number=try_number)
    )
    assert ends_here(trigger) is expected


def test_a_trigger_not_yet_bound_to_a_task_instance_keeps_its_setting():
    assert ends_here(SimpleNamespace(end_from_trigger=True)) is True

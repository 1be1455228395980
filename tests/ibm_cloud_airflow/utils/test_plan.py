"""The run plan's helpers: the field templates, what an operator's field holds, the type check.

The templates are rendered by Airflow's own native environment (the one the provider's operators
and triggers use), with a task instance whose ``xcom_pull`` answers as Airflow's does.
"""

from __future__ import annotations

from unittest import mock

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudConfigError
from ibm_cloud_airflow.utils.airflow_compat import native_template_env
from ibm_cloud_airflow.utils.plan import (
    native_by_default,
    plan_field_template,
    require_type,
    value_or_plan_template,
)


def render(template: str, plan: object) -> object:
    ti = mock.MagicMock()
    ti.xcom_pull.return_value = plan
    value = native_template_env().from_string(template).render(ti=ti)
    ti.xcom_pull.assert_called_once_with(task_ids="validate", map_indexes=-1)
    return value


def test_a_plan_field_renders_as_its_typed_value():
    template = plan_field_template("validate", "marker_keys")
    assert render(template, {"marker_keys": ["a/_SUCCESS", "b/_SUCCESS"]}) == ["a/_SUCCESS", "b/_SUCCESS"]
    assert render(plan_field_template("validate", "plan_only"), {"plan_only": True}) is True
    assert render(plan_field_template("validate", "max_runtime_s"), {"max_runtime_s": 3600.0}) == 3600.0


def test_without_a_plan_or_the_field_it_renders_as_none():
    template = plan_field_template("validate", "workspace_name")
    assert render(template, None) is None  # the plan's task failed: the cleanup finds nothing
    assert render(template, {"other": 1}) is None


def test_a_given_value_wins_over_the_plan():
    assert value_or_plan_template("explicit", "validate", "workspace_name") == "explicit"
    assert value_or_plan_template(False, "validate", "plan_only") is False  # falsy but given
    assert value_or_plan_template(None, "validate", "tags") == plan_field_template("validate", "tags")
    assert value_or_plan_template(None, None, "tags") is None  # no plan: nothing


def test_require_type_passes_values_through_unchanged():
    keys = ["a", "b"]
    assert require_type("t", "keys", keys, list) is keys
    assert require_type("t", "n", None, int) is None
    assert require_type("t", "n", 2.5, (int, float)) == 2.5


@pytest.mark.parametrize(
    ("value", "kind"), [("['a', 'b']", list), ("True", bool), ("3600", (int, float)), (["ws"], str)]
)
def test_require_type_refuses_a_value_rendered_as_text_without_converting(value, kind):
    with pytest.raises(IbmCloudConfigError, match="render_template_as_native_obj") as err:
        require_type("apply", "field", value, kind)
    assert str(err.value).startswith("apply: field rendered as")


def test_operators_render_natively_unless_a_task_says_otherwise():
    assert native_by_default({})["render_template_as_native_obj"] is True
    given = {"render_template_as_native_obj": False}
    assert native_by_default(given)["render_template_as_native_obj"] is False

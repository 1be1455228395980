"""training_params(): the training group's parameters with a DAG's own defaults."""

from __future__ import annotations

import pytest
from gpu_pipeline.params import PARAMS, training_params


def test_changed_defaults_keep_the_schema_and_the_rest_is_untouched():
    params = training_params(epochs=10, gpu_profile="gx3-24x120x1l40s")
    assert params["epochs"].value == 10 and params["gpu_profile"].value == "gx3-24x120x1l40s"
    assert params["epochs"].schema == PARAMS["epochs"].schema
    assert params["epochs"].description == PARAMS["epochs"].description
    assert params["vm_count"] is PARAMS["vm_count"]
    assert PARAMS["epochs"].value != 10  # the shared table is not changed


def test_an_unknown_name_is_refused_at_parse_time():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epoch'\]"):
        training_params(epoch=10)


def test_a_default_the_schema_refuses_is_refused_at_parse_time():
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="99 is greater than the maximum of 8"):
        training_params(vm_count=99)

"""A run conf that names an unknown parameter is refused before anything exists, with a suggestion.

Airflow takes any key of a run's conf as a parameter (``{"epoch": 2}`` would start a run with the
default 5 epochs); validate refuses it. The end-to-end refusal is in tests/e2e/test_pipeline.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from gpu_pipeline.params import PARAMS
from gpu_pipeline.validation import plan_run, unknown_conf_problems

pytestmark = pytest.mark.sandbox


def test_a_typo_names_the_closest_parameter():
    assert unknown_conf_problems({"epoch": 2}, PARAMS) == [
        "unknown parameter 'epoch': did you mean 'epochs'?"
    ]
    assert unknown_conf_problems({"vm_cont": 2, "learningrate": 0.1}, PARAMS) == [
        "unknown parameter 'learningrate': did you mean 'learning_rate'?",
        "unknown parameter 'vm_cont': did you mean 'vm_count'?",
    ]


def test_a_key_like_no_parameter_lists_them_all():
    (problem,) = unknown_conf_problems({"zzz": 1}, ["epochs", "vm_count"])
    assert problem == "unknown parameter 'zzz'; the parameters are epochs, vm_count."


def test_known_keys_pass():
    assert unknown_conf_problems({"epochs": 2, "vm_count": 1}, PARAMS) == []
    assert unknown_conf_problems({}, PARAMS) == []


@pytest.fixture
def box(sandbox_factory, monkeypatch):
    sbx = sandbox_factory(rate_limit_per_min=None)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    return sbx


def test_plan_run_refuses_the_run_first_with_the_suggestion(box):
    params = {name: param.value for name, param in PARAMS.items()}
    params["epoch"] = 2  # Airflow adds the conf's unknown keys to the params
    dag_run = SimpleNamespace(dag_id="d", run_id="manual__1", conf={"epoch": 2, "epochs": 3})

    with pytest.raises(AirflowFailException) as err:
        plan_run(
            params,
            dag_run=dag_run,
            ibm_conn_id="ibm_cloud_default",
            cos_conn_id="ibm_cos_default",
            known_params=PARAMS,
        )
    assert str(err.value).splitlines()[0] == (
        "Invalid run, nothing was created. Fix: unknown parameter 'epoch': did you mean 'epochs'?"
    )
    assert box.inventory.list() == []

    # the same run without the typo is planned
    del params["epoch"]
    dag_run.conf = {"epochs": 3}
    plan = plan_run(
        params,
        dag_run=dag_run,
        ibm_conn_id="ibm_cloud_default",
        cos_conn_id="ibm_cos_default",
        known_params=PARAMS,
    )
    assert plan["slug"]

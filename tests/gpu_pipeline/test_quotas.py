"""validate refuses a run over the region's vCPU, memory or GPU quota before anything exists.

IBM's defaults (ibm-cloud-docs/vpc quotas.md: 200 vCPU, 5600 GB, 16 GPUs per region), or the
deployment's ``[ibm_cloud] quota_*`` options, read from Airflow's real configuration.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from gpu_pipeline.params import PARAMS
from gpu_pipeline.quotas import (
    QuotaConfigError,
    placement_quota_problem,
    quota_problems,
    region_quotas,
)
from gpu_pipeline.validation import plan_run

H100 = "gx3d-160x1792x8h100"  # 160 vCPU, 1792 GB, 8 GPUs


class Config:
    """Stands in for Airflow's configuration where a test needs several values at once."""

    def __init__(self, **options: str) -> None:
        self.options = options

    def get(self, section: str, key: str, fallback: str = "") -> str:
        assert section == "ibm_cloud"
        return self.options.get(key, fallback)


def test_the_defaults_are_ibms():
    quotas = region_quotas("us-south", Config())
    assert (quotas.vcpu, quotas.memory_gb, quotas.gpus) == (200, 5600, 16)
    assert set(quotas.sources.values()) == {"IBM's default"}


@pytest.mark.parametrize(
    ("profile", "count"),
    [("gx3-16x80x1l4", 1), ("gx3-16x80x1l4", 8), ("gx3-48x240x2l40s", 4), (H100, 1)],
)
def test_runs_within_the_quotas_pass(profile, count):
    assert placement_quota_problem("us-south", profile, count, region_quotas("us-south", Config())) is None


def test_the_problem_names_each_quota_passed_what_the_run_asks_and_how_to_raise_it():
    problem = placement_quota_problem("us-south", H100, 3, region_quotas("us-south", Config()))
    assert problem.startswith(f"quota: 3 x {H100} in region us-south asks for ")
    assert "480 vCPU (3 x 160), over the quota of 200 (IBM's default)" in problem
    assert "24 GPUs (3 x 8), over the quota of 16 (IBM's default)" in problem
    assert "GB of memory" not in problem  # 5376 GB is within 5600
    assert "https://cloud.ibm.com/unifiedsupport/cases/form" in problem
    assert "https://cloud.ibm.com/docs/vpc?topic=vpc-quotas" in problem
    assert "set [ibm_cloud] quota_vcpu and [ibm_cloud] quota_gpus in Airflow's configuration" in problem
    assert "\n" not in problem  # one line: what a one-line summary shows


@pytest.mark.parametrize(
    ("profile", "count", "says"),
    [
        ("gx3-48x240x2l40s", 8, "384 vCPU (8 x 48)"),  # 16 GPUs: exactly the quota, no problem there
        (H100, 2, "320 vCPU (2 x 160)"),
    ],
)
def test_the_issues_examples_are_refused_on_vcpu(profile, count, says):
    problem = placement_quota_problem("us-south", profile, count, region_quotas("us-south", Config()))
    assert says in problem and "GPUs" not in problem


def test_a_deployment_states_its_own_quotas_for_every_region_or_per_region():
    config = Config(quota_vcpu="400", quota_gpus="us-south=32, eu-de=24")
    south = region_quotas("us-south", config)
    assert (south.vcpu, south.gpus, south.memory_gb) == (400, 32, 5600)
    assert south.sources == {
        "vcpu": "[ibm_cloud] quota_vcpu",
        "gpus": "[ibm_cloud] quota_gpus",
        "memory_gb": "IBM's default",
    }
    assert region_quotas("us-east", config).gpus == 16  # not listed: IBM's default
    assert placement_quota_problem("us-south", H100, 2, south) is None
    problem = placement_quota_problem("eu-de", H100, 4, region_quotas("eu-de", config))
    assert "32 GPUs (4 x 8), over the quota of 24 ([ibm_cloud] quota_gpus)" in problem
    assert "640 vCPU (4 x 160), over the quota of 400 ([ibm_cloud] quota_vcpu)" in problem


def test_a_malformed_option_is_a_problem_naming_it():
    with pytest.raises(QuotaConfigError, match=r"\[ibm_cloud\] quota_vcpu = 'lots'"):
        region_quotas("us-south", Config(quota_vcpu="lots"))
    problems = quota_problems(
        {"region": "us-south", "gpu_profile": H100, "vm_count": 1}, Config(quota_gpus="us-south=")
    )
    assert problems and "quota_gpus" in problems[0]


def test_airflows_configuration_is_read_at_run_time(monkeypatch):
    params = {"region": "us-south", "gpu_profile": H100, "vm_count": 2}
    assert "quota_vcpu" in quota_problems(params)[0]  # IBM's default: 200 < 320
    monkeypatch.setenv("AIRFLOW__IBM_CLOUD__QUOTA_VCPU", "320")
    assert quota_problems(params) == []


# -- in validate, against the sandbox (connections and the image look-up are real) ----------------


@pytest.mark.sandbox
def test_validate_names_the_quota_first_and_creates_nothing(sandbox_factory, monkeypatch):
    box = sandbox_factory(rate_limit_per_min=None)
    for key, value in box.airflow_connections().items():
        monkeypatch.setenv(key, value)
    params = {name: param.value for name, param in PARAMS.items()}
    params.update(vm_count=3, gpu_profile=H100)
    run = SimpleNamespace(dag_id="ibm_gpu_workload", run_id="manual__2026-12-06T00:00:00+00:00")
    with pytest.raises(AirflowFailException) as err:
        plan_run(params, dag_run=run, ibm_conn_id="ibm_cloud_default", cos_conn_id="ibm_cos_default")
    first_line = str(err.value).splitlines()[0]
    # The quota comes before the budget: no budget makes a run over a quota possible.
    assert first_line.startswith(
        f"Invalid run, nothing was created. Fix: quota: 3 x {H100} in region us-south"
    )
    assert "max_cost_usd" in str(err.value)  # the budget is still listed, after it
    assert box.inventory.list() == []

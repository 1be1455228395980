"""validate refuses, before anything exists, what the VPC API would refuse at apply.

A profile the zone does not offer (the project's profile table, no network) and a missing or
obsolete image (one read of the VPC API, here the sandbox's, through the real ibm-vpc SDK).
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from gpu_pipeline.params import PARAMS
from gpu_pipeline.validation import image_problems, plan_run
from ibm_vpc import VpcV1
from ibm_vpc import vpc_v1 as models

pytestmark = pytest.mark.sandbox

DAG_RUN = SimpleNamespace(dag_id="ibm_gpu_workload", run_id="manual__2026-12-02T00:00:00+00:00")


@pytest.fixture
def box(sandbox_factory, monkeypatch):
    sbx = sandbox_factory(rate_limit_per_min=None)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    return sbx


def params(**overrides):
    values = {name: param.value for name, param in PARAMS.items()}
    values.update(overrides)
    return values


def validate(**overrides):
    return plan_run(
        params(**overrides), dag_run=DAG_RUN, ibm_conn_id="ibm_cloud_default", cos_conn_id="ibm_cos_default"
    )


def test_the_defaults_pass(box):
    plan = validate()
    assert plan["terraform_variables"]["image_name"] == "ibm-ubuntu-24-04-6-minimal-amd64-3"


@pytest.mark.parametrize(
    ("image", "fix"),
    [
        ("ibm-ubuntu-20-04-6-minimal-amd64-6", "is obsolete and can no longer create servers"),
        ("ibm-ubuntu-18-04-minimal-amd64-9", "does not exist in region 'us-south'"),
    ],
)
def test_an_obsolete_or_missing_image_is_refused_before_anything_exists(box, image, fix):
    with pytest.raises(AirflowFailException) as err:
        validate(image=image)
    assert "nothing was created" in str(err.value)
    assert f"image: '{image}' {fix}" in str(err.value)
    assert box.inventory.list() == []


def test_a_deprecated_image_is_accepted_with_a_warning(box, caplog):
    with caplog.at_level(logging.WARNING):
        assert (
            image_problems("ibm-ubuntu-24-04-6-minimal-amd64-2", "us-south", ibm_conn_id="ibm_cloud_default")
            == []
        )
    assert "is deprecated" in caplog.text


def test_a_profile_the_zone_does_not_offer_is_refused(box):
    with pytest.raises(AirflowFailException) as err:
        validate(gpu_profile="gx3d-160x1792x8h200")
    assert "gpu_profile: 'gx3d-160x1792x8h200' is not offered in zone 'us-south-1'" in str(err.value)


def test_the_sandbox_lists_images_as_the_sdk_models_them(box):
    from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

    service = VpcV1(authenticator=IAMAuthenticator(box.api_key, url=box.endpoints["iam"]))
    service.set_service_url(box.endpoints["vpc"])
    listed = models.ImageCollection.from_dict(service.list_images(status=["available"]).get_result())
    assert {i.status for i in listed.images} == {"available"}
    obsolete = service.list_images(name="ibm-ubuntu-20-04-6-minimal-amd64-6").get_result()["images"][0]
    image = models.Image.from_dict(service.get_image(id=obsolete["id"]).get_result())
    assert image.status == "obsolete" and image.zones == []


def test_the_plan_lists_the_placements_the_apply_may_move_to(box):
    plan = validate(zone="us-south-2")
    assert [p["zone"] for p in plan["placements"]] == ["us-south-2", "us-south-1", "us-south-3"]
    assert plan["placement_timeout_minutes"] == PARAMS["placement_timeout_minutes"].value


def test_the_budget_holds_for_the_most_expensive_placement_that_may_be_tried(box):
    # One L4 for 2 h fits 10 USD; an H100 placement further down the list does not.
    validate(max_cost_usd=10)
    with pytest.raises(AirflowFailException) as err:
        validate(
            max_cost_usd=10,
            placements=[{"zone": "us-south-1", "gpu_profile": "gx3d-160x1792x8h100"}, {"zone": "us-south-2"}],
        )
    assert "max_cost_usd" in str(err.value) and "gx3d-160x1792x8h100" in str(err.value)


def test_every_placement_s_profile_must_fit_the_region_s_quotas(box):
    with pytest.raises(AirflowFailException) as err:
        validate(
            vm_count=2,
            placements=[{"zone": "us-south-1"}, {"zone": "us-south-1", "gpu_profile": "gx3d-160x1792x8h100"}],
        )
    assert "quota" in str(err.value).lower() and "nothing was created" in str(err.value)

"""VpcHook.find_run_resources with the VpcV1 client mocked (pins paging and the name-matching rule)."""

from __future__ import annotations

from unittest import mock

import pytest

from ibm_cloud_airflow.hooks.vpc import VpcHook, belongs_to_run

SLUG = "manual-2026-abc-1a2b3c4d"


def resp(v):
    r = mock.MagicMock()
    r.get_result.return_value = v
    return r


@pytest.fixture
def hook(ibm_env):
    h = VpcHook()
    h.__dict__["client"] = mock.MagicMock(name="VpcV1")
    c = h.client
    c.list_instances.side_effect = [
        resp(
            {
                "instances": [
                    {"id": "i0", "name": f"{SLUG}-vm-0", "boot_volume_attachment": {"volume": {"id": "v0"}}}
                ],
                "next": {"href": "https://x/v1/instances?start=abc&limit=100"},
            }
        ),
        resp({"instances": [{"id": "i9", "name": "other-run-vm-0"}]}),
    ]
    c.list_volumes.return_value = resp(
        {
            "volumes": [
                {"id": "v0", "name": "boot-random-name"},
                {
                    "id": "v1",
                    "name": "data",
                    "volume_attachments": [{"instance": {"id": "i0", "name": f"{SLUG}-vm-0"}}],
                },
                {"id": "v9", "name": "other"},
            ]
        }
    )
    c.list_floating_ips.return_value = resp({"floating_ips": []})
    c.list_public_gateways.return_value = resp({"public_gateways": [{"id": "g", "name": f"{SLUG}-pgw"}]})
    c.list_subnets.return_value = resp({"subnets": [{"id": "s", "name": f"{SLUG}-subnet"}]})
    c.list_security_groups.return_value = resp({"security_groups": [{"id": "sg", "name": f"{SLUG}x-sg"}]})
    c.list_keys.return_value = resp({"keys": []})
    c.list_vpcs.return_value = resp({"vpcs": [{"id": "vpc", "name": f"{SLUG}-vpc"}]})
    return h


def test_find_run_resources(hook):
    found = hook.find_run_resources(SLUG)
    assert [(r["kind"], r["id"]) for r in found] == [
        ("instance", "i0"),
        ("volume", "v0"),
        ("volume", "v1"),
        ("public_gateway", "g"),
        ("subnet", "s"),
        ("vpc", "vpc"),
    ]
    assert hook.client.list_instances.call_args_list[1].kwargs["start"] == "abc"


def test_client_uses_connection_url(ibm_env):
    h = VpcHook()
    assert h.client.service_url == "https://us-south.iaas.cloud.ibm.com/v1"
    assert h.client.version == h.version


def test_belongs_to_run():
    assert belongs_to_run(f"{SLUG}-vpc", SLUG) and belongs_to_run(SLUG, SLUG)
    assert not belongs_to_run(f"{SLUG}x", SLUG) and not belongs_to_run(None, SLUG)

"""VpcHook.find_resources with the API client mocked (pins paging and the matching of attached volumes).

The client's requests themselves (paths, ``version``/``generation``, IAM) run against the sandbox's
VPC API in tests/ibm_cloud_airflow/test_sandbox_integration.py and the reaper's tests.
"""

from __future__ import annotations

from unittest import mock

import pytest

from ibm_cloud_airflow.hooks.vpc import VpcHook

SLUG = "manual-2026-abc-1a2b3c4d"

PAGES = {
    "instances": [
        {
            "instances": [
                {"id": "i0", "name": f"{SLUG}-vm-0", "boot_volume_attachment": {"volume": {"id": "v0"}}}
            ],
            "next": {"href": "https://x/v1/instances?start=abc&limit=100"},
        },
        {"instances": [{"id": "i9", "name": "other-run-vm-0"}]},
    ],
    "volumes": [
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
    ],
    "floating_ips": [{"floating_ips": []}],
    "public_gateways": [{"public_gateways": [{"id": "g", "name": f"{SLUG}-pgw"}]}],
    "subnets": [{"subnets": [{"id": "s", "name": f"{SLUG}-subnet"}]}],
    "security_groups": [{"security_groups": [{"id": "sg", "name": f"{SLUG}x-sg"}]}],
    "keys": [{"keys": []}],
    "vpcs": [{"vpcs": [{"id": "vpc", "name": f"{SLUG}-vpc"}]}],
}


@pytest.fixture
def hook(ibm_env):
    h = VpcHook()
    pages = {collection: iter(listing) for collection, listing in PAGES.items()}
    h.__dict__["client"] = mock.MagicMock(name="VpcApi")
    h.client.list.side_effect = lambda collection, **params: next(pages[collection])
    return h


def named_for_the_run(name: str) -> bool:
    return name == SLUG or name.startswith(SLUG + "-")


def test_find_resources(hook):
    found = hook.find_resources(named_for_the_run)
    assert [(r["kind"], r["id"]) for r in found] == [
        ("instance", "i0"),
        ("volume", "v0"),
        ("volume", "v1"),
        ("public_gateway", "g"),
        ("subnet", "s"),
        ("vpc", "vpc"),
    ]
    instance_calls = [c for c in hook.client.list.call_args_list if c.args[0] == "instances"]
    assert instance_calls[1].kwargs["start"] == "abc"


def test_client_uses_connection_url(ibm_env):
    h = VpcHook()
    assert h.client.service_url == "https://us-south.iaas.cloud.ibm.com/v1"
    assert h.client.version == h.version


def test_the_hook_does_not_import_the_generated_vpc_sdk():
    # Its 9 MB module costs about 0.7 s in every task process that lists resources.
    import subprocess
    import sys

    code = "import ibm_cloud_airflow.hooks.vpc as v, sys; v._vpc_api_class(); print('ibm_vpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_rule_sees_names_only_and_never_an_empty_one(hook):
    seen: list[str] = []
    hook.find_resources(lambda name: seen.append(name) or False)
    assert "" not in seen and None not in seen
    assert f"{SLUG}-vm-0" in seen and "other-run-vm-0" in seen

"""The sandbox refuses what IBM Cloud refuses: each VPC rule through ibm-schematics, the real SDK.

For every rule, a configuration IBM would refuse fails its plan (the provider's schema) or its
apply (the VPC API, after what came before it was created), with IBM's wording; its valid twin
applies. A failed apply is destroyed and nothing of it is left in the inventory. Sources of each
rule: docs/sandbox.md, "What the sandbox enforces, and what it doesn't".
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
import requests
from ibm_vpc import VpcV1
from ibm_vpc import vpc_v1 as models

pytestmark = pytest.mark.sandbox

LONG = "a" * 64


def openssh(kind: str) -> str:
    """A well-formed OpenSSH public key line of ``kind`` (ssh-ed25519 or ssh-rsa)."""

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    body = field(kind.encode()) + field(os.urandom(32))
    return f"{kind} {base64.b64encode(body).decode()} dev@example"


ED25519, RSA = openssh("ssh-ed25519"), openssh("ssh-rsa")

NETWORK = """
resource "ibm_is_vpc" "vpc" {
  name = "t-vpc"
}

resource "ibm_is_security_group" "sg" {
  name = "t-sg"
  vpc  = ibm_is_vpc.vpc.id
}

resource "ibm_is_subnet" "subnet" {
  name                     = "t-subnet"
  vpc                      = ibm_is_vpc.vpc.id
  zone                     = "us-south-1"
  total_ipv4_address_count = 16
}
"""


def vpc(name: str = "t-vpc", tags: str = '["airflow-run:t"]') -> str:
    return f'resource "ibm_is_vpc" "vpc" {{\n  name = "{name}"\n  tags = {tags}\n}}\n'


def subnet(zone: str = "us-south-1", count: int = 16) -> str:
    return vpc() + (
        'resource "ibm_is_subnet" "subnet" {\n  name = "t-subnet"\n  vpc = ibm_is_vpc.vpc.id\n'
        f'  zone = "{zone}"\n  total_ipv4_address_count = {count}\n}}\n'
    )


def rule(**fields: Any) -> str:
    body = "\n".join(
        f"  {k} = {v if isinstance(v, int) or str(v).startswith('ibm_') else chr(34) + str(v) + chr(34)}"
        for k, v in fields.items()
    )
    other = 'resource "ibm_is_security_group" "other" {\n  name = "t-other"\n  vpc = ibm_is_vpc.vpc.id\n}\n'
    return (
        NETWORK
        + other
        + f'resource "ibm_is_security_group_rule" "r" {{\n  group = ibm_is_security_group.sg.id\n{body}\n}}\n'
    )


def ssh_key(key: str, key_type: str | None = None) -> str:
    line = f'\n  type = "{key_type}"' if key_type else ""
    return f'resource "ibm_is_ssh_key" "k" {{\n  name = "t-key"\n  public_key = "{key}"{line}\n}}\n'


def reserved_ip(name: str) -> str:
    body = f'  subnet = ibm_is_subnet.subnet.id\n  name = "{name}"\n'
    return NETWORK + f'resource "ibm_is_subnet_reserved_ip" "ip" {{\n{body}}}\n'


def instance(
    profile: str = "gx3-16x80x1l4",
    zone: str = "us-south-1",
    image: str = "ibm-ubuntu-24-04-6-minimal-amd64-3",
    name: str = "t-vm",
) -> str:
    return (
        NETWORK
        + f"""
data "ibm_is_image" "image" {{
  name = "{image}"
}}

resource "ibm_is_instance" "vm" {{
  name    = "{name}"
  image   = data.ibm_is_image.image.id
  profile = "{profile}"
  vpc     = ibm_is_vpc.vpc.id
  zone    = "{zone}"

  primary_network_interface {{
    subnet          = ibm_is_subnet.subnet.id
    security_groups = [ibm_is_security_group.sg.id]
  }}

  boot_volume {{
    name = "{name}-boot"
  }}
}}
"""
    )


# (rule, template IBM refuses, its valid twin, what the error says)
PLAN_RULES = [
    ("name alphabet", vpc("T_VPC"), vpc("t-vpc"), "should match regexp ^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$"),
    ("name length", vpc(LONG), vpc(LONG[:63]), "must contain from 1 to 63 characters"),
    (
        "tag alphabet",
        vpc(tags='["ttl:2026-12-01T17:03:00+00:00"]'),
        vpc(tags='["ttl:20261201T170300Z"]'),
        "should match regexp ^[A-Za-z0-9:_ .-]+$",
    ),
    ("tag length", vpc(tags=f'["{"t" * 129}"]'), vpc(tags=f'["{"t" * 128}"]'), "from 1 to 128 characters"),
    (
        "boot volume name",
        instance(name="t-vm").replace('"t-vm-boot"', '"Boot"'),
        instance(name="t-vm"),
        '"boot_volume.0.name" ("Boot") should match regexp',
    ),
    (
        "rule direction",
        rule(direction="egress", remote="0.0.0.0/0"),
        rule(direction="outbound", remote="0.0.0.0/0"),
        '"direction" must contain a value from',
    ),
    (
        "rule port range",
        rule(direction="outbound", protocol="tcp", port_min=443, port_max=70000),
        rule(direction="outbound", protocol="tcp", port_min=443, port_max=443),
        "expected port_max to be in the range (1 - 65535), got 70000",
    ),
    (
        "rule protocol",
        rule(direction="outbound", protocol="tcp6"),
        rule(direction="outbound", protocol="number_41"),
        '"protocol" must contain a value from',
    ),
    (
        "rule ports with icmp",
        rule(direction="inbound", protocol="icmp", port_min=8, port_max=8),
        rule(direction="inbound", protocol="icmp", type=8, code=0),
        "attribute 'port_min' conflicts with protocol icmp",
    ),
    (
        "rule icmp type range",
        rule(direction="inbound", protocol="icmp", type=255),
        rule(direction="inbound", protocol="icmp", type=254),
        "expected type to be in the range (0 - 254), got 255",
    ),
    (
        "ssh key type",
        ssh_key(ED25519, "dsa"),
        ssh_key(ED25519, "ed25519"),
        '"type" must contain a value from',
    ),
    ("reserved IP name", reserved_ip("IP_1"), reserved_ip("ip-1"), '"name" ("IP_1") should match regexp'),
    (
        "image exists",
        instance(image="ibm-ubuntu-18-04-minimal-amd64-9"),
        instance(),
        "No image found with name: ibm-ubuntu-18-04-minimal-amd64-9",
    ),
]

APPLY_RULES = [
    ("zone of the region", subnet(zone="eu-de-1"), subnet(zone="us-south-2"), "Zone 'eu-de-1' not found"),
    ("subnet size", subnet(count=20), subnet(count=32), "must be a power of 2 from 8 to 16384"),
    ("subnet minimum", subnet(count=4), subnet(count=8), "must be a power of 2 from 8 to 16384"),
    ("ssh key type vs key", ssh_key(ED25519), ssh_key(RSA), "public key provided is not of type rsa"),
    ("ssh key declared rsa", ssh_key(RSA, "ed25519"), ssh_key(ED25519, "ed25519"), "not of type ed25519"),
    (
        "rule port order",
        rule(direction="outbound", protocol="tcp", port_min=500, port_max=400),
        rule(direction="outbound", protocol="tcp", port_min=400, port_max=500),
        "port_min 500 must be less than or equal to port_max 400",
    ),
    (
        "rule remote security group",
        rule(direction="inbound", protocol="tcp", port_min=22, port_max=22, remote="r006-no-such-sg"),
        rule(
            direction="inbound",
            protocol="tcp",
            port_min=22,
            port_max=22,
            remote="ibm_is_security_group.other.id",
        ),
        "Invalid remote provided (r006-no-such-sg)",
    ),
    (
        "rule remote address",
        rule(direction="inbound", protocol="tcp", port_min=22, port_max=22, remote="10.0.0.300"),
        rule(direction="inbound", protocol="tcp", port_min=22, port_max=22, remote="10.0.0.30"),
        "Invalid remote provided (10.0.0.300)",
    ),
    (
        "profile offered in zone",
        instance(profile="gx3d-160x1792x8h200"),
        instance(profile="gx3d-160x1792x8h100"),  # H100 is offered in us-south-1
        "Instance profile gx3d-160x1792x8h200 is not available in zone us-south-1",
    ),
    (
        "profile exists",
        instance(profile="gx9-8x64x1z100"),
        instance(),
        "Instance profile gx9-8x64x1z100 not found",
    ),
    (
        "obsolete image",
        instance(image="ibm-ubuntu-20-04-6-minimal-amd64-6"),
        instance(image="ibm-ubuntu-22-04-5-minimal-amd64-4"),
        "is obsolete and cannot be used to create an instance",
    ),
]


@pytest.fixture
def box(sandbox_factory):
    return sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)


def run(client, main_tf: str, command: str, name: str = "airflow-rules") -> tuple[str, str, str]:
    """Upload ``main_tf`` to a new workspace, run ``command``; return (workspace id, status, log)."""
    ws = client.ready(files={"main.tf": main_tf}, name=name)
    activity_id = client.run(ws["id"], command)
    act = client.wait(ws["id"], activity_id)
    logs = client.svc.get_workspace_activity_logs(w_id=ws["id"], activity_id=activity_id).get_result()
    text = requests.get(
        logs["templates"][0]["log_url"],
        headers={"Authorization": f"Bearer {client.access_token()}"},
        timeout=5,
    ).text
    return ws["id"], act["status"], text


def destroy_and_count_left(client, box, w_id: str) -> int:
    act = client.wait(w_id, client.run(w_id, "destroy"))
    assert act["status"] == "COMPLETED", act
    return len(box.inventory.list(workspace_id=w_id))


@pytest.mark.parametrize(
    ("rule_name", "refused", "valid", "message"), PLAN_RULES, ids=[r[0] for r in PLAN_RULES]
)
def test_the_provider_schema_refuses_at_plan(box, make_client, rule_name, refused, valid, message):
    client = make_client(box)
    _, status, log = run(client, refused, "plan")
    assert status == "FAILED", log
    assert message in log, log
    assert box.inventory.list() == []

    w_id, status, log = run(client, valid, "apply")
    assert status == "COMPLETED", log
    assert destroy_and_count_left(client, box, w_id) == 0


@pytest.mark.parametrize(
    ("rule_name", "refused", "valid", "message"), APPLY_RULES, ids=[r[0] for r in APPLY_RULES]
)
def test_the_vpc_api_refuses_at_apply_and_destroy_leaves_nothing(
    box, make_client, rule_name, refused, valid, message
):
    client = make_client(box)
    w_id, status, log = run(client, refused, "plan")
    assert status == "COMPLETED", log  # nothing in the plan tells: only the API knows
    act = client.wait(w_id, client.run(w_id, "apply"))
    assert act["status"] == "FAILED", act
    reason = client.svc.get_workspace(w_id=w_id).get_result()["failure_reason"]
    assert message in reason, reason
    assert destroy_and_count_left(client, box, w_id) == 0

    w_id, status, log = run(client, valid, "apply")
    assert status == "COMPLETED", log
    assert destroy_and_count_left(client, box, w_id) == 0


def test_a_deprecated_image_warns_and_applies(box, make_client):
    client = make_client(box)
    w_id, status, log = run(client, instance(image="ibm-ubuntu-24-04-6-minimal-amd64-2"), "apply")
    assert status == "COMPLETED", log
    assert "Given image ibm-ubuntu-24-04-6-minimal-amd64-2 is deprecated" in log
    assert destroy_and_count_left(client, box, w_id) == 0


def test_the_gpu_quota_counts_every_workspace_of_the_region(sandbox_factory, make_client):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0, gpu_quota=3)
    client = make_client(box)
    _, status, log = run(client, instance(profile="gx3-32x160x2l4"), "apply", name="airflow-q1")
    assert status == "COMPLETED", log  # 2 of 3 GPUs

    second, status, log = run(client, instance(profile="gx3-32x160x2l4"), "apply", name="airflow-q2")
    assert status == "FAILED"
    assert "code over_quota" in log, log
    assert "will put the user over quota (instance-gpu). Allocated: 2, Requested: 2, Quota: 3" in log
    assert destroy_and_count_left(client, box, second) == 0

    _, status, log = run(client, instance(profile="gx3-16x80x1l4"), "apply", name="airflow-q3")
    assert status == "COMPLETED", log  # its valid twin: 3 of 3


def test_no_capacity_fails_the_instance_midway_and_destroy_cleans_up(box, make_client):
    box.set_faults(["no_capacity"])
    client = make_client(box)
    w_id, status, log = run(client, instance(), "apply")
    assert status == "FAILED"
    assert "went into failed state" in log and "cannot_start_capacity" in log
    # created before the failure: the network, and the failed (tainted) instance with its boot volume
    kinds = sorted(r["kind"] for r in box.inventory.list(workspace_id=w_id))
    assert kinds == sorted(
        ["ibm_is_vpc", "ibm_is_security_group", "ibm_is_subnet", "ibm_is_instance", "boot_volume"]
    )
    service = VpcV1(authenticator=client.auth)
    service.set_service_url(box.endpoints["vpc"])
    [vm] = models.InstanceCollection.from_dict(service.list_instances().get_result()).instances
    assert vm.status == "failed" and vm.status_reasons[0].code == "cannot_start_capacity"
    assert box.launcher.processes() == {}  # a server that never started runs nothing

    # a retry replaces the tainted instance and fails the same way while the zone has no capacity
    act = client.wait(w_id, client.run(w_id, "apply"))
    assert act["status"] == "FAILED"
    assert len(box.inventory.list(kind="ibm_is_instance")) == 1

    assert destroy_and_count_left(client, box, w_id) == 0
    box.set_faults([])
    _, status, log = run(client, instance(), "apply")
    assert status == "COMPLETED", log


def test_images_data_source_filters_by_status(box, make_client):
    # The way to the newest usable image of a family: ibm_is_images with status = "available".
    main_tf = """
data "ibm_is_images" "usable" {
  visibility = "public"
  status     = "available"
}

output "names" {
  value = [for i in data.ibm_is_images.usable.images : i.name if startswith(i.name, "ibm-ubuntu-")]
}
"""
    client = make_client(box)
    w_id, status, log = run(client, main_tf, "apply")
    assert status == "COMPLETED", log
    [outputs] = client.svc.get_workspace_outputs(w_id=w_id).get_result()
    names = outputs["output_values"][0]["names"]["value"]
    assert names == ["ibm-ubuntu-24-04-6-minimal-amd64-3", "ibm-ubuntu-22-04-5-minimal-amd64-4"]

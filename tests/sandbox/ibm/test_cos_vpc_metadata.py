"""COS (ibm_boto3, HMAC and IAM modes), the VPC API (ibm_vpc) and the instance metadata service."""

from __future__ import annotations

import ibm_boto3
import pytest
import requests
from ibm_botocore.client import Config
from ibm_botocore.exceptions import ClientError
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator, VPCInstanceAuthenticator
from ibm_vpc import VpcV1
from ibm_vpc import vpc_v1 as models

pytestmark = pytest.mark.sandbox


def test_cos_hmac_roundtrip(sandbox):
    sandbox.ensure_bucket("results")
    sandbox.ensure_bucket("results")  # idempotent
    s3 = sandbox.cos_client()
    s3.put_object(Bucket="results", Key="run/vm-0/_SUCCESS", Body=b"abc")
    assert s3.get_object(Bucket="results", Key="run/vm-0/_SUCCESS")["Body"].read() == b"abc"
    listed = s3.list_objects_v2(Bucket="results", Prefix="run/")
    assert [o["Key"] for o in listed["Contents"]] == ["run/vm-0/_SUCCESS"]
    s3.upload_fileobj(__import__("io").BytesIO(b"x" * 10_000), "results", "big.bin")
    assert s3.head_object(Bucket="results", Key="big.bin")["ContentLength"] == 10_000


def test_cos_signatures_cover_awkward_requests(sandbox):
    import io

    import boto3
    from ibm_boto3.s3.transfer import TransferConfig

    sandbox.ensure_bucket("odd")
    s3 = sandbox.cos_client()
    key = "dag/run slug+x/vm-0/ü file=(1).json"
    s3.put_object(Bucket="odd", Key=key, Body=b"{}", ContentType="application/json")
    listed = s3.list_objects_v2(Bucket="odd", Prefix="dag/run slug+x/", Delimiter="/")
    assert listed["CommonPrefixes"] == [{"Prefix": "dag/run slug+x/vm-0/"}]
    big = io.BytesIO(b"z" * (6 * 1024 * 1024))
    s3.upload_fileobj(big, "odd", "multi.bin", Config=TransferConfig(multipart_threshold=5 * 1024 * 1024))
    assert s3.head_object(Bucket="odd", Key="multi.bin")["ContentLength"] == 6 * 1024 * 1024
    s3.delete_objects(Bucket="odd", Delete={"Objects": [{"Key": key}, {"Key": "multi.bin"}]})
    assert s3.list_objects_v2(Bucket="odd").get("KeyCount") == 0
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "odd"}, ExpiresIn=60)
    assert requests.get(url, timeout=5).status_code == 200
    # plain AWS boto3 (newer signing defaults, flexible checksums) works too
    aws = boto3.client(
        "s3",
        aws_access_key_id=sandbox.cos_hmac["access_key_id"],
        aws_secret_access_key=sandbox.cos_hmac["secret_access_key"],
        endpoint_url=sandbox.endpoints["cos"],
        region_name="us-south",
    )
    aws.put_object(Bucket="odd", Key="aws.txt", Body=b"aws")
    assert aws.get_object(Bucket="odd", Key="aws.txt")["Body"].read() == b"aws"
    wrong_secret = ibm_boto3.client(
        "s3",
        aws_access_key_id=sandbox.cos_hmac["access_key_id"],
        aws_secret_access_key="not-the-secret",
        endpoint_url=sandbox.endpoints["cos"],
        region_name="us-south",
    )
    with pytest.raises(ClientError) as err:
        wrong_secret.list_objects_v2(Bucket="odd")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_cos_rejects_unknown_access_key_and_anonymous(sandbox):
    bad = ibm_boto3.client(
        "s3",
        aws_access_key_id="unknown",
        aws_secret_access_key="x",
        endpoint_url=sandbox.endpoints["cos"],
        region_name="us-south",
    )
    with pytest.raises(ClientError) as err:
        bad.list_buckets()
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(f"{sandbox.endpoints['cos']}/", timeout=5).status_code == 403


def test_cos_iam_token_mode(sandbox):
    sandbox.ensure_bucket("iam-bucket")
    s3 = ibm_boto3.client(
        "s3",
        ibm_api_key_id=sandbox.api_key,
        ibm_service_instance_id=sandbox.cos_instance_crn,
        ibm_auth_endpoint=f"{sandbox.endpoints['iam']}/identity/token",
        config=Config(signature_version="oauth"),
        endpoint_url=sandbox.endpoints["cos"],
    )
    s3.put_object(Bucket="iam-bucket", Key="k", Body=b"via-iam")
    assert sandbox.cos_client().get_object(Bucket="iam-bucket", Key="k")["Body"].read() == b"via-iam"
    denied = requests.get(
        f"{sandbox.endpoints['cos']}/iam-bucket/k", headers={"Authorization": "Bearer forged"}, timeout=5
    )
    assert denied.status_code == 403 and b"AccessDenied" in denied.content


def vpc_client(box) -> VpcV1:
    vpc = VpcV1(authenticator=IAMAuthenticator(box.api_key, url=box.endpoints["iam"]))
    vpc.set_service_url(box.endpoints["vpc"])
    return vpc


def add_world(inv) -> dict:
    vpc = inv.add("ibm_is_vpc", "run1-vpc", tags=["airflow-run:run1"])
    subnet = inv.add("ibm_is_subnet", "run1-subnet", attrs={"vpc": vpc["id"], "zone": "us-south-1"})
    inv.add("ibm_is_public_gateway", "run1-pgw", attrs={"vpc": vpc["id"], "zone": "us-south-1"})
    inv.add("ibm_is_security_group", "run1-sg", attrs={"vpc": vpc["id"]})
    inv.add("ibm_is_ssh_key", "run1-key", attrs={"public_key": "ssh-ed25519 AAAAC3 x"})
    vm = inv.add(
        "ibm_is_instance",
        "run1-vm-0",
        attrs={
            "vpc": vpc["id"],
            "subnet": subnet["id"],
            "zone": "us-south-1",
            "profile": "gx3-16x80x1l4",
            "trusted_profile_id": "Profile-1234",
        },
        resource_id="0717_test-vm",
    )
    inv.add("boot_volume", "run1-vm-0-boot", attrs={"instance_id": vm["id"], "capacity": 100})
    inv.add("ibm_is_floating_ip", "run1-fip", attrs={"zone": "us-south-1"})
    return vm


COLLECTIONS = [
    ("list_instances", "instances", models.InstanceCollection, models.Instance, "get_instance"),
    ("list_volumes", "volumes", models.VolumeCollection, models.Volume, "get_volume"),
    ("list_floating_ips", "floating_ips", models.FloatingIPCollection, models.FloatingIP, "get_floating_ip"),
    (
        "list_public_gateways",
        "public_gateways",
        models.PublicGatewayCollection,
        models.PublicGateway,
        "get_public_gateway",
    ),
    ("list_vpcs", "vpcs", models.VPCCollection, models.VPC, "get_vpc"),
    ("list_subnets", "subnets", models.SubnetCollection, models.Subnet, "get_subnet"),
    (
        "list_security_groups",
        "security_groups",
        models.SecurityGroupCollection,
        models.SecurityGroup,
        "get_security_group",
    ),
    ("list_keys", "keys", models.KeyCollection, models.Key, "get_key"),
]


def test_vpc_lists_what_is_live(sandbox):
    add_world(sandbox.inventory)
    vpc = vpc_client(sandbox)
    for method, key, collection, model, getter in COLLECTIONS:
        result = getattr(vpc, method)().get_result()
        parsed = collection.from_dict(result)
        items = getattr(parsed, key)
        assert result["total_count"] == 1 and len(items) == 1, method
        one = getattr(vpc, getter)(id=items[0].id).get_result()
        assert model.from_dict(one).id == items[0].id
    instance = vpc.list_instances().get_result()["instances"][0]
    assert instance["name"] == "run1-vm-0" and instance["profile"]["name"] == "gx3-16x80x1l4"
    assert instance["vpc"]["name"] == "run1-vpc" and instance["status"] == "running"
    assert vpc.list_instances(name="other").get_result()["instances"] == []
    assert len(vpc.list_subnets(vpc_id=instance["vpc"]["id"]).get_result()["subnets"]) == 1
    with pytest.raises(ApiException) as err:
        vpc.get_instance(id="0717_missing")
    assert err.value.status_code == 404


def test_vpc_pagination_and_version(sandbox):
    for i in range(5):
        sandbox.inventory.add("ibm_is_vpc", f"vpc-{i}")
    vpc = vpc_client(sandbox)
    pager = models.VpcsPager if hasattr(models, "VpcsPager") else None
    first = vpc.list_vpcs(limit=2).get_result()
    assert len(first["vpcs"]) == 2 and first["total_count"] == 5 and "start=2" in first["next"]["href"]
    if pager is not None:
        assert len(pager(client=vpc, limit=2).get_all()) == 5
    token = vpc.authenticator.token_manager.get_token()
    no_version = requests.get(
        f"{sandbox.endpoints['vpc']}/vpcs?generation=2",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert no_version.status_code == 400 and no_version.json()["errors"][0]["code"] == "missing_version"
    no_token = requests.get(f"{sandbox.endpoints['vpc']}/vpcs?version=2026-01-01&generation=2", timeout=5)
    assert no_token.status_code == 401


@pytest.mark.parametrize("service_version", ["2022-03-01", "2025-08-26"])
def test_metadata_trusted_profile_token_writes_to_cos(sandbox, service_version):
    vm = add_world(sandbox.inventory)
    sandbox.ensure_bucket("vm-out")
    # what terraform/main.tf's ibm_iam_trusted_profile_policy leaves in the inventory
    sandbox.inventory.add(
        "ibm_iam_trusted_profile_policy",
        "policy",
        attrs={
            "iam_id": "iam-Profile-1234",
            "roles": ["Object Writer"],
            "resources": [
                {
                    "service": "cloud-object-storage",
                    "resource_instance_id": sandbox.cos_instance_crn.split(":")[7],
                    "resource_type": "bucket",
                    "resource": "vm-out",
                }
            ],
        },
    )
    auth = VPCInstanceAuthenticator(url=f"{sandbox.endpoints['metadata']}/i/{vm['id']}")
    auth.token_manager.set_service_version(service_version)
    token = auth.token_manager.get_token()
    assert token
    response = requests.put(
        f"{sandbox.endpoints['cos']}/vm-out/run/vm-0/progress.json",
        data=b"{}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 200
    assert (
        sandbox.cos_client().get_object(Bucket="vm-out", Key="run/vm-0/progress.json")["Body"].read() == b"{}"
    )


def test_metadata_errors(sandbox):
    vm = add_world(sandbox.inventory)
    base = f"{sandbox.endpoints['metadata']}/i/{vm['id']}"
    unknown = requests.put(
        f"{sandbox.endpoints['metadata']}/i/0717_nope/identity/v1/token?version=2025-08-26",
        headers={"Metadata-Flavor": "ibm"},
        json={"expires_in": 60},
        timeout=5,
    )
    assert unknown.status_code == 404
    no_flavor = requests.put(f"{base}/identity/v1/token?version=2025-08-26", json={}, timeout=5)
    assert no_flavor.status_code == 400
    identity = requests.put(
        f"{base}/identity/v1/token?version=2025-08-26",
        headers={"Metadata-Flavor": "ibm"},
        json={"expires_in": 60},
        timeout=5,
    ).json()["access_token"]
    wrong_profile = requests.post(
        f"{base}/identity/v1/iam_tokens?version=2025-08-26",
        headers={"Authorization": f"Bearer {identity}", "Metadata-Flavor": "ibm"},
        json={"trusted_profile": {"id": "Profile-other"}},
        timeout=5,
    )
    assert wrong_profile.status_code == 400
    ok = requests.post(
        f"{base}/identity/v1/iam_tokens?version=2025-08-26",
        headers={"Authorization": f"Bearer {identity}", "Metadata-Flavor": "ibm"},
        json={"trusted_profile": {"id": "Profile-1234"}},
        timeout=5,
    )
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer"
    # an identity token is not an IAM token: COS refuses it
    refused = requests.get(
        f"{sandbox.endpoints['cos']}/", headers={"Authorization": f"Bearer {identity}"}, timeout=5
    )
    assert refused.status_code == 403

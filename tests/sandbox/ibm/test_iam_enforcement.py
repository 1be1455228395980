"""IAM is enforced: COS requests against IBM's role->action table, and the API key's own policies.

Everything goes through the real SDKs (ibm_boto3 with a trusted profile's token from the metadata
service or with HMAC keys, ibm-schematics for applies). Each test fails if the sandbox becomes
permissive again.
"""

from __future__ import annotations

import time
from typing import Any

import ibm_boto3
import pytest
from ibm_botocore.client import Config
from ibm_botocore.credentials import TokenManager
from ibm_botocore.exceptions import ClientError
from ibm_cloud_sdk_core.authenticators import VPCInstanceAuthenticator
from ibm_vpc import VpcV1

from sandbox.ibm.cos_access import ACTION_ROLES, evaluate_rule

pytestmark = pytest.mark.sandbox

BUCKET = "results"
PATH_RULE = {"key": "{{resource.attributes.path}}", "operator": "stringMatch", "value": ["runs/a/*"]}


class _StaticToken(TokenManager):
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self) -> str:
        return self.token

    def set_from_config(self, config: Any) -> None:
        pass


def profile_cos(box: Any, roles: list[str], *, rule: list[dict] | None = None, **resource: str) -> Any:
    """An ibm_boto3 client holding the IAM token of a new trusted profile with one COS policy.

    The records are what the Terraform engine leaves for ``ibm_is_instance`` (with
    ``default_trusted_profile_target``) and ``ibm_iam_trusted_profile_policy``.
    """
    n = len(box.inventory.list(kind="ibm_is_instance"))
    profile = f"Profile-test-{n}"
    vm = box.inventory.add("ibm_is_instance", f"t-vm-{n}", attrs={"trusted_profile_id": profile})
    attrs: dict[str, Any] = {
        "iam_id": f"iam-{profile}",
        "roles": roles,
        "resources": [
            {
                "service": "cloud-object-storage",
                "resource_instance_id": resource.get("instance", box.cos_instance_crn.split(":")[7]),
                "resource_type": "bucket",
                "resource": resource.get("bucket", BUCKET),
            }
        ],
    }
    if rule:
        attrs.update(rule_conditions=rule, pattern="attribute-based-condition:resource:literal-and-wildcard")
    box.inventory.add("ibm_iam_trusted_profile_policy", f"t-policy-{n}", attrs=attrs)
    token = VPCInstanceAuthenticator(
        url=f"{box.endpoints['metadata']}/i/{vm['id']}"
    ).token_manager.get_token()
    return ibm_boto3.client(
        "s3",
        endpoint_url=box.endpoints["cos"],
        token_manager=_StaticToken(token),
        config=Config(
            signature_version="oauth", s3={"addressing_style": "path"}, retries={"max_attempts": 1}
        ),
    )


def denied(call: Any) -> bool:
    try:
        call()
    except ClientError as err:
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # S3 (and COS) send no body with a HEAD answer: botocore then reports the status code
        assert err.response["Error"]["Code"] in ("AccessDenied", "403")
        return True
    return False


def attempts(s3: Any, key: str) -> dict[str, Any]:
    return {
        "put": lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x"),
        "multipart": lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=key + ".mp"),
        "get": lambda: s3.get_object(Bucket=BUCKET, Key="runs/a/seed"),
        "head": lambda: s3.head_object(Bucket=BUCKET, Key="runs/a/seed"),
        "list": lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/"),
        "delete": lambda: s3.delete_object(Bucket=BUCKET, Key="runs/a/seed-copy"),
    }


@pytest.fixture
def box(sandbox: Any) -> Any:
    sandbox.ensure_bucket(BUCKET)
    admin = sandbox.cos_client()
    admin.put_object(Bucket=BUCKET, Key="runs/a/seed", Body=b"seed")
    admin.put_object(Bucket=BUCKET, Key="runs/a/seed-copy", Body=b"seed")
    return sandbox


# IBM's table (ibm-cloud-docs/account iam-service-roles-actions.md, Cloud Object Storage).
ALLOWED = {
    "Object Writer": {"put", "multipart"},
    "Object Reader": {"get", "head"},
    "Content Reader": {"get", "head", "list"},
    "Reader": {"get", "head", "list"},
    "Writer": {"put", "multipart", "get", "head", "list", "delete"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_each_role_allows_exactly_its_actions(box, role):
    s3 = profile_cos(box, [role])
    outcome = {name: not denied(call) for name, call in attempts(s3, f"runs/a/{role}").items()}
    assert {name for name, ok in outcome.items() if ok} == ALLOWED[role], outcome


def test_the_table_matches_ibm_for_the_actions_the_workload_needs():
    put, delete = (
        ACTION_ROLES["cloud-object-storage.object.put"],
        ACTION_ROLES["cloud-object-storage.object.delete"],
    )
    assert put == {"Manager", "Writer", "Object Writer"}
    assert delete == {"Manager", "Writer"}  # the reason the workload must not delete
    assert "Object Reader" in ACTION_ROLES["cloud-object-storage.object.head"]
    assert "Object Writer" in ACTION_ROLES["cloud-object-storage.object.post_complete_upload"]


def test_path_condition_scopes_a_policy_to_its_prefix(box):
    s3 = profile_cos(box, ["Object Writer", "Object Reader"], rule=[PATH_RULE])
    s3.put_object(Bucket=BUCKET, Key="runs/a/out.json", Body=b"{}")
    assert s3.get_object(Bucket=BUCKET, Key="runs/a/seed")["Body"].read() == b"seed"
    assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="runs/b/out.json", Body=b"{}"))
    assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="runs/a", Body=b"{}"))
    assert denied(lambda: s3.get_object(Bucket=BUCKET, Key="runs/b/seed"))
    # a listing has no path attribute: a path-only policy never lists
    assert denied(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/a/"))
    # multipart uploads (what upload_file does above its threshold) are covered by the same rule
    s3.upload_fileobj(
        __import__("io").BytesIO(b"x" * (6 * 1024 * 1024)),
        BUCKET,
        "runs/a/big.bin",
        Config=ibm_boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024),
    )
    assert (
        box.cos_client().head_object(Bucket=BUCKET, Key="runs/a/big.bin")["ContentLength"] == 6 * 1024 * 1024
    )


def test_policy_on_another_bucket_or_instance_grants_nothing(box):
    box.ensure_bucket("elsewhere")
    other_bucket = profile_cos(box, ["Writer"], bucket="elsewhere")
    assert denied(lambda: other_bucket.put_object(Bucket=BUCKET, Key="runs/a/x", Body=b"x"))
    other_instance = profile_cos(box, ["Writer"], instance="00000000-0000-0000-0000-000000000000")
    assert denied(lambda: other_instance.put_object(Bucket=BUCKET, Key="runs/a/x", Body=b"x"))


def test_a_deleted_policy_no_longer_grants(box):
    s3 = profile_cos(box, ["Object Writer"])
    s3.put_object(Bucket=BUCKET, Key="runs/a/x", Body=b"x")
    [policy] = box.inventory.list(kind="ibm_iam_trusted_profile_policy")
    box.inventory.remove(policy["id"])
    assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="runs/a/y", Body=b"x"))


def test_hmac_keys_carry_their_credential_role(sandbox_factory):
    reader = sandbox_factory(cos_hmac_role="Reader")
    # the bucket is created as the API key's identity (COS Writer by default)
    reader.ensure_bucket(BUCKET)
    s3 = reader.cos_client()
    assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="k", Body=b"x"))
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_default_hmac_credential_is_a_writer(box):
    s3 = box.cos_client()
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "runs/a/seed-copy"}]})
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/a/seed-copy")


def test_unknown_hmac_role_is_refused(sandbox_factory):
    with pytest.raises(ValueError, match="cos_hmac_role"):
        sandbox_factory(cos_hmac_role="Owner")


def test_rule_operators():
    attrs = {"path": "runs/a/x"}
    assert evaluate_rule(PATH_RULE, attrs)
    assert not evaluate_rule(PATH_RULE, {"path": "runs/ab/x"})
    assert not evaluate_rule(PATH_RULE, {"prefix": "runs/a/"})  # the attribute is missing
    none_exist = {
        "operator": "and",
        "conditions": [
            {"key": "{{resource.attributes.path}}", "operator": "stringExists", "value": ["false"]},
            {"key": "{{resource.attributes.prefix}}", "operator": "stringExists", "value": ["false"]},
        ],
    }
    assert evaluate_rule(none_exist, {}) and not evaluate_rule(none_exist, attrs)
    assert evaluate_rule({"operator": "or", "conditions": [PATH_RULE, none_exist]}, {})
    one_of = {"key": "{{resource.attributes.path}}", "operator": "stringMatchAnyOf", "value": ["a?c", "x/*"]}
    assert evaluate_rule(one_of, {"path": "abc"}) and not evaluate_rule(one_of, {"path": "abbc"})


# -- the API key's own policies, at apply ------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "created_before", "expected"),
    [
        ("is", 0, "The request is not authorized."),
        ("iam-identity", 2, "You are not authorized to use this API."),
        ("cloud-object-storage", 3, "You are not authorized to use this API."),
    ],
)
def test_api_key_without_a_policy_fails_the_apply_and_destroy_cleans_up(
    sandbox_factory, make_client, fixtures_dir, tar_of, service, created_before, expected
):
    box = sandbox_factory(
        rate_limit_per_min=None, resource_delay_s=0, faults={"api_key_missing_policy": {"service": service}}
    )
    client = make_client(box)
    ws = client.create(
        name="airflow-iam",
        variables=[
            {"name": "run_id", "value": "iam1", "type": "string"},
            {"name": "cos_instance_guid", "value": box.cos_instance_crn.split(":")[7], "type": "string"},
        ],
    )
    client.svc.template_repo_upload(
        w_id=ws["id"], t_id=ws["template_data"][0]["id"], file=tar_of(fixtures_dir / "tf_vm")
    )
    plan = client.wait(ws["id"], client.run(ws["id"], "plan"))
    assert plan["status"] == "COMPLETED"  # IAM answers creates, not plans
    act = client.wait(ws["id"], client.run(ws["id"], "apply"))
    assert act["status"] == "FAILED"
    log_url = client.svc.get_workspace_activity_logs(w_id=ws["id"], activity_id=act["action_id"]).get_result()
    log = (
        __import__("requests")
        .get(
            log_url["templates"][0]["log_url"],
            headers={"Authorization": f"Bearer {client.access_token()}"},
            timeout=5,
        )
        .text
    )
    assert "status code: 403" in log and expected in log, log[-2000:]
    assert len(box.inventory.list()) == created_before

    box.set_faults([])
    assert client.wait(ws["id"], client.run(ws["id"], "destroy"))["status"] == "COMPLETED"
    assert box.inventory.list() == []


POWEROFF = "touch $GPU_WORKLOAD_ROOT/poweroff-requested"  # what bootstrap.sh's poweroff does here


def test_a_server_that_powers_itself_off_shows_stopped(sandbox_factory, make_client, tar_of):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    main_tf = (
        'data "ibm_is_image" "ubuntu" {\n  name = "ibm-ubuntu-24-04-6-minimal-amd64-3"\n}\n'
        'resource "ibm_is_instance" "vm" {\n'
        '  name      = "off-vm-0"\n'
        "  image     = data.ibm_is_image.ubuntu.id\n"
        '  profile   = "gx3-16x80x1l4"\n'
        '  vpc       = "r006-vpc"\n'
        '  zone      = "us-south-1"\n'
        f'  user_data = "#cloud-config\\nruncmd:\\n  - [sh, -c, {POWEROFF!r}]\\n"\n'
        '  primary_network_interface {\n    subnet = "s"\n  }\n}\n'
    )
    ws = client.ready(files={"main.tf": main_tf}, name="airflow-off")
    assert client.wait(ws["id"], client.run(ws["id"], "apply"))["status"] == "COMPLETED"
    vpc = VpcV1(authenticator=client.auth)
    vpc.set_service_url(box.endpoints["vpc"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        [instance] = vpc.list_instances().get_result()["instances"]
        if instance["status"] == "stopped":
            break
        time.sleep(0.1)
    assert instance["status"] == "stopped"


def test_a_policy_with_a_role_cos_does_not_define_fails_its_create(sandbox_factory, make_client):
    box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0)
    client = make_client(box)
    main_tf = (
        'resource "ibm_iam_trusted_profile" "tp" {\n  name = "bad-role-tp"\n}\n'
        'resource "ibm_iam_trusted_profile_policy" "p" {\n'
        "  iam_id = ibm_iam_trusted_profile.tp.iam_id\n"
        '  roles  = ["Object Owner"]\n'
        '  resources {\n    service = "cloud-object-storage"\n  }\n}\n'
    )
    ws = client.ready(files={"main.tf": main_tf}, name="airflow-bad-role")
    act = client.wait(ws["id"], client.run(ws["id"], "apply"))
    assert act["status"] == "FAILED"
    assert [r["kind"] for r in box.inventory.list()] == ["ibm_iam_trusted_profile"]
    assert box.inventory.list(kind="ibm_iam_trusted_profile_policy") == []

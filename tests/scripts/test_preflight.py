"""``make preflight`` (scripts/preflight.py) against the sandbox: all pass, and each broken prerequisite
fails its own line (and only that one) with what to fix.

Real SDKs and hooks against the sandbox's IAM, IAM policies, COS, VPC and Schematics; the
plan runs the repository's own terraform/ in the sandbox's Terraform engine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.ibm.api_key_access import DEFAULT_API_KEY_POLICIES
from scripts.preflight import Preflight, run_params
from tests.conftest import REPO

BUCKET = "preflight-results"
NAMES = ["API key", "IAM policies", "COS bucket", "image", "profile in zone", "quotas", "Schematics plan"]


@pytest.fixture
def account(sandbox_factory, monkeypatch):
    """A sandbox whose connections are the DAG's (environment variables), with the run's bucket."""

    def make(**kwargs):
        box = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0, **kwargs)
        box.ensure_bucket(BUCKET)
        for key, value in box.airflow_connections().items():
            monkeypatch.setenv(key, value)
        return box

    return make


def preflight(**conf):
    checks = Preflight(run_params({"bucket": BUCKET, **conf}), plan_timeout_s=60).run()
    assert [c.name for c in checks] == NAMES
    return {c.name: c for c in checks}


def failing(checks):
    return [name for name, c in checks.items() if c.status == "fail"]


def test_a_ready_account_passes_every_line_and_leaves_no_workspace(account):
    box = account()
    checks = preflight()
    assert {name: c.status for name, c in checks.items()} == dict.fromkeys(NAMES, "ok")
    assert "deleted" in checks["Schematics plan"].detail
    counts = box.request_counts()
    assert any(k.startswith("schematics DELETE /v1/workspaces") for k in counts)
    assert box.inventory.list() == []  # plan only: nothing was created


def test_a_wrong_api_key_fails_its_line_and_skips_what_needs_it(account, monkeypatch):
    box = account()
    cloud = json.loads(box.airflow_connections()["AIRFLOW_CONN_IBM_CLOUD_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_IBM_CLOUD_DEFAULT", json.dumps({**cloud, "password": "sbx-wrong"}))
    checks = preflight()
    assert failing(checks) == ["API key"]
    assert "API keys" in checks["API key"].fix
    assert {c.status for n, c in checks.items() if n not in ("API key", "COS bucket")} == {"skip"}


def test_a_missing_iam_policy_fails_its_line_naming_the_service(account):
    account(api_key_policies=[p for p in DEFAULT_API_KEY_POLICIES if p.service != "iam-identity"])
    checks = preflight()
    assert failing(checks) == ["IAM policies"]
    assert "IAM Identity Service (iam-identity): Administrator" in checks["IAM policies"].detail
    assert "docs/terraform.md" in checks["IAM policies"].fix


def test_a_missing_bucket_fails_its_line(account):
    account()
    checks = preflight(bucket="no-such-bucket")
    assert failing(checks) == ["COS bucket"]
    assert "create a regional bucket 'no-such-bucket' in us-south" in checks["COS bucket"].fix


def test_an_obsolete_image_fails_its_line(account):
    account()
    checks = preflight(image="ibm-ubuntu-20-04-6-minimal-amd64-6")
    assert failing(checks) == ["image"]
    assert "obsolete" in checks["image"].detail and "ibmcloud is images" in checks["image"].fix


def test_a_zone_this_account_maps_elsewhere_fails_the_profile_line(account):
    """H100 in us-south: IBM lists dal10; the sandbox account's us-south-2 is dal12."""
    account()
    checks = preflight(gpu_profile="gx3d-160x1792x8h100", zone="us-south-2", max_cost_usd=10_000)
    assert failing(checks) == ["profile in zone"]
    assert "us-south-dal12-a" in checks["profile in zone"].detail
    assert "us-south-dal10-a" in checks["profile in zone"].detail
    ok = preflight(gpu_profile="gx3d-160x1792x8h100", zone="us-south-1", max_cost_usd=10_000)
    assert ok["profile in zone"].status == "ok"


def test_gpus_already_in_use_fail_the_quota_line(account):
    box = account()
    for n in range(2):  # 16 GPUs: IBM's default quota is used up
        box.inventory.add("ibm_is_instance", f"other-{n}", attrs={"profile": "gx3d-160x1792x8h100"})
    checks = preflight()
    assert failing(checks) == ["quotas"]
    assert "gpus 16 used + 1 needed > 16" in checks["quotas"].detail
    assert "raise the quota" in checks["quotas"].fix


def test_a_failing_plan_fails_its_line_and_the_workspace_is_deleted(account):
    box = account(faults=["plan_fails"])
    checks = preflight()
    assert failing(checks) == ["Schematics plan"]
    assert "FAILED" in checks["Schematics plan"].detail
    assert any(k.startswith("schematics DELETE /v1/workspaces") for k in box.request_counts())


def test_make_preflight_sandbox_prints_a_checklist_and_a_json_last_line(tmp_path):
    """The command line (make preflight SANDBOX=1): its own sandbox, exit 0, the JSON summary last."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.preflight", "--sandbox"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary["ok"] is True and [c["name"] for c in summary["checks"]] == NAMES
    assert "[ok]   Schematics plan" in result.stdout

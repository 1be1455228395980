"""IAM token endpoint, the Python API helpers, and ``python -m sandbox``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

pytestmark = pytest.mark.sandbox
REPO = Path(__file__).resolve().parents[2]
GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def test_iam_issues_jwts_and_refresh_tokens_only_to_bx(sandbox):
    url = f"{sandbox.endpoints['iam']}/identity/token"
    form = {"grant_type": GRANT, "apikey": sandbox.api_key, "response_type": "cloud_iam"}
    plain = requests.post(url, data=form, timeout=5)
    assert plain.status_code == 200 and plain.headers["Content-Type"] == "application/json"
    body = plain.json()
    assert body["refresh_token"] == "not_supported" and body["token_type"] == "Bearer"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600 == body["expires_in"]
    bx = requests.post(url, data=form, auth=("bx", "bx"), timeout=5).json()
    assert bx["refresh_token"] != "not_supported"
    refreshed = requests.post(
        url,
        data={"grant_type": "refresh_token", "refresh_token": bx["refresh_token"]},
        auth=("bx", "bx"),
        timeout=5,
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]


def test_iam_unknown_api_key_is_400_with_iam_error_shape(sandbox):
    auth = IAMAuthenticator("wrong-key", url=sandbox.endpoints["iam"])
    with pytest.raises(ApiException) as err:
        auth.token_manager.get_token()
    assert err.value.status_code == 400
    assert err.value.message == "Provided API key could not be found."
    body = err.value.http_response.json()
    assert body["errorCode"] == "BXNIM0415E" and "context" in body


def test_token_ttl_option(sandbox_factory):
    box = sandbox_factory(token_ttl_s=120)
    token = IAMAuthenticator(box.api_key, url=box.endpoints["iam"]).token_manager.get_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def test_python_api_helpers(sandbox):
    assert set(sandbox.endpoints) == {
        "iam",
        "schematics",
        "cos",
        "vpc",
        "metadata",
        "iam_identity",
        "tagging",
        "inventory",
        "faults",
        "api_key",
        "cos_hmac",
        "cos_instance_crn",
        "region",
    }
    assert all(sandbox.endpoints[k].startswith("http://127.0.0.1:") for k in ("iam", "cos", "vpc", "faults"))
    assert json.loads(sandbox.endpoints_file.read_text()) == sandbox.endpoints
    conns = sandbox.airflow_connections()
    cloud = json.loads(conns["AIRFLOW_CONN_IBM_CLOUD_DEFAULT"])
    assert cloud["conn_type"] == "ibm_cloud" and cloud["password"] == sandbox.api_key
    assert cloud["extra"]["schematics_url"] == sandbox.endpoints["schematics"]
    assert cloud["extra"]["iam_identity_url"] == sandbox.endpoints["iam_identity"]
    assert cloud["extra"]["tagging_url"] == sandbox.endpoints["tagging"]
    cos = json.loads(conns["AIRFLOW_CONN_IBM_COS_DEFAULT"])
    assert (
        cos["login"] == sandbox.cos_hmac["access_key_id"]
        and cos["extra"]["endpoint_url"] == sandbox.endpoints["cos"]
    )
    requests.post(f"{sandbox.endpoints['iam']}/identity/token", data={"grant_type": GRANT}, timeout=5)
    assert sandbox.request_counts() == {"iam POST /identity/token": 1}
    sandbox.set_faults(["plan_fails"])
    assert sandbox.faults.active("plan_fails")


def test_cli_runs_until_interrupted(tmp_path):
    state = tmp_path / "state"
    env = {**os.environ, "SANDBOX_FAULTS": '["api_errors"]', "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--state-dir",
            str(state),
            "--rate-limit",
            "10",
            "--token-ttl",
            "60",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        endpoints_file = state / "endpoints.json"
        deadline = time.monotonic() + 30
        while not endpoints_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        endpoints = json.loads(endpoints_file.read_text())
        faults = requests.get(endpoints["faults"], timeout=5).json()["faults"]
        assert faults == {"api_errors": {}}
        token = requests.post(
            f"{endpoints['iam']}/identity/token",
            data={"grant_type": GRANT, "apikey": endpoints["api_key"]},
            timeout=5,
        ).json()["access_token"]
        assert jwt.decode(token, options={"verify_signature": False})["exp"] - time.time() <= 60
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not (state / "endpoints.json").exists()


def test_cli_rejects_unknown_fault(tmp_path):
    env = {**os.environ, "SANDBOX_FAULTS": "no_such_fault", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "--state-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "plan_fails" in done.stderr

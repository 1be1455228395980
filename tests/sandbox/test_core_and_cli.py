"""The Python API helpers (sandbox/core.py) and ``python -m sandbox`` (sandbox/__main__.py)."""

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

pytestmark = pytest.mark.sandbox
REPO = Path(__file__).resolve().parents[2]
GRANT = "urn:ibm:params:oauth:grant-type:apikey"


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

"""The faults the Schematics/IAM layer owns, observed through the SDKs."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from ibm_cloud_sdk_core import ApiException

pytestmark = pytest.mark.sandbox


def test_api_errors_every_other_request_fails(client, fake_box):
    fake_box.set_faults({"api_errors": {"count": 3}})
    codes = []
    for _ in range(8):
        try:
            client.svc.list_workspaces()
            codes.append(200)
        except ApiException as err:
            codes.append(err.status_code)
            assert err.http_response.json()["statuscode"] == err.status_code
    assert codes == [503, 200, 502, 200, 500, 200, 200, 200]


def test_api_errors_are_retried_by_the_sdk(client, fake_box):
    fake_box.set_faults(["api_errors"])
    client.svc.enable_retries(max_retries=2, retry_interval=0.1)
    assert client.svc.list_workspaces().get_status_code() == 200


def test_rate_limited_fault_gives_429_with_retry_after(client, fake_box):
    fake_box.set_faults({"rate_limited": {"limit": 3}})
    for _ in range(3):
        client.svc.list_workspaces()
    with pytest.raises(ApiException) as err:
        client.svc.list_workspaces()
    assert err.value.status_code == 429
    assert 1 <= int(err.value.http_response.headers["Retry-After"]) <= 60
    assert err.value.http_response.json()["statuscode"] == 429
    fake_box.set_faults([])
    assert client.svc.list_workspaces().get_status_code() == 200


def test_configured_rate_limit_is_per_user(sandbox_factory, make_client):
    box = sandbox_factory(rate_limit_per_min=4)
    client = make_client(box)
    for _ in range(4):
        client.svc.list_workspaces()
    with pytest.raises(ApiException) as err:
        client.svc.list_workspaces()
    assert err.value.status_code == 429 and "Retry-After" in err.value.http_response.headers


def test_workspace_locked_after_each_job(client, fake_box):
    # long enough for a loaded machine to ask twice inside the window
    fake_box.set_faults({"workspace_locked": {"seconds": 4}})
    ws = client.ready()
    assert client.wait(ws["id"], client.run(ws["id"], "plan"))["status"] == "COMPLETED"
    assert client.svc.get_workspace(w_id=ws["id"]).get_result()["workspace_status"]["locked"] is True
    with pytest.raises(ApiException) as err:
        client.run(ws["id"], "apply")
    assert err.value.status_code == 409
    body = err.value.http_response.json()
    assert body["statuscode"] == 409 and "Please wait" in body["message"]
    deadline = time.monotonic() + 15
    while client.svc.get_workspace(w_id=ws["id"]).get_result()["workspace_status"]["locked"]:
        assert time.monotonic() < deadline, "the lock never lifted"
        time.sleep(0.2)
    assert client.wait(ws["id"], client.run(ws["id"], "apply"))["status"] == "COMPLETED"


def test_short_tokens_expire_and_get_401(sandbox_factory, make_client):
    box = sandbox_factory(engine_factory=lambda **kw: None, faults={"short_tokens": {"ttl": 1}})
    client = make_client(box)
    token = client.access_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1
    url = f"{box.endpoints['schematics']}/v1/workspaces"
    assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 200
    time.sleep(1.1)
    expired = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    # the SDK notices the short lifetime and fetches a new token by itself
    assert client.svc.list_workspaces().get_status_code() == 200


def test_control_api_sets_and_rejects_faults(fake_box):
    url = fake_box.endpoints["faults"]
    ok = requests.post(url, json={"api_errors": {"count": 1}}, timeout=5)
    assert ok.status_code == 200 and ok.json()["faults"] == {"api_errors": {"count": 1}}
    assert fake_box.faults.active("api_errors")
    bad = requests.post(url, json=["no_such_fault"], timeout=5)
    assert bad.status_code == 400 and "plan_fails" in bad.json()["error"]
    assert requests.get(url, timeout=5).json()["faults"] == {"api_errors": {"count": 1}}
    snapshot = requests.get(fake_box.endpoints["inventory"], timeout=5).json()
    assert snapshot["faults"] == {"api_errors": {"count": 1}} and snapshot["resources"] == []

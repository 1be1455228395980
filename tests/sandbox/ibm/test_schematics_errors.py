"""Bad requests get the real status codes and Schematics' error body shape."""

from __future__ import annotations

import pytest
import requests
from ibm_cloud_sdk_core import ApiException

pytestmark = pytest.mark.sandbox

ERROR_KEYS = {"requestid", "timestamp", "messageid", "message", "statuscode"}


def assert_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS and body["statuscode"] == status
    return body


def sdk_error(call) -> ApiException:
    with pytest.raises(ApiException) as err:
        call()
    assert set(err.value.http_response.json()) == ERROR_KEYS
    return err.value


def test_missing_field_is_400(client):
    err = sdk_error(lambda: client.svc.create_workspace(location="us-south"))
    assert err.status_code == 400 and "name" in err.message
    err = sdk_error(lambda: client.svc.create_workspace(name="x", location="eu-de"))
    assert err.status_code == 400 and err.http_response.json()["messageid"] == "M1097"
    err = sdk_error(
        lambda: client.svc.create_workspace(name="x", template_data=[{"variablestore": [{"value": "v"}]}])
    )
    assert err.status_code == 400


def test_unknown_workspace_and_activity_are_404(client):
    err = sdk_error(lambda: client.svc.get_workspace(w_id="us-south.workspace.nope.00000000"))
    assert err.status_code == 404 and err.http_response.json()["messageid"] == "M1074"
    ws = client.ready()
    err = sdk_error(lambda: client.svc.get_workspace_activity(w_id=ws["id"], activity_id="0" * 32))
    assert err.status_code == 404
    err = sdk_error(lambda: client.svc.get_workspace_inputs(w_id=ws["id"], t_id="nope"))
    assert err.status_code == 404


def test_missing_and_bad_bearer_token_are_401(fake_box, client):
    url = f"{fake_box.endpoints['schematics']}/v1/workspaces"
    assert_error(requests.get(url, timeout=5), 401)
    assert_error(requests.get(url, headers={"Authorization": "Bearer not-a-jwt"}, timeout=5), 401)
    forged = client.access_token()[:-4] + "AAAA"
    assert_error(requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=5), 401)
    assert requests.get(url, headers={"Authorization": f"Bearer {client.access_token()}"}, timeout=5).ok


def test_wrong_method_is_405_and_unknown_path_404(fake_box, client):
    headers = {"Authorization": f"Bearer {client.access_token()}"}
    base = fake_box.endpoints["schematics"]
    ws = client.ready()
    response = requests.post(f"{base}/v1/workspaces/{ws['id']}/apply", headers=headers, timeout=5)
    assert_error(response, 405)
    assert "PUT" in response.headers["Allow"]
    assert_error(requests.get(f"{base}/v1/nothing", headers=headers, timeout=5), 404)


def test_refresh_token_header_missing_400_invalid_401(client, fake_box):
    ws = client.ready()
    url = f"{fake_box.endpoints['schematics']}/v1/workspaces/{ws['id']}/apply"
    headers = {"Authorization": f"Bearer {client.access_token()}", "Content-Type": "application/json"}
    assert_error(requests.put(url, headers=headers, json={}, timeout=5), 400)
    err = sdk_error(lambda: client.svc.apply_workspace_command(w_id=ws["id"], refresh_token="not_supported"))
    assert err.status_code == 401


def test_command_on_draft_workspace_is_400(client):
    ws = client.create()
    err = sdk_error(
        lambda: client.svc.plan_workspace_command(w_id=ws["id"], refresh_token=client.refresh_token())
    )
    assert err.status_code == 400 and "DRAFT" in err.message


def test_bad_tar_is_400(client):
    ws = client.create()
    err = sdk_error(
        lambda: client.svc.template_repo_upload(
            w_id=ws["id"], t_id=ws["template_data"][0]["id"], file=b"junk"
        )
    )
    assert err.status_code == 400

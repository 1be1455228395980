"""IAM's token endpoint (sandbox/ibm/iam.py)."""

from __future__ import annotations

import jwt
import pytest
import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

pytestmark = pytest.mark.sandbox
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

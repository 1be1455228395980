"""IamPolicyHook: what a trusted profile's policies grant, against the sandbox's IAM (real SDK and
HTTP), and the retries of its requests against a small local HTTP server.

The retry tests use their own server because the sandbox injects no faults into IAM Policy
Management: it answers one 503 (with ``Retry-After``) or a 403 over real HTTP, and issues the IAM
tokens the hook asks for. Nothing is mocked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from ibm_cloud_airflow.exceptions import IbmCloudPermanentError
from ibm_cloud_airflow.hooks.base import RetryPolicy
from ibm_cloud_airflow.hooks.iam import IamPolicyHook, profile_iam_id

COS = "cloud-object-storage"
BUCKET = "results-iam"
NEEDED = (f"{COS}.object.put", f"{COS}.object.get")


@pytest.fixture
def box(sandbox_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    sbx = sandbox_factory(rate_limit_per_min=None, resource_delay_s=0.01)
    for key, value in sbx.airflow_connections().items():
        monkeypatch.setenv(key, value)
    return sbx


def grant(box: Any, profile: str, roles: list[str], resource: str = BUCKET) -> None:
    """A trusted profile's COS policy, as the sandbox's Terraform engine records it."""
    box.inventory.add(
        "ibm_iam_trusted_profile_policy",
        f"{profile}-policy",
        attrs={
            "iam_id": profile_iam_id(profile),
            "roles": roles,
            "resources": [
                {
                    "service": COS,
                    "resource_instance_id": box.cos_instance_crn.split(":")[7],
                    "resource_type": "bucket",
                    "resource": resource,
                }
            ],
        },
    )


def test_access_lists_the_granted_roles_and_the_missing_actions(box):
    grant(box, "Profile-reader", ["Object Reader"])
    access = IamPolicyHook().access(
        profile_iam_id("Profile-reader"), service_name=COS, resource=BUCKET, required=NEEDED
    )
    assert access.roles == ["Object Reader"]
    assert f"{COS}.object.get" in access.actions and access.missing == [f"{COS}.object.put"]


def test_access_counts_only_policies_on_the_resource_asked_about(box):
    grant(box, "Profile-writer", ["Object Writer", "Object Reader"], resource="another-bucket")
    hook = IamPolicyHook()
    iam_id = profile_iam_id("Profile-writer")
    assert hook.access(iam_id, service_name=COS, resource=BUCKET, required=NEEDED).missing == list(NEEDED)
    other = hook.access(iam_id, service_name=COS, resource="another-bucket", required=NEEDED)
    assert other.missing == [] and other.roles == ["Object Reader", "Object Writer"]


def test_a_profile_without_policies_holds_nothing(box):
    access = IamPolicyHook().access(
        profile_iam_id("Profile-none"), service_name=COS, resource=BUCKET, required=NEEDED
    )
    assert (access.roles, access.missing) == ([], list(NEEDED))


def test_account_id_is_the_api_keys_account(box):
    assert IamPolicyHook().account_id() == box.inventory.account_id


def test_profile_iam_id():
    assert profile_iam_id("Profile-1") == "iam-Profile-1" == profile_iam_id("iam-Profile-1")


# -- retries, against a local IAM that fails as told --------------------------------------------------
class FlakyIam(ThreadingHTTPServer):
    """Issues tokens; answers the queued statuses to ``GET /v2/...`` first, then 200 with ``body``."""

    def __init__(self, statuses: list[int], body: dict[str, Any]) -> None:
        self.statuses, self.body, self.gets = list(statuses), body, 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: FlakyIam

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # /identity/token
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = int(time.time())
        claims = {"iat": now, "exp": now + 3600, "iam_id": "iam-ServiceId-1", "account": {"bss": "acc-1"}}
        token = jwt.encode(claims, "a-local-test-key-of-at-least-32-bytes", algorithm="HS256")
        self._send(200, {"access_token": token, "refresh_token": "r", "token_type": "Bearer",
                         "expires_in": 3600, "expiration": now + 3600})  # fmt: skip

    def do_GET(self) -> None:
        self.server.gets += 1
        if self.server.statuses:
            status = self.server.statuses.pop(0)
            self._send(status, {"errors": [{"message": f"status {status}"}]}, {"Retry-After": "0"})
        else:
            self._send(200, self.server.body)


@pytest.fixture
def flaky_iam(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    servers: list[FlakyIam] = []

    def start(statuses: list[int], body: dict[str, Any]) -> FlakyIam:
        server = FlakyIam(statuses, body)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        extra = {"region": "us-south", "iam_url": url}
        conn = {"conn_type": "ibm_cloud", "password": "key-1", "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_IBM_CLOUD_DEFAULT", json.dumps(conn))
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_503_is_retried_after_the_servers_retry_after(flaky_iam):
    server = flaky_iam([503], {"service_roles": [], "system_roles": []})
    assert IamPolicyHook().roles(COS) == {}
    assert server.gets == 2  # the 503, then the answer


def test_retries_stop_after_max_attempts(flaky_iam):
    server = flaky_iam([503, 503, 503], {"service_roles": []})
    with pytest.raises(Exception, match="HTTP 503"):
        IamPolicyHook(retry_policy=RetryPolicy(max_attempts=2)).roles(COS)
    assert server.gets == 2


def test_a_403_is_permanent_and_not_retried(flaky_iam):
    server = flaky_iam([403], {})
    with pytest.raises(IbmCloudPermanentError, match="access denied"):
        IamPolicyHook().roles(COS)
    assert server.gets == 1

"""Shared helpers for the provider tests (plugins/ibm_cloud_airflow)."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
import requests

CANARY_API_KEY = "CANARY-APIKEY-7f3a9c1e5b2d4a6f8e0b"
CANARY_HMAC_SECRET = "CANARY-HMACSECRET-0d9e8f7a6b5c4d3e"
CANARY_TF_SECRET = "CANARY-TFSECRET-5e4d3c2b1a09"


class FakeStore:
    """In-memory stand-in for Airflow 3.3's ``context["task_state_store"]`` (same get/set API)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = json.loads(json.dumps(value))
        self.writes.append((key, value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def make_context(store: FakeStore | None = None) -> dict[str, Any]:
    ti = mock.MagicMock(name="ti")
    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def api_error(
    code: int, message: str = "boom", headers: dict[str, str] | None = None, url: str = ""
) -> Exception:
    """A real ``ApiException`` carrying a real ``requests.Response`` (status, headers, JSON body)."""
    from ibm_cloud_sdk_core import ApiException

    resp = requests.Response()
    resp.status_code = code
    resp.headers.update({"Content-Type": "application/json", **(headers or {})})
    resp._content = json.dumps({"message": message, "statuscode": code, "messageid": "M0000"}).encode()
    resp.url = url or "https://us-south.schematics.cloud.ibm.com/v1/workspaces"
    return ApiException(code, http_response=resp)


def named_for(slug: str) -> Any:
    """``VpcHook.find_resources``'s rule for the test runs' resources: ``<slug>`` or ``<slug>-<role>``."""
    return lambda name: name == slug or name.startswith(slug + "-")


def ibm_conn_json(**extra: Any) -> str:
    return json.dumps(
        {"conn_type": "ibm_cloud", "password": CANARY_API_KEY, "extra": {"region": "us-south", **extra}}
    )


@pytest.fixture
def ibm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections given the documented way for tests: ``AIRFLOW_CONN_*`` environment variables."""
    monkeypatch.setenv("AIRFLOW_CONN_IBM_CLOUD_DEFAULT", ibm_conn_json())
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBM_COS_DEFAULT",
        json.dumps(
            {
                "conn_type": "ibm_cos",
                "login": "AKIDCANARY",
                "password": CANARY_HMAC_SECRET,
                "extra": {"endpoint_url": "http://127.0.0.1:9", "region": "us-south"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_TF_SECRETS",
        json.dumps(
            {
                "conn_type": "generic",
                "login": "hmac-id",
                "password": CANARY_TF_SECRET,
                "extra": {"token": "tok-123456"},
            }
        ),
    )


class FakeCos:
    """In-memory stand-in for the three CosHook methods the COS watch uses (head/read_json/read_text).

    The real CosHook is covered over HTTP in hooks/test_cos.py and against the sandbox; here each
    ``put`` is a new version, as an ETag would be.
    """

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self.version = 0

    def put(self, key: str, body: str | bytes) -> None:
        self.version += 1
        self.objects[key] = (body.encode() if isinstance(body, str) else body, self.version)

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        body, ver = self.objects[key]
        return {"ETag": f'"{ver}"', "ContentLength": len(body)}

    def read_text(self, bucket: str, key: str) -> str | None:
        return self.objects[key][0].decode() if key in self.objects else None

    def read_json(self, bucket: str, key: str) -> Any:
        text = self.read_text(bucket, key)
        return None if text is None else json.loads(text)

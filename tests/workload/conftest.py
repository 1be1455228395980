"""Fixtures for the workload tests: an S3 endpoint (moto's server) behind a recording proxy, and an
instance metadata emulator for the keyless (trusted profile) path.

The proxy records every request in arrival order (method, key, auth scheme, status), so a test can
check the order in which train.py and bootstrap.sh write objects without trusting what they say
about themselves. With ``bearer`` set it also plays COS's IAM check: requests must carry
``Authorization: Bearer <that token>`` (anything else gets 403), as a VM with a trusted profile does.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = REPO / "workload"
WORKLOAD_PY = REPO / ".venv-workload" / "bin" / "python"
HMAC_KEY_ID = "test-access-key"
HMAC_SECRET = "test-secret-key-do-not-log"


def _fake_jwt(subject: str, lifetime: int = 3600) -> str:
    """An unsigned-looking JWT with iat/exp: ibm-cloud-sdk-core decodes it without verifying."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return ".".join(
        [
            b64({"alg": "RS256", "typ": "JWT"}),
            b64({"sub": subject, "iat": now, "exp": now + lifetime}),
            "c2ln",
        ]
    )


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    auth: str
    status: int

    @property
    def key(self) -> str:
        """The object key for path-style requests ``/<bucket>/<key>``."""
        parts = unquote(self.path).lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.bearer: str | None = None
        self.log: list[Recorded] = []
        self.lock = threading.Lock()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        auth = self.headers.get("Authorization", "")
        scheme = auth.split(" ", 1)[0].lower() if auth else "none"
        status = 0
        if self.server.bearer is not None:
            if auth != f"Bearer {self.server.bearer}":
                status = 403
            else:
                # moto routes by the SigV4 credential scope; COS would have checked the IAM token here.
                headers["Authorization"] = (
                    "AWS4-HMAC-SHA256 Credential=bearer/20260101/us-south/s3/aws4_request, "
                    "SignedHeaders=host, Signature=0"
                )
        if status == 403:
            payload = b"<Error><Code>AccessDenied</Code><Message>bad or missing IAM token</Message></Error>"
            resp_headers = [("Content-Type", "application/xml")]
        else:
            conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
            try:
                conn.request(self.command, self.path, body=body if body or length else None, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                resp_headers = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower()
                    not in ("transfer-encoding", "connection", "content-length", "server", "date")
                ]
            finally:
                conn.close()
        split = urlsplit(self.path)
        with self.server.lock:
            self.server.log.append(Recorded(self.command, split.path, split.query, scheme, status))
        self.send_response(status)
        for k, v in resp_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _MetadataHandler(BaseHTTPRequestHandler):
    """The two calls of VPCInstanceAuthenticator (metadata service version 2025-08-26)."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def do_PUT(self) -> None:
        split = urlsplit(self.path)
        body = self._body()
        if split.path != "/identity/v1/token" or "version=2025-08-26" not in split.query:
            return self._reply(404, {"errors": [{"message": f"no route {self.path}"}]})
        if self.headers.get("Metadata-Flavor") != "ibm":
            return self._reply(400, {"errors": [{"message": "Metadata-Flavor: ibm required"}]})
        self.server.calls.append(("token", body))
        return self._reply(200, {"access_token": self.server.identity_token, "expires_in": 3600})

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        body = self._body()
        if split.path != "/identity/v1/iam_tokens" or "version=2025-08-26" not in split.query:
            return self._reply(404, {"errors": [{"message": f"no route {self.path}"}]})
        if self.headers.get("Authorization") != f"Bearer {self.server.identity_token}":
            return self._reply(401, {"errors": [{"message": "bad instance identity token"}]})
        self.server.calls.append(("iam_tokens", body))
        profile = (body.get("trusted_profile") or {}).get("id")
        if profile != self.server.profile_id:
            return self._reply(400, {"errors": [{"message": f"unknown trusted profile {profile!r}"}]})
        return self._reply(200, {"access_token": self.server.iam_token, "expires_in": 3600})


@dataclass
class Cloud:
    """An S3 endpoint the workload talks to, a client for assertions (bypassing any proxy), the
    HMAC keys it accepts and, for keyless runs, the metadata service and trusted profile."""

    kind: str  # "moto" (moto behind the recording proxy) or "sandbox" (sandbox.Sandbox)
    endpoint: str
    client: Any
    hmac_key_id: str = HMAC_KEY_ID
    hmac_secret: str = HMAC_SECRET
    proxy: _Proxy | None = None
    metadata_url: str = ""
    profile_id: str = ""
    metadata_calls: Callable[[], int] = lambda: 0
    buckets: list[str] = field(default_factory=list)

    def new_bucket(self) -> str:
        name = f"wl-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def requests(self, bucket: str) -> list[Recorded]:
        """What went through the recording proxy for ``bucket``, in arrival order ([] without one)."""
        if self.proxy is None:
            return []
        with self.proxy.lock:
            return [r for r in self.proxy.log if unquote(r.path).lstrip("/").split("/", 1)[0] == bucket]

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        out = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: o["Size"] for o in out}

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _start_proxy(upstream: tuple[str, int]) -> _Proxy:
    proxy = _Proxy(upstream)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


@pytest.fixture(scope="session")
def cos() -> Iterator[Cloud]:
    """moto's S3 server behind the recording proxy (HMAC; signatures are not checked)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = _start_proxy((host, port))
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",  # assertions bypass the proxy: not recorded
        region_name="us-east-1",
        aws_access_key_id=HMAC_KEY_ID,
        aws_secret_access_key=HMAC_SECRET,
        config=Config(s3={"addressing_style": "path"}),
    )
    yield Cloud("moto", f"http://127.0.0.1:{proxy.server_address[1]}", client, proxy=proxy)
    proxy.shutdown()
    server.stop()


@dataclass
class Metadata:
    url: str
    server: ThreadingHTTPServer

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return self.server.calls  # type: ignore[attr-defined]


@pytest.fixture
def keyless(cos: Cloud) -> Iterator[Metadata]:
    """A metadata emulator, and the moto proxy requiring its IAM token (trusted profile mode)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
    server.daemon_threads = True
    server.identity_token = _fake_jwt("crn:v1:instance-identity")  # type: ignore[attr-defined]
    server.iam_token = _fake_jwt("iam-ServiceId-trusted-profile")  # type: ignore[attr-defined]
    server.profile_id = "Profile-0123abcd"  # type: ignore[attr-defined]
    server.calls = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert cos.proxy is not None
    cos.proxy.bearer = server.iam_token  # type: ignore[attr-defined]
    try:
        yield Metadata(f"http://127.0.0.1:{server.server_address[1]}", server)
    finally:
        cos.proxy.bearer = None
        server.shutdown()


def sandbox_available() -> bool:
    """``WORKLOAD_TESTS_SANDBOX=0`` forces the moto fallback."""
    if os.environ.get("WORKLOAD_TESTS_SANDBOX") == "0":
        return False
    try:
        import sandbox.core  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture
def cloud(request: pytest.FixtureRequest, cos: Cloud) -> Callable[[str], Cloud]:
    """``cloud(auth)``: the project's sandbox (``sandbox.Sandbox``: COS that checks SigV4
    signatures and IAM tokens, the instance metadata service) when it is importable, else moto and
    the local metadata emulator. In keyless mode the recording proxy sits in front of COS too."""

    def make(auth: str) -> Cloud:
        if not sandbox_available():
            if auth == "hmac":
                return cos
            md: Metadata = request.getfixturevalue("keyless")
            return Cloud(
                "moto",
                cos.endpoint,
                cos.client,
                proxy=cos.proxy,
                metadata_url=md.url,
                profile_id=md.server.profile_id,  # type: ignore[attr-defined]
                metadata_calls=lambda: len(md.calls),
            )
        box = request.getfixturevalue("sandbox_factory")(workload_venv=WORKLOAD_PY.parent.parent)
        profile = f"Profile-{uuid.uuid4()}"
        instance = box.inventory.add("ibm_is_instance", "wl-test-vm-0", attrs={"trusted_profile_id": profile})
        # The roles terraform/main.tf gives the servers (the sandbox enforces them): the workload
        # must get by with upload + read, without list or delete.
        box.inventory.add(
            "ibm_iam_trusted_profile_policy",
            "wl-test-policy",
            attrs={
                "iam_id": f"iam-{profile}",
                "roles": ["Object Writer", "Object Reader"],
                "resources": [
                    {
                        "service": "cloud-object-storage",
                        "resource_instance_id": box.cos_instance_crn.split(":")[7],
                    }
                ],
            },
        )
        cloud_ = Cloud(
            "sandbox",
            box.endpoints["cos"],
            box.cos_client(),
            hmac_key_id=box.cos_hmac["access_key_id"],
            hmac_secret=box.cos_hmac["secret_access_key"],
            metadata_url=f"{box.endpoints['metadata']}/i/{instance['id']}",
            profile_id=profile,
            metadata_calls=lambda: sum(
                n for k, n in box.request_counts().items() if k.startswith("metadata POST")
            ),
        )
        if auth != "hmac":  # SigV4 signs the Host header, so only bearer requests can go through
            upstream = urlsplit(box.endpoints["cos"])
            cloud_.proxy = _start_proxy((upstream.hostname, upstream.port))
            request.addfinalizer(cloud_.proxy.shutdown)
            cloud_.endpoint = f"http://127.0.0.1:{cloud_.proxy.server_address[1]}"
        return cloud_

    return make


class Helpers:
    """Helpers for the tests (a fixture, since test modules cannot import conftest)."""

    repo = REPO
    workload = WORKLOAD
    python = WORKLOAD_PY
    hmac_key_id = HMAC_KEY_ID
    hmac_secret = HMAC_SECRET

    @staticmethod
    def closed_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @staticmethod
    def base_env(**extra: str) -> dict[str, str]:
        """A clean environment for workload subprocesses (no AWS/IBM/COS settings from the host)."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IBM_", "COS_", "GPU_WORKLOAD"))
        }
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""})
        env.update(extra)
        return env

    @staticmethod
    def run_train(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WORKLOAD_PY), str(WORKLOAD / "train.py"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def wl() -> Helpers:
    return Helpers()


@pytest.fixture(scope="session", autouse=True)
def _workload_venv() -> None:
    if not WORKLOAD_PY.exists():
        pytest.skip(f"{WORKLOAD_PY} missing: run `make install`")

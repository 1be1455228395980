"""CosHook against moto's S3 server over HTTP (no sandbox needed: ibm_boto3 speaks plain S3 to it)."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudPermanentError
from ibm_cloud_airflow.hooks.cos import CosHook


@pytest.fixture
def hook(moto_url, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_COS_TEST",
        json.dumps(
            {
                "conn_type": "ibm_cos",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_url},
            }
        ),
    )
    h = CosHook("cos_test")
    h.ensure_bucket("bkt")
    return h


def test_roundtrip(hook, tmp_path):
    assert hook.ensure_bucket("bkt") is False
    assert hook.head("bkt", "a/missing") is None
    assert hook.read_json("bkt", "a/missing") is None
    hook.upload_bytes("bkt", "run/vm-0/progress.json", json.dumps({"epoch": 1}))
    hook.upload_bytes("bkt", "run/vm-0/_SUCCESS", b"abc")
    f = tmp_path / "f.txt"
    f.write_text("file")
    hook.upload_file("bkt", "run/vm-1/f.txt", f)
    assert hook.head("bkt", "run/vm-0/_SUCCESS")["ContentLength"] == 3
    assert hook.read_json("bkt", "run/vm-0/progress.json") == {"epoch": 1}
    assert hook.read_text("bkt", "run/vm-1/f.txt") == "file"
    assert sorted(hook.list_keys("bkt", "run/")) == [
        "run/vm-0/_SUCCESS",
        "run/vm-0/progress.json",
        "run/vm-1/f.txt",
    ]
    paths = hook.download_prefix("bkt", "run/", tmp_path / "out")
    assert (tmp_path / "out" / "vm-1" / "f.txt").read_text() == "file"
    assert len(paths) == 3


def test_upload_directory_as_targz(hook, tmp_path):
    src = tmp_path / "workload"
    src.mkdir()
    (src / "train.py").write_text("print(1)\n")
    (tmp_path / "shared.sh").write_text("echo\n")
    os.symlink(tmp_path / "shared.sh", src / "bootstrap.sh")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"\0")
    info = hook.upload_directory_as_targz("bkt", src, "run/bundle/workload.tar.gz")
    data = hook.client.get_object(Bucket="bkt", Key="run/bundle/workload.tar.gz")["Body"].read()
    assert info["size"] == len(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["bootstrap.sh", "train.py"]
        assert tar.extractfile("bootstrap.sh").read() == b"echo\n"


def test_bad_json_and_errors(hook, moto_url, monkeypatch):
    hook.upload_bytes("bkt", "x.json", "not json")
    with pytest.raises(Exception, match="not valid JSON"):
        hook.read_json("bkt", "x.json")
    monkeypatch.setenv(
        "AIRFLOW_CONN_COS_DOWN",
        json.dumps(
            {
                "conn_type": "generic",  # deployments from before the ibm_cos type keep working
                "login": "a",
                "password": "b",
                "extra": {"endpoint_url": "http://127.0.0.1:9"},
            }
        ),
    )
    down = CosHook("cos_down", connect_timeout=0.5, max_attempts=1)
    with pytest.raises(IbmCloudApiError, match="cannot reach COS"):
        down.list_keys("bkt")


def test_access_denied_is_permanent(hook):
    from ibm_botocore.exceptions import ClientError

    err = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}},
        "Get",
    )

    def boom():
        raise err

    with pytest.raises(IbmCloudPermanentError, match="HMAC keys"):
        hook._call("read", boom)


def test_delete_keys_removes_exactly_those_keys(hook):
    for key in ("old/vm-0/_SUCCESS", "old/vm-1/_FAILED", "old/vm-0/model.keras"):
        hook.upload_bytes("bkt", key, b"x")
    hook.delete_keys("bkt", ["old/vm-0/_SUCCESS", "old/vm-1/_FAILED", "old/never-existed"])
    assert hook.list_keys("bkt", "old/") == ["old/vm-0/model.keras"]
    hook.delete_keys("bkt", [])  # nothing to do is not an error


def test_copy_is_server_side_within_the_bucket(hook):
    hook.upload_bytes("bkt", "runs/r1/vm-0/model.keras", b"weights")
    hook.copy("bkt", "runs/r1/vm-0/model.keras", "champion/model.keras")
    assert hook.read_bytes("bkt", "champion/model.keras") == b"weights"
    assert hook.read_bytes("bkt", "runs/r1/vm-0/model.keras") == b"weights"  # a copy, not a move


def client_error(status: int, code: str, headers: dict[str, str] | None = None) -> Exception:
    from ibm_botocore.exceptions import ClientError

    metadata = {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": metadata}, "Get")


def test_cos_retries_as_every_ibm_hook_does(hook):
    # botocore's own retries are off (one attempt per request): the hook retries the request.
    assert hook.client.meta.config.retries["total_max_attempts"] == 1
    sleeps: list[float] = []
    hook._sleep = sleeps.append
    outcomes = iter(
        [client_error(503, "SlowDown", {"retry-after": "3"}), client_error(400, "RequestTimeout")]
    )

    def flaky():
        for error in outcomes:
            raise error
        return "ok"

    assert hook._call("read", flaky) == "ok"
    assert sleeps[0] == 3.0 and len(sleeps) == 2  # Retry-After honoured; S3's RequestTimeout retried
    with pytest.raises(IbmCloudApiError, match="COS error"):
        hook._call("read", lambda: (_ for _ in ()).throw(client_error(500, "InternalError")))
    assert len(sleeps) == 2 + hook.retry_policy.max_attempts - 1


def test_an_unreachable_endpoint_is_retried_then_named(moto_url, monkeypatch):
    conn = {
        "conn_type": "ibm_cos",
        "login": "a",
        "password": "b",
        "extra": {"endpoint_url": "http://127.0.0.1:9"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_COS_DOWN", json.dumps(conn))
    down = CosHook("cos_down", connect_timeout=0.5, max_attempts=3)
    sleeps: list[float] = []
    down._sleep = sleeps.append
    with pytest.raises(IbmCloudApiError, match="cannot reach COS"):
        down.head("bkt", "key")
    assert len(sleeps) == 2

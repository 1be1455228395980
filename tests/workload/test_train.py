"""workload/train.py against an S3 endpoint (moto behind a recording proxy), run as a subprocess in
.venv-workload, as on the VM. One real training run (3 epochs of the offline digits dataset) is
shared by the contract tests; the failure tests never get as far as importing TensorFlow."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time
from types import SimpleNamespace

import pytest

RUN = "run-abc-1234abcd"
PREFIX = f"results/ibm_gpu_workload/{RUN}/vm-0"
ARTIFACTS = ("model.keras", "metrics.json", "training-curve.png", "train.log")
CONTRACT = {"progress.json", *ARTIFACTS, "manifest.json", "_SUCCESS"}
SEED = 7


def _hmac_env(wl, cos, bucket: str, prefix: str, **extra: str) -> dict[str, str]:
    return wl.base_env(
        COS_ENDPOINT=cos.endpoint,
        COS_BUCKET=bucket,
        COS_OUTPUT_PREFIX=prefix,
        COS_AUTH="hmac",
        COS_HMAC_ACCESS_KEY_ID=wl.hmac_key_id,
        COS_HMAC_SECRET_ACCESS_KEY=wl.hmac_secret,
        **extra,
    )


@pytest.fixture(scope="module")
def trained(cos, wl, tmp_path_factory):
    bucket = cos.new_bucket()
    # Leftovers of an earlier attempt that train.py overwrites. (A stale _FAILED is deleted by the
    # DAG's upload_bundle before the servers exist: the servers may not delete.)
    for name, body in (("_SUCCESS", b"stale"), ("manifest.json", b"{}")):
        cos.client.put_object(Bucket=bucket, Key=f"{PREFIX}/{name}", Body=body)
    work = tmp_path_factory.mktemp("train-work")
    env = _hmac_env(
        wl,
        cos,
        bucket,
        PREFIX + "/",  # a trailing slash is tolerated
        DATASET="digits",
        EPOCHS="3",
        BATCH_SIZE="32",
        LEARNING_RATE="0.002",
        SEED=str(SEED),
        RUN_ID=RUN,
        COS_MULTIPART_THRESHOLD=str(64 * 1024),  # the model (MBs) goes up in parts
        WORK_DIR=str(work),
        GPU_WORKLOAD_FAULT="fail",  # ignored: GPU_WORKLOAD_SANDBOX is not set
    )
    started = time.monotonic()
    result = wl.run_train(env)
    assert result.returncode == 0, result.stderr[-6000:]
    return SimpleNamespace(
        bucket=bucket,
        result=result,
        work=work,
        seconds=time.monotonic() - started,
        requests=[r for r in cos.requests(bucket) if r.key.startswith(PREFIX + "/")],
    )


def test_every_contract_object_is_present(trained, cos):
    keys = cos.keys(trained.bucket, PREFIX + "/")
    checkpoints = {k for k in keys if k.startswith(f"{PREFIX}/checkpoints/")}  # test_checkpoints.py
    assert set(keys) - checkpoints == {f"{PREFIX}/{name}" for name in CONTRACT}
    assert checkpoints  # one every epoch by default, in two alternating slots
    assert all(size > 0 for size in keys.values())


def test_manifest_checksums_match_the_objects(trained, cos):
    manifest_bytes = cos.get(trained.bucket, f"{PREFIX}/manifest.json")
    manifest = json.loads(manifest_bytes)
    assert [a["name"] for a in manifest["artifacts"]] == list(ARTIFACTS)
    for artifact in manifest["artifacts"]:
        body = cos.get(trained.bucket, artifact["key"])
        assert artifact["key"] == f"{PREFIX}/{artifact['name']}"
        assert len(body) == artifact["size"]
        assert hashlib.sha256(body).hexdigest() == artifact["sha256"], artifact["key"]
    # _SUCCESS holds the manifest's sha256.
    success = cos.get(trained.bucket, f"{PREFIX}/_SUCCESS").decode().strip()
    assert success == hashlib.sha256(manifest_bytes).hexdigest()
    assert manifest["run_id"] == RUN
    assert manifest["marker"] == f"{PREFIX}/_SUCCESS"


def test_success_is_written_last_and_nothing_is_deleted(trained, cos):
    # What the endpoint saw, in arrival order (the proxy's record, not the job's own account).
    # No DELETE: the servers' trusted profile has no delete action (Object Writer + Object Reader).
    assert [r for r in trained.requests if r.method == "DELETE"] == []
    writes = [r for r in trained.requests if r.method in ("PUT", "POST") and r.status < 300]
    names = [(r.method, r.key.rsplit("/", 1)[1]) for r in writes]
    assert names[0] == ("PUT", "progress.json")
    assert names[-2:] == [("PUT", "manifest.json"), ("PUT", "_SUCCESS")]
    assert names.count(("PUT", "_SUCCESS")) == 1
    last_write = {name: i for i, (_, name) in enumerate(names)}
    progress = [i for i, (m, n) in enumerate(names) if (m, n) == ("PUT", "progress.json")]
    assert len(progress) == 1 + 3  # "starting", then once per epoch
    artifacts = [last_write[a] for a in ARTIFACTS]
    assert progress[-1] < min(artifacts) and max(artifacts) < last_write["manifest.json"]
    assert last_write["manifest.json"] < last_write["_SUCCESS"] == len(names) - 1
    # The objects' own metadata agrees: seq counts writes, _SUCCESS has the highest; LastModified
    # (whole seconds in moto) is never later on any other object.
    heads = {
        key: cos.client.head_object(Bucket=trained.bucket, Key=key)
        for key in cos.keys(trained.bucket, PREFIX)
    }
    seq = {key.rsplit("/", 1)[1]: int(h["Metadata"]["seq"]) for key, h in heads.items()}
    assert max(seq, key=seq.get) == "_SUCCESS"
    assert seq["manifest.json"] == seq["_SUCCESS"] - 1
    success_time = heads[f"{PREFIX}/_SUCCESS"]["LastModified"]
    assert all(h["LastModified"] <= success_time for h in heads.values())
    manifest = json.loads(cos.get(trained.bucket, f"{PREFIX}/manifest.json"))
    assert [a["seq"] for a in manifest["artifacts"]] == sorted(a["seq"] for a in manifest["artifacts"])


def test_large_files_go_up_as_multipart_uploads(trained):
    model = [r for r in trained.requests if r.key.endswith("/model.keras")]
    assert any(r.method == "POST" and r.query == "uploads" for r in model)
    assert any(r.method == "PUT" and "partNumber=" in r.query for r in model)


def test_progress_and_metrics(trained, cos):
    progress = json.loads(cos.get(trained.bucket, f"{PREFIX}/progress.json"))
    assert progress["epoch"] == progress["epochs"] == 3
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(progress["metrics"])
    dt.datetime.fromisoformat(progress["time"].replace("Z", "+00:00"))

    metrics = json.loads(cos.get(trained.bucket, f"{PREFIX}/metrics.json"))
    assert metrics["dataset"] == "digits"
    assert metrics["test_accuracy"] > 0.8
    assert metrics["test_loss"] > 0
    assert len(metrics["history"]["loss"]) == len(metrics["history"]["val_accuracy"]) == 3
    assert metrics["params"]["epochs"] == 3 and metrics["params"]["seed"] == SEED
    assert metrics["device"]["gpu_count"] == 0 and metrics["device"]["replicas"] == 1
    assert metrics["device"]["tensorflow"].startswith("2.21")
    assert metrics["duration_s"] > 0
    assert metrics["samples"]["test"] == 360

    png = cos.get(trained.bucket, f"{PREFIX}/training-curve.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    log = cos.get(trained.bucket, f"{PREFIX}/train.log").decode()
    assert "epoch 3/3" in log and "held-out test" in log


def test_no_secret_reaches_logs_or_objects(trained, cos, wl):
    texts = [trained.result.stdout, trained.result.stderr]
    texts += [cos.get(trained.bucket, f"{PREFIX}/{n}").decode() for n in ("train.log", "metrics.json")]
    assert not any(wl.hmac_secret in t for t in texts)


def test_saved_model_loads_and_scores_on_the_held_out_split(trained, cos, wl, tmp_path):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(cos.get(trained.bucket, f"{PREFIX}/model.keras"))
    script = f"""
import json, sys
sys.path.insert(0, {str(wl.workload)!r})
import keras, train
model = keras.saving.load_model({str(model_path)!r})
data = train.load_dataset("digits", seed={SEED})
loss, acc = model.evaluate(data.x_test.astype("float32"), data.y_test, verbose=0)
print(json.dumps({{"accuracy": float(acc), "n": len(data.x_test)}}))
"""
    out = subprocess.run(
        [str(wl.python), "-c", script],
        env=wl.base_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    score = json.loads(out.stdout.strip().splitlines()[-1])
    assert score["n"] == 360
    assert score["accuracy"] > 0.8
    metrics = json.loads(cos.get(trained.bucket, f"{PREFIX}/metrics.json"))
    assert score["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)


def test_bad_dataset_key_writes_failed(cos, wl):
    bucket = cos.new_bucket()
    prefix = "results/dag/run-bad/vm-0"
    result = wl.run_train(_hmac_env(wl, cos, bucket, prefix, DATASET="cos://staged/missing.npz", EPOCHS="2"))
    assert result.returncode == 1, result.stderr[-4000:]
    keys = cos.keys(bucket, prefix + "/")
    assert f"{prefix}/_SUCCESS" not in keys
    failed = json.loads(cos.get(bucket, f"{prefix}/_FAILED"))
    assert "cos://staged/missing.npz" in failed["error"] and "not found" in failed["error"]
    assert "DatasetError" in failed["log_tail"]
    assert failed["cause"] == "error"  # the job's own failure: no automatic recovery
    assert f"{prefix}/train.log" in keys  # the full log goes up before the marker
    writes = [r for r in cos.requests(bucket) if r.method in ("PUT", "DELETE") and r.key.startswith(prefix)]
    assert writes[-1].method == "PUT" and writes[-1].key == f"{prefix}/_FAILED"


def test_unknown_dataset_writes_failed(cos, wl):
    bucket = cos.new_bucket()
    result = wl.run_train(_hmac_env(wl, cos, bucket, "p/vm-0", DATASET="imagenet"))
    assert result.returncode == 1
    failed = json.loads(cos.get(bucket, "p/vm-0/_FAILED"))
    assert "unknown dataset 'imagenet'" in failed["error"]


def test_cos_unavailable_exits_non_zero_with_a_clear_message(wl):
    endpoint = f"http://127.0.0.1:{wl.closed_port()}"
    env = wl.base_env(
        COS_ENDPOINT=endpoint,
        COS_BUCKET="results",
        COS_OUTPUT_PREFIX="p/vm-0",
        COS_AUTH="hmac",
        COS_HMAC_ACCESS_KEY_ID=wl.hmac_key_id,
        COS_HMAC_SECRET_ACCESS_KEY=wl.hmac_secret,
        COS_MAX_ATTEMPTS="2",
        COS_CONNECT_TIMEOUT="1",
    )
    started = time.monotonic()
    result = wl.run_train(env, timeout=120)
    assert result.returncode == 3
    assert time.monotonic() - started < 60
    assert "_FAILED marker could not be written" in result.stderr
    assert endpoint in result.stderr and "Could not connect" in result.stderr
    assert wl.hmac_secret not in result.stderr + result.stdout


def test_keyless_trusted_profile_auth(cos, wl, keyless):
    """COS_AUTH=trusted_profile: metadata token -> IAM token -> Authorization: Bearer (proxy checks)."""
    bucket = cos.new_bucket()
    env = wl.base_env(
        COS_ENDPOINT=cos.endpoint,
        COS_BUCKET=bucket,
        COS_OUTPUT_PREFIX="p/vm-0",
        TRUSTED_PROFILE_ID=keyless.server.profile_id,
        METADATA_URL=keyless.url,
        DATASET="cos://nothing-here.npz",
    )
    result = wl.run_train(env)  # COS_AUTH defaults to trusted_profile
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not found" in json.loads(cos.get(bucket, "p/vm-0/_FAILED"))["error"]
    assert [c[0] for c in keyless.calls[:2]] == ["token", "iam_tokens"]
    assert keyless.calls[1][1] == {"trusted_profile": {"id": keyless.server.profile_id}}
    assert {r.auth for r in cos.requests(bucket)} == {"bearer"}
    assert all(r.status != 403 for r in cos.requests(bucket))


def test_usage_errors_exit_2(wl):
    result = wl.run_train(wl.base_env(COS_ENDPOINT="http://127.0.0.1:1"), timeout=60)
    assert result.returncode == 2
    assert "COS_BUCKET" in result.stderr

"""distribution=multi_worker: two real train.py processes form one TensorFlow cluster on loopback.

Both run in .venv-workload as on the VMs, with the run.env keys the Terraform writes
(CLUSTER_HOSTS of reserved private IPs, TRAINING_PORT) and the sandbox's loopback port mapping
(GPU_WORKLOAD_LOOPBACK_PORTS). The real MultiWorkerMirroredStrategy runs its RING collectives
across the two processes on the CPU. COS is moto behind the recording proxy (tests/workload).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

RUN = "run-mw-1234abcd"
PREFIX = f"results/ibm_gpu_workload/{RUN}"
HOSTS = "10.240.0.4,10.240.0.5"


def _free_port_block() -> int:
    """A base port whose +4 and +5 (the hosts' last octets) are free on loopback."""
    for base in range(21000, 32000, 256):
        try:
            for offset in (4, 5):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port block")


def _start_cluster(wl, cos, bucket: str, tmp_path, **extra: str) -> list[subprocess.Popen]:
    base = _free_port_block()
    procs = []
    for index in (0, 1):
        env = wl.base_env(
            COS_ENDPOINT=cos.endpoint,
            COS_BUCKET=bucket,
            COS_OUTPUT_PREFIX=f"{PREFIX}/vm-{index}",
            COS_AUTH="hmac",
            COS_HMAC_ACCESS_KEY_ID=wl.hmac_key_id,
            COS_HMAC_SECRET_ACCESS_KEY=wl.hmac_secret,
            DATASET="digits",
            BATCH_SIZE="32",
            SEED="3",
            RUN_ID=RUN,
            INSTANCE_INDEX=str(index),
            INSTANCE_COUNT="2",
            DISTRIBUTION="multi_worker",
            CLUSTER_HOSTS=HOSTS,
            TRAINING_PORT="23456",
            WORK_DIR=str(tmp_path / f"vm-{index}"),
            GPU_WORKLOAD_SANDBOX="1",
            GPU_WORKLOAD_LOOPBACK_PORTS=str(base),
            **extra,
        )
        log = (tmp_path / f"vm-{index}.log").open("w")
        # Own session: the worker_dies fault kills the whole process group of "its server".
        procs.append(
            subprocess.Popen(
                [str(wl.python), str(wl.workload / "train.py")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def _json(cos, bucket: str, key: str):
    return json.loads(cos.client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_two_workers_train_one_model_and_only_the_chief_publishes(cos, wl, tmp_path):
    bucket = cos.new_bucket()
    started = time.monotonic()
    rcs = _wait(_start_cluster(wl, cos, bucket, tmp_path, EPOCHS="2"), timeout=400)
    logs = "\n".join((tmp_path / f"vm-{i}.log").read_text()[-3000:] for i in (0, 1))
    assert rcs == [0, 0], logs
    elapsed = time.monotonic() - started

    chief = cos.keys(bucket, f"{PREFIX}/vm-0/")
    worker = cos.keys(bucket, f"{PREFIX}/vm-1/")
    assert {"progress.json", "model.keras", "metrics.json", "manifest.json", "_SUCCESS"} <= {
        k.rsplit("/", 1)[1] for k in chief
    }
    # The worker reports progress only: one model, one marker, from the chief.
    assert {k.rsplit("/", 1)[1] for k in worker} == {"progress.json"}

    metrics = _json(cos, bucket, f"{PREFIX}/vm-0/metrics.json")
    assert metrics["distribution"] == "multi_worker"
    assert metrics["workers"] == 2 and metrics["replicas"] == 2
    assert metrics["global_batch_size"] == 64  # 32 per replica x 2 replicas
    assert metrics["device"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert metrics["samples"]["train_per_worker"] == metrics["samples"]["train"] // 2
    eps = metrics["examples_per_second"]
    assert eps["total"] > 0 and eps["per_worker"] == pytest.approx(eps["total"] / 2, rel=0.01)
    assert metrics["epochs_completed"] == 2 and metrics["test_accuracy"] > 0.3
    assert metrics["cluster"] == ["10.240.0.4:23456", "10.240.0.5:23456"]
    chief_progress = _json(cos, bucket, f"{PREFIX}/vm-0/progress.json")
    worker_progress = _json(cos, bucket, f"{PREFIX}/vm-1/progress.json")
    assert (chief_progress["epoch"], chief_progress["worker"]) == (2, 0)
    # A finished worker says so: the sensor then stops its stall clock while the chief publishes.
    assert (worker_progress["epoch"], worker_progress["worker"], worker_progress["status"]) == (
        2,
        1,
        "finished",
    )
    print(f"two-worker training of 2 epochs: {elapsed:.1f} s")


def test_a_dead_worker_fails_the_run_within_the_collective_timeout(cos, wl, tmp_path):
    bucket = cos.new_bucket()
    started = time.monotonic()
    procs = _start_cluster(
        wl, cos, bucket, tmp_path, EPOCHS="30", COLLECTIVE_TIMEOUT_S="30", GPU_WORKLOAD_FAULT="worker_dies"
    )
    rcs = _wait(procs, timeout=300)
    elapsed = time.monotonic() - started
    logs = "\n".join((tmp_path / f"vm-{i}.log").read_text()[-3000:] for i in (0, 1))
    assert rcs[1] == -signal.SIGKILL, logs  # the server "lost power" after its first epoch
    assert rcs[0] == 1, logs  # the chief wrote _FAILED and left (no hang until the TTL)
    failed = _json(cos, bucket, f"{PREFIX}/vm-0/_FAILED")
    assert "multi-worker training stopped" in failed["error"], failed
    assert failed["cause"] == "peer_lost"  # not a bug of the job: its peer is gone
    assert "_SUCCESS" not in {k.rsplit("/", 1)[1] for k in cos.keys(bucket, f"{PREFIX}/")}
    progress = _json(cos, bucket, f"{PREFIX}/vm-1/progress.json")
    assert progress["epoch"] == 1  # it died mid-training, not before it began
    print(f"worker died; run failed after {elapsed:.1f} s")


def test_a_cleared_run_resumes_every_worker_from_the_chiefs_checkpoint(cos, wl, tmp_path):
    """Worker 1 dies after epoch 1 (the chief has saved epoch 1); the run fails. A new attempt on
    the same prefix (a clear: validate removed the marker) resumes both workers at epoch 2."""
    bucket = cos.new_bucket()
    for attempt in ("a1", "a2"):
        (tmp_path / attempt).mkdir()
    first = _start_cluster(
        wl,
        cos,
        bucket,
        tmp_path / "a1",
        EPOCHS="2",
        COLLECTIVE_TIMEOUT_S="30",
        GPU_WORKLOAD_FAULT="worker_dies",
    )
    rcs = _wait(first, timeout=300)
    assert rcs == [1, -signal.SIGKILL], rcs
    saved = _json(cos, bucket, f"{PREFIX}/vm-0/checkpoints/slot-1/manifest.json")
    assert (saved["status"], saved["epoch"]) == ("complete", 1)
    assert not cos.keys(bucket, f"{PREFIX}/vm-1/checkpoints/")  # the chief alone saves
    cos.client.delete_object(Bucket=bucket, Key=f"{PREFIX}/vm-0/_FAILED")

    rcs = _wait(_start_cluster(wl, cos, bucket, tmp_path / "a2", EPOCHS="2"), timeout=400)
    logs = {i: (tmp_path / "a2" / f"vm-{i}.log").read_text() for i in (0, 1)}
    assert rcs == [0, 0], "\n".join(text[-3000:] for text in logs.values())
    assert "resuming after epoch 1/2 from" in logs[0]
    assert "resuming after epoch 1/2, as the chief chose" in logs[1]
    metrics = _json(cos, bucket, f"{PREFIX}/vm-0/metrics.json")
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_trained"] == 1
    assert metrics["epochs_completed"] == 2  # epoch 1 from the checkpoint, epoch 2 trained now
    assert metrics["history"]["loss"][0] == saved["history"]["loss"][0]
    assert _json(cos, bucket, f"{PREFIX}/vm-1/progress.json")["status"] == "finished"

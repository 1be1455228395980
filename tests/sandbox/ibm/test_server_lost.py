"""The ``server_lost`` fault: the sandbox's launcher boots the real bootstrap.sh and train.py (as
terraform/cloud-init.yaml.tpl would), and the server dies once its first valid checkpoint is in COS,
without a marker; the instance is deleted, stopped or restarted (sandbox/ibm/server_loss.py)."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.ibm.server_loss import first_valid_checkpoint, lose_instance, mode, read_cos_object

pytestmark = pytest.mark.sandbox

REPO = Path(__file__).resolve().parents[3]
WORKLOAD_VENV = REPO / ".venv-workload"
BUCKET = "lost-runs"
PREFIX = "runs/ibm_gpu_workload/lost-1234abcd"


def _bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted((REPO / "workload").glob("*")):
            if path.is_file():
                tar.add(path, arcname=path.name)
    return buf.getvalue()


def _boot(box, epochs: int):
    """An instance record and the user_data the Terraform would give it; the server is started."""
    client = box.cos_client()
    box.ensure_bucket(BUCKET)
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/bundle/workload.tar.gz", Body=_bundle())
    instance = box.inventory.add("ibm_is_instance", "lost-1234abcd-vm-0", attrs={"status": "running"})
    box.inventory.add("boot_volume", "lost-1234abcd-vm-0-boot", attrs={"instance_id": instance["id"]})
    deadline = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_env = {
        "RUN_ID": "lost-1234abcd",
        "RUN_DEADLINE": deadline,
        "INSTANCE_INDEX": "0",
        "INSTANCE_COUNT": "1",
        "COS_ENDPOINT": box.endpoints["cos"],
        "COS_BUCKET": BUCKET,
        "COS_OUTPUT_PREFIX": f"{PREFIX}/vm-0",
        "WORKLOAD_BUNDLE_KEY": f"{PREFIX}/bundle/workload.tar.gz",
        "COS_AUTH": "hmac",
        "DATASET": "digits",
        "EPOCHS": str(epochs),
        "BATCH_SIZE": "64",
        "SEED": "5",
        "CHECKPOINT_EVERY_EPOCHS": "1",
        "COS_HMAC_ACCESS_KEY_ID": box.cos_hmac["access_key_id"],
        "COS_HMAC_SECRET_ACCESS_KEY": box.cos_hmac["secret_access_key"],
    }
    user_data = "#cloud-config\n" + json.dumps(
        {
            "write_files": [
                {
                    "path": "/etc/gpu-workload/run.env",
                    "permissions": "0600",
                    "content": "".join(f"{k}={v}\n" for k, v in run_env.items()),
                },
                {
                    "path": "/opt/gpu-workload/bootstrap.sh",
                    "permissions": "0755",
                    "encoding": "b64",
                    "content": base64.b64encode((REPO / "workload/bootstrap.sh").read_bytes()).decode(),
                },
            ],
            "runcmd": [["/opt/gpu-workload/bootstrap.sh", "/etc/gpu-workload/run.env"]],
        }
    )
    box.launcher.start(instance, user_data)
    return instance


def _objects(box) -> set[str]:
    listed = box.cos_client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/vm-0/").get("Contents", [])
    return {o["Key"][len(f"{PREFIX}/vm-0/") :] for o in listed}


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def box(sandbox_factory):
    if not (WORKLOAD_VENV / "bin" / "python").exists():
        pytest.skip(".venv-workload missing: run `make install`")
    return sandbox_factory(
        faults={"server_lost": {}}, workload_venv=WORKLOAD_VENV, rate_limit_per_min=None, resource_delay_s=0
    )


def test_the_server_vanishes_after_its_first_checkpoint_without_a_marker(box):
    instance = _boot(box, epochs=30)
    launcher = box.launcher
    pid = launcher.processes()[instance["id"]]["pid"]
    _wait(lambda: box.inventory.get(instance["id"]) is None, 480, "the instance to vanish")

    # gone from the VPC inventory with its boot volume, as a DELETE /instances/{id} leaves it
    assert not box.inventory.list(kind="boot_volume")
    assert launcher.processes()[instance["id"]]["status"] == "stopped"
    assert not _group_alive(pid)  # bootstrap.sh and train.py died together, at once
    # exactly one valid checkpoint, then nothing: no marker, no later epoch
    time.sleep(1.0)
    objects = _objects(box)
    assert not {"_SUCCESS", "_FAILED", "bootstrap.log"} & objects, objects
    assert first_valid_checkpoint(read_cos_object, BUCKET, f"{PREFIX}/vm-0") >= 1
    # killed as its first checkpoint landed (polled every LOSS_POLL_S), not epochs later
    progress = json.loads(
        box.cos_client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/vm-0/progress.json")["Body"].read()
    )
    assert 1 <= progress["epoch"] <= 3, progress
    assert not box.faults.take("server_lost")  # spent: it fires once


def test_a_restarted_server_resumes_from_its_checkpoint(sandbox_factory):
    if not (WORKLOAD_VENV / "bin" / "python").exists():
        pytest.skip(".venv-workload missing: run `make install`")
    box = sandbox_factory(
        faults={"server_lost": {"as": "restarted"}},
        workload_venv=WORKLOAD_VENV,
        rate_limit_per_min=None,
        resource_delay_s=0,
    )
    instance = _boot(box, epochs=3)
    log_path = box.launcher.server_root(instance["id"]) / "var/log/gpu-workload/bootstrap.log"
    try:
        # Boot, first checkpoint, kill, reboot, resume: minutes on a loaded machine (within the
        # suite's 600 s per test).
        _wait(lambda: {"_SUCCESS", "_FAILED"} & _objects(box), 480, "a marker")
    except AssertionError as exc:
        log = log_path.read_text()[-3000:] if log_path.exists() else "no log"
        raise AssertionError(f"{exc}: {log}") from None
    assert "_SUCCESS" in _objects(box), log_path.read_text()[-3000:]
    metrics = json.loads(
        box.cos_client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/vm-0/metrics.json")["Body"].read()
    )
    # host_failure=restart: the same disk boots, the job's unit runs again and resumes
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_trained"] == 2
    assert len(metrics["history"]["loss"]) == 3
    assert box.inventory.get(instance["id"])["attrs"]["status"] == "running"
    log = log_path.read_text()
    assert log.count("starting train.py") == 2, log[-3000:]


def test_stopped_and_deleted_are_what_the_vpc_api_shows(sandbox):
    inv = sandbox.inventory
    a = inv.add("ibm_is_instance", "a", attrs={"status": "running"})
    b = inv.add("ibm_is_instance", "b", attrs={"status": "running"})
    inv.add("boot_volume", "a-boot", attrs={"instance_id": a["id"]})
    lose_instance(inv, a["id"], "deleted")
    lose_instance(inv, b["id"], "stopped")
    assert inv.get(a["id"]) is None and not inv.list(kind="boot_volume")
    assert inv.get(b["id"])["attrs"]["status"] == "stopped"
    assert mode({}) == "deleted" and mode({"as": "restarted"}) == "restarted"
    with pytest.raises(ValueError, match="'as' must be one of"):
        mode({"as": "melted"})

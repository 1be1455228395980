"""Checkpoints in COS (workload/checkpoints.py): real train.py runs in .venv-workload against moto
behind the recording proxy, plus unit tests of the slot logic with an in-memory store.

The training runs are deterministic (TF_DETERMINISTIC_OPS=1 on the CPU, seeded), so a run that was
killed after its first checkpoint and then resumed must end with the very history of a run that was
never interrupted: the same data order, weights, optimizer state and dropout sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

RUN = "run-ckpt-1234abcd"
EPOCHS = 3


def _env(wl, cos, bucket: str, prefix: str, work: Path, **extra: str) -> dict[str, str]:
    env = {
        "COS_ENDPOINT": cos.endpoint,
        "COS_BUCKET": bucket,
        "COS_OUTPUT_PREFIX": prefix,
        "COS_AUTH": "hmac",
        "COS_HMAC_ACCESS_KEY_ID": wl.hmac_key_id,
        "COS_HMAC_SECRET_ACCESS_KEY": wl.hmac_secret,
        "DATASET": "digits",
        "EPOCHS": str(EPOCHS),
        "BATCH_SIZE": "64",
        "SEED": "11",
        "RUN_ID": RUN,
        "WORK_DIR": str(work),
        "TF_DETERMINISTIC_OPS": "1",
    }
    return wl.base_env(**{**env, **extra})


def _json(cos, bucket: str, key: str):
    return json.loads(cos.get(bucket, key))


def _wait_for_manifest(cos, bucket: str, key: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "train.py exited before its first checkpoint"
        try:
            manifest = _json(cos, bucket, key)
        except Exception:
            manifest = {}
        if manifest.get("status") == "complete":
            return manifest
        time.sleep(0.2)
    raise AssertionError(f"no complete {key} within {timeout} s")


@pytest.fixture(scope="module")
def reference(cos, wl, tmp_path_factory):
    """One uninterrupted run: what a resumed run must reproduce."""
    bucket = cos.new_bucket()
    prefix = f"results/dag/{RUN}/vm-0"
    result = wl.run_train(_env(wl, cos, bucket, prefix, tmp_path_factory.mktemp("ref")))
    assert result.returncode == 0, result.stderr[-6000:]
    return bucket, prefix, _json(cos, bucket, f"{prefix}/metrics.json")


def test_a_run_keeps_two_alternating_checkpoint_slots(reference, cos):
    bucket, prefix, metrics = reference
    assert metrics["resumed_from_epoch"] == 0 and metrics["epochs_trained"] == EPOCHS
    assert metrics["checkpoint_every_epochs"] == 1
    # epoch n goes to slot (n // 1) % 2: epoch 3 overwrote epoch 1 in slot 1
    slots = {s: _json(cos, bucket, f"{prefix}/checkpoints/slot-{s}/manifest.json") for s in (0, 1)}
    assert (slots[0]["epoch"], slots[1]["epoch"]) == (2, 3)
    assert set(cos.keys(bucket, f"{prefix}/checkpoints/")) == {
        f"{prefix}/checkpoints/slot-{s}/{name}" for s in (0, 1) for name in ("state.npz", "manifest.json")
    }
    latest = slots[1]
    assert latest["status"] == "complete" and latest["history"] == metrics["history"]
    (state,) = latest["files"]
    body = cos.get(bucket, state["key"])
    assert (len(body), hashlib.sha256(body).hexdigest()) == (state["size"], state["sha256"])
    assert "adam/iteration" in latest["optimizer_variables"]
    assert any("seed_generator" in name for name in latest["model_variables"])  # dropout's RNG


def test_the_manifest_is_written_last_and_a_save_first_invalidates_its_slot(cos, wl, tmp_path):
    bucket = cos.new_bucket()
    prefix = f"results/dag/{RUN}-order/vm-0"
    result = wl.run_train(_env(wl, cos, bucket, prefix, tmp_path, EPOCHS="1"))
    assert result.returncode == 0, result.stderr[-4000:]
    writes = [
        r.key.rsplit("/", 2)[-2:]
        for r in cos.requests(bucket)
        if r.method in ("PUT", "POST") and r.status < 300 and "/checkpoints/" in r.key
    ]
    # epoch 1 -> slot 1: manifest "writing", the state (one PUT, small), manifest "complete"
    assert writes == [["slot-1", "manifest.json"], ["slot-1", "state.npz"], ["slot-1", "manifest.json"]]


def test_an_interrupted_training_resumes_at_the_next_epoch(reference, cos, wl, tmp_path):
    _, _, uninterrupted = reference
    bucket = cos.new_bucket()
    prefix = f"results/dag/{RUN}-resume/vm-0"
    # Attempt 1 stops after epoch 1's checkpoint (the sandbox's hang hook) and loses power.
    first = subprocess.Popen(
        [str(wl.python), str(wl.workload / "train.py")],
        env=_env(
            wl, cos, bucket, prefix, tmp_path / "a1", GPU_WORKLOAD_SANDBOX="1", GPU_WORKLOAD_FAULT="hang"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        saved = _wait_for_manifest(cos, bucket, f"{prefix}/checkpoints/slot-1/manifest.json", first, 240)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert saved["epoch"] == 1
    assert not {"_SUCCESS", "_FAILED"} & {k.rsplit("/", 1)[1] for k in cos.keys(bucket, prefix)}

    # Attempt 2 (a reboot, a clear, a replaced server: the same prefix) resumes.
    result = wl.run_train(_env(wl, cos, bucket, prefix, tmp_path / "a2"))
    assert result.returncode == 0, result.stderr[-6000:]
    metrics = _json(cos, bucket, f"{prefix}/metrics.json")
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs_trained"] == EPOCHS - 1
    assert metrics["epochs_completed"] == EPOCHS
    assert "resuming after epoch 1/3" in result.stderr
    assert "epoch 1/3" not in result.stderr.replace("resuming after epoch 1/3", "")  # not trained again
    # The curve continues: epoch 1 comes from the checkpoint, and everything matches a run that
    # was never interrupted (same batches, weights, Adam state and dropout masks).
    assert metrics["history"]["loss"][0] == saved["history"]["loss"][0]
    for key, values in uninterrupted["history"].items():
        assert metrics["history"][key] == pytest.approx(values, rel=1e-4, abs=1e-5), key
    assert metrics["test_accuracy"] == pytest.approx(uninterrupted["test_accuracy"], abs=1e-6)
    progress = [r for r in cos.requests(bucket) if r.method == "PUT" and r.key == f"{prefix}/progress.json"]
    assert progress  # attempt 2 said "starting", then "resumed" at epoch 1, then epochs 2 and 3
    assert _json(cos, bucket, f"{prefix}/progress.json")["epoch"] == EPOCHS


def test_a_corrupt_latest_checkpoint_is_skipped_with_a_warning(reference, cos, wl, tmp_path):
    bucket, prefix, uninterrupted = reference
    # A re-run of the finished run (validate removed its marker); the newest checkpoint (epoch 3,
    # slot 1) was damaged, so the one before it (epoch 2) is used and epoch 3 is trained again.
    cos.client.delete_object(Bucket=bucket, Key=f"{prefix}/_SUCCESS")
    state = f"{prefix}/checkpoints/slot-1/state.npz"
    cos.client.put_object(Bucket=bucket, Key=state, Body=b"PK\x03\x04 not the bytes the manifest names")
    result = wl.run_train(_env(wl, cos, bucket, prefix, tmp_path))
    assert result.returncode == 0, result.stderr[-6000:]
    assert "WARNING" in result.stderr and "slot-1/ skipped: epoch 3:" in result.stderr
    assert "does not match its manifest" in result.stderr
    metrics = _json(cos, bucket, f"{prefix}/metrics.json")
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_trained"] == 1
    for key, values in uninterrupted["history"].items():
        assert metrics["history"][key] == pytest.approx(values, rel=1e-4, abs=1e-5), key
    # epoch 3's checkpoint was written again, whole
    assert _json(cos, bucket, f"{prefix}/checkpoints/slot-1/manifest.json")["epoch"] == 3


def test_checkpoint_every_0_writes_and_reads_none(cos, wl, tmp_path):
    bucket = cos.new_bucket()
    prefix = f"results/dag/{RUN}-off/vm-0"
    result = wl.run_train(_env(wl, cos, bucket, prefix, tmp_path, EPOCHS="1", CHECKPOINT_EVERY_EPOCHS="0"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert not any("/checkpoints/" in r.key for r in cos.requests(bucket))
    assert _json(cos, bucket, f"{prefix}/metrics.json")["checkpoint_every_epochs"] == 0


def test_a_negative_interval_is_a_usage_error(wl):
    result = wl.run_train(
        wl.base_env(COS_ENDPOINT="http://127.0.0.1:1", COS_BUCKET="b", COS_OUTPUT_PREFIX="p/vm-0"),
        "--checkpoint-every-epochs",
        "-1",
        timeout=60,
    )
    assert result.returncode == 2 and "--checkpoint-every-epochs" in result.stderr


# -- the slot logic, without TensorFlow (numpy lives in .venv-workload only) --------------------------

_PRELUDE = """
import json, logging, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import checkpoints as ck

class Store:  # what Checkpoints needs of train.py's CosWriter, in memory
    def __init__(self):
        self.objects = {}
    def put_json_at(self, key, obj):
        self.objects[key] = json.dumps(obj).encode()
    def upload_file_at(self, key, path, content_type):
        self.objects[key] = Path(path).read_bytes()
    def get_bytes(self, key):
        return self.objects.get(key)

class Var:
    def __init__(self, path, value):
        self.path, self.value, self.shape = path, value, value.shape
    def numpy(self):
        return self.value
    def assign(self, value):
        self.value = value

class Model:
    def __init__(self, scale):
        self.variables = [Var("dense/kernel", np.full((2, 3), scale)), Var("dense/bias", np.zeros(3))]

class Optimizer:
    def __init__(self, step):
        self.variables = [Var("adam/iteration", np.array(step))]

warnings = []
class Capture(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("gpu_workload.checkpoints").addHandler(Capture(logging.WARNING))

def saved(epochs, every=1):
    store = Store()
    box = ck.Checkpoints(store, "p/vm-0/checkpoints", every, Path(sys.argv[2]))
    for e in epochs:
        box.save(e, Model(float(e)), Optimizer(e * 10), {"loss": [1.0 / i for i in range(1, e + 1)]})
    return store, box

def out(**kw):
    print(json.dumps({"warnings": warnings, **kw}))
"""


def _slots(wl, tmp_path: Path, code: str) -> dict:
    """Run ``code`` after the prelude in .venv-workload; its last line of output is JSON."""
    out = subprocess.run(
        [str(wl.python), "-c", _PRELUDE + code, str(wl.workload), str(tmp_path)],
        env=wl.base_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_latest_prefers_the_newest_complete_slot(wl, tmp_path):
    result = _slots(
        wl,
        tmp_path,
        """
store, box = saved([2, 4, 6], every=2)  # 2 -> slot 1, 4 -> slot 0, 6 -> slot 1
found = box.latest(max_epoch=10)
model, opt = Model(0.0), Optimizer(0)
found.restore(model, opt)
out(epoch=found.epoch, slot=found.slot, history=len(found.history["loss"]),
    kernel=float(model.variables[0].value[0, 0]), step=int(opt.variables[0].value),
    keys=sorted(store.objects))
""",
    )
    assert (result["epoch"], result["slot"], result["history"]) == (6, 1, 6)
    assert (result["kernel"], result["step"]) == (6.0, 60)
    assert len(result["keys"]) == 4 and result["warnings"] == []  # two slots, whatever the epochs


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            'store.objects[S1 + \'manifest.json\'] = b\'{"format": 1, "status": "writing", "epoch": 3}\'',
            "status 'writing'",
        ),
        ("del store.objects[S1 + 'state.npz']", "is missing"),
        ("store.objects[S1 + 'state.npz'] = b'truncated'", "does not match its manifest"),
        ("store.objects[S1 + 'manifest.json'] = b'{not json'", "unreadable manifest"),
    ],
    ids=["save-cut-short", "state-missing", "state-corrupt", "manifest-corrupt"],
)
def test_a_bad_latest_falls_back_to_the_previous_with_a_warning(wl, tmp_path, damage, reason):
    result = _slots(
        wl,
        tmp_path,
        f"""
store, box = saved([1, 2, 3])  # slot 0 <- 2, slot 1 <- 3
S1 = "p/vm-0/checkpoints/slot-1/"
{damage}
found = box.latest(max_epoch=3)
out(epoch=found and found.epoch)
""",
    )
    assert result["epoch"] == 2
    assert any(reason in w and "slot-1" in w for w in result["warnings"]), result["warnings"]


def test_a_checkpoint_of_another_model_is_skipped_and_nothing_is_assigned(wl, tmp_path):
    result = _slots(
        wl,
        tmp_path,
        """
store, box = saved([1, 2])
model = Model(0.0)
model.variables[1] = Var("dense/bias", np.zeros(4))  # the bundle changed the model
found = box.latest(max_epoch=2, accept=lambda c: c.restore(model, Optimizer(0)))
out(found=found is not None, kernel=float(model.variables[0].value[0, 0]))
""",
    )
    assert result["found"] is False
    assert result["kernel"] == 0.0  # every shape is checked before anything is assigned
    assert sum("skipped" in w for w in result["warnings"]) == 2


def test_keras_uniqueness_suffixes_do_not_make_another_model(wl, tmp_path):
    result = _slots(
        wl,
        tmp_path,
        """
store, box = saved([1])
model = Model(0.0)  # the same model, built after another one in this process: dense_3
model.variables = [Var("dense_3/kernel", np.zeros((2, 3))), Var("dense_3/bias", np.zeros(3))]
found = box.latest(max_epoch=1, accept=lambda c: c.restore(model, Optimizer(0)))
out(epoch=found and found.epoch, kernel=float(model.variables[0].value[0, 0]))
""",
    )
    assert (result["epoch"], result["kernel"]) == (1, 1.0) and result["warnings"] == []


def test_a_worker_loads_exactly_the_epoch_the_chief_chose(wl, tmp_path):
    result = _slots(
        wl,
        tmp_path,
        """
store, _ = saved([1, 2, 3])
reader = ck.Checkpoints(store, "p/vm-0/checkpoints", 1, Path(sys.argv[2]), writes=False)
try:
    reader.load_epoch(1, max_epoch=3)
    error = None
except ck.CheckpointError as exc:
    error = str(exc)
out(epoch=reader.load_epoch(2, max_epoch=3).epoch, due=reader.due(2), error=error)
""",
    )
    assert result["epoch"] == 2
    assert result["due"] is False  # a worker never saves
    assert "holds epoch 3, not 1" in result["error"]  # slot 1 now holds epoch 3


def test_multi_worker_checkpoints_live_with_the_chief(wl, tmp_path):
    result = _slots(
        wl,
        tmp_path,
        """
out(single=ck.checkpoint_folder("r/dag/run/vm-1/", "sweep", 1),
    worker=ck.checkpoint_folder("r/dag/run/vm-1", "multi_worker", 1),
    chief=ck.checkpoint_folder("r/dag/run/vm-0", "multi_worker", 0))
""",
    )
    assert result["single"] == "r/dag/run/vm-1/checkpoints"
    assert result["worker"] == result["chief"] == "r/dag/run/vm-0/checkpoints"


def test_the_data_order_is_a_function_of_seed_and_epoch(wl):
    script = """
import sys, json
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
from checkpoints import epoch_index_batches
def epochs(first):
    return [b.numpy().tolist() for b in epoch_index_batches(tf, 10, 5, first, 3, 4)]
print(json.dumps({"full": epochs(0), "resumed": epochs(1)}))
"""
    out = subprocess.run(
        [str(wl.python), "-c", script, str(wl.workload)],
        env=wl.base_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    full, resumed = data["full"], data["resumed"]
    assert len(full) == 9  # 3 epochs x ceil(10 / 4) batches
    assert resumed == full[3:]  # resuming at epoch 1 reads what epochs 1 and 2 would have read
    orders = [sorted(i for batch in full[e : e + 3] for i in batch) for e in (0, 3, 6)]
    assert orders == [list(range(10))] * 3  # every epoch visits every example once
    assert full[0:3] != full[3:6]  # and each epoch in its own order

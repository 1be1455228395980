"""Simulated GPU servers: cloud-init write_files + runcmd as a local process group."""

from __future__ import annotations

import base64
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from sandbox.faults import FaultSet
from sandbox.ibm.launcher import CloudInitError, ServerLauncher, parse_cloud_config, runcmd_script
from sandbox.ibm.provider import IbmProvider
from sandbox.inventory import Inventory
from sandbox.terraform import TerraformEngine, TerraformRun

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """#!/bin/sh
# a stand-in for bootstrap.sh: records what it sees, then behaves per $MODE
env_file="$1"
out="$GPU_WORKLOAD_ROOT/var/log/gpu-workload/seen.env"
{
  echo "ARG=$env_file"
  echo "SANDBOX=$GPU_WORKLOAD_SANDBOX"
  echo "ROOT=$GPU_WORKLOAD_ROOT"
  echo "VENV=$GPU_WORKLOAD_VENV"
  echo "METADATA=$METADATA_URL"
  echo "FAULT=${GPU_WORKLOAD_FAULT:-none}"
  echo "AIRFLOW=${AIRFLOW__CORE__TEST_SECRET:-unset}"
  echo "EXTRA=${EXTRA_VAR:-unset}"
  echo "PORTS=${GPU_WORKLOAD_LOOPBACK_PORTS:-unset}"
  cat "$env_file"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "console line from the fake bootstrap"
if grep -q '^MODE=hang' "$env_file"; then
  sleep 300 &
  echo $! > "$GPU_WORKLOAD_ROOT/child.pid"
  wait
fi
exit 0
"""


def cloud_config(mode: str = "exit") -> str:
    doc = {
        "write_files": [
            {
                "path": "/etc/gpu-workload/run.env",
                "permissions": "0600",
                "content": f"RUN_ID=r1\nMODE={mode}\n",
            },
            {
                "path": "/opt/gpu-workload/bootstrap.sh",
                "permissions": "0755",
                "encoding": "b64",
                "content": base64.b64encode(SCRIPT.encode()).decode(),
            },
        ],
        "runcmd": [["/opt/gpu-workload/bootstrap.sh", "/etc/gpu-workload/run.env"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(doc)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def faults() -> FaultSet:
    return FaultSet()


@pytest.fixture
def launcher(tmp_path: Path, faults: FaultSet):
    launcher = ServerLauncher(
        workload_venv=tmp_path / "venv",
        state_dir=tmp_path / "state",
        metadata_url="http://127.0.0.1:9999/",
        faults=faults,
        extra_env={"EXTRA_VAR": "x"},
        stop_grace_s=2,
    )
    yield launcher
    launcher.stop_all()


def seen(launcher: ServerLauncher, instance_id: str) -> dict[str, str]:
    path = launcher.server_root(instance_id) / "var/log/gpu-workload/seen.env"
    wait_for(path.exists)
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_start_writes_files_and_runs_runcmd_with_sandbox_env(launcher, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__CORE__TEST_SECRET", "do-not-leak")
    launcher.start({"id": "0717_vm-a", "name": "r1-vm-0"}, cloud_config())
    root = launcher.server_root("0717_vm-a")
    assert root == tmp_path / "state/servers/0717_vm-a/root"
    script = root / "opt/gpu-workload/bootstrap.sh"
    assert script.read_text() == SCRIPT
    assert oct(script.stat().st_mode & 0o777) == "0o755"
    assert oct((root / "etc/gpu-workload/run.env").stat().st_mode & 0o777) == "0o600"
    env = seen(launcher, "0717_vm-a")
    assert env["ARG"] == str(root / "etc/gpu-workload/run.env")
    assert env["SANDBOX"] == "1"
    assert env["ROOT"] == str(root)
    assert env["VENV"] == str(tmp_path / "venv")
    assert env["METADATA"] == "http://127.0.0.1:9999/i/0717_vm-a"
    assert env["FAULT"] == "none"
    assert env["AIRFLOW"] == "unset"
    assert env["EXTRA"] == "x"
    assert env["RUN_ID"] == "r1"
    wait_for(lambda: launcher.processes()["0717_vm-a"]["status"] == "exited")
    status = launcher.processes()["0717_vm-a"]
    assert status["returncode"] == 0
    console = Path(status["console_log"])
    assert console == root / "var/log/gpu-workload/console.log"
    assert "console line from the fake bootstrap" in console.read_text()


@pytest.mark.parametrize(
    ("fault", "value"),
    [("workload_fails", "fail"), ("workload_hangs", "hang"), ("worker_dies", "worker_dies")],
)
def test_workload_faults_reach_the_environment(launcher, faults, fault, value):
    faults.set([fault])
    launcher.start({"id": "vm-f"}, cloud_config())
    assert seen(launcher, "vm-f")["FAULT"] == value


def test_each_vpc_gets_its_own_block_of_loopback_ports(launcher):
    # Servers of one VPC share a block (they reach each other at 127.0.0.1:<block + last octet>);
    # another run's VPC, which may use the very same private addresses, gets another block.
    launcher.start({"id": "vm-a0", "attrs": {"vpc": "vpc-a"}}, cloud_config())
    launcher.start({"id": "vm-a1", "attrs": {"vpc": "vpc-a"}}, cloud_config())
    launcher.start({"id": "vm-b0", "attrs": {"vpc": "vpc-b"}}, cloud_config())
    a0, a1, b0 = (int(seen(launcher, i)["PORTS"]) for i in ("vm-a0", "vm-a1", "vm-b0"))
    assert a0 == a1 and abs(a0 - b0) >= 256
    assert min(a0, b0) > 1024 and max(a0, b0) + 255 < 32768  # below the ephemeral port range
    # The block is free again once the VPC's last server is gone.
    for instance in ("vm-a0", "vm-a1"):
        launcher.stop(instance)
    launcher.start({"id": "vm-c0", "attrs": {"vpc": "vpc-c"}}, cloud_config())
    assert int(seen(launcher, "vm-c0")["PORTS"]) == a0


def test_stop_terminates_the_whole_process_group(launcher):
    launcher.start({"id": "vm-h"}, cloud_config(mode="hang"))
    root = launcher.server_root("vm-h")
    wait_for((root / "child.pid").exists)
    wait_for(lambda: (root / "child.pid").read_text().strip() != "")
    child = int((root / "child.pid").read_text())
    assert launcher.processes()["vm-h"]["status"] == "running"
    started = time.monotonic()
    launcher.stop("vm-h")
    assert time.monotonic() - started < 10
    assert launcher.processes()["vm-h"]["status"] == "stopped"
    wait_for(lambda: not _alive(child), timeout=5)
    launcher.stop("vm-h")  # twice is fine
    launcher.stop("never-started")


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path, faults):
    launcher = ServerLauncher(tmp_path / "venv", tmp_path / "state", "http://m", faults, stop_grace_s=0.5)
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {"runcmd": [f"trap '' TERM; echo $$ > {tmp_path}/pid; while :; do sleep 0.1; done"]}
    )
    launcher.start({"id": "stubborn"}, user_data)
    wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip() != "")
    pid = int((tmp_path / "pid").read_text())
    launcher.stop("stubborn")
    wait_for(lambda: not _alive(pid), timeout=5)


def test_stop_all(launcher):
    for i in range(3):
        launcher.start({"id": f"vm-{i}"}, cloud_config(mode="hang"))
    wait_for(lambda: all((launcher.server_root(f"vm-{i}") / "child.pid").exists() for i in range(3)))
    launcher.stop_all()
    assert {p["status"] for p in launcher.processes().values()} == {"stopped"}


def test_rejects_bad_user_data(launcher):
    with pytest.raises(CloudInitError, match="cloud-config"):
        launcher.start({"id": "x"}, "#!/bin/sh\necho hi\n")
    with pytest.raises(CloudInitError, match="escapes"):
        launcher.start({"id": "x"}, "#cloud-config\nwrite_files:\n  - path: /../../evil\n    content: x\n")
    with pytest.raises(CloudInitError, match="YAML"):
        parse_cloud_config("#cloud-config\nwrite_files: [\n")


def test_runcmd_maps_only_paths_inside_the_root(tmp_path):
    (tmp_path / "opt").mkdir()
    script = runcmd_script(
        tmp_path,
        [["/opt", "/usr/bin/env", "plain"], "cat /etc/run.env > /dev/null"],
        ["/etc/run.env"],
    )
    assert f"{tmp_path}/opt /usr/bin/env plain" in script
    assert f"cat {tmp_path}/etc/run.env > /dev/null" in script


def test_real_terraform_user_data_boots_the_fake_bootstrap(tmp_path, faults, monkeypatch):
    """The engine's rendered user_data, with bootstrap.sh swapped for the fake one above."""
    template = tmp_path / "tf"
    template.mkdir()
    for f in (REPO / "terraform").iterdir():
        if f.suffix in {".tf", ".tpl", ".json"}:
            (template / f.name).write_text(f.read_text())
    (template / "bootstrap.sh").write_text(SCRIPT)
    launcher = ServerLauncher(tmp_path / "venv", tmp_path / "state", "http://127.0.0.1:1", faults)
    engine = TerraformEngine(
        IbmProvider(inventory=Inventory(), faults=faults, launcher=launcher, resource_delay_s=0)
    )
    values = {
        "run_id": "r-launch-0000abcd",
        "run_ttl": "2026-12-01T17:03:00Z",
        "cos_bucket": "bucket",
        "cos_endpoint": "http://127.0.0.1:2",
        "cos_prefix": "p/d/r",
        "cos_instance_crn": "crn:v1:bluemix:public:cloud-object-storage:global:a/acct:guid::",
        "workload_bundle_key": "p/d/r/bundle/workload.tar.gz",
        "vm_count": "2",
    }
    run = TerraformRun("ws", template, {k: {"value": v} for k, v in values.items()}, {}, lambda _l: None)
    try:
        outputs = engine.apply(run)
        for index, instance_id in enumerate(outputs["instance_ids"]["value"]):
            env = seen(launcher, instance_id)
            assert env["INSTANCE_INDEX"] == str(index)
            assert env["COS_OUTPUT_PREFIX"] == f"p/d/r/vm-{index}"
            assert env["METADATA"] == f"http://127.0.0.1:1/i/{instance_id}"
        engine.destroy(run)
        assert {p["status"] for p in launcher.processes().values()} == {"stopped"}
    finally:
        launcher.stop_all()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as gone
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("process groups are POSIX", allow_module_level=True)

"""workload/bootstrap.sh's GPU steps (driver, Fabric Manager, GPU count check) against stub commands.

No GPU is here, so ``nvidia-smi``, ``lspci``, ``systemctl``, ``apt-get``, ``ubuntu-drivers``,
``modprobe`` and ``nv-fabricmanager`` are small scripts on PATH whose behaviour comes from files in
a stub folder (a driver that installs, a Fabric Manager that will not start, a GPU that is missing),
and the venv's ``python`` answers TensorFlow's GPU count from the same files (and runs everything
else with the real workload interpreter). The script runs in sandbox mode with
``GPU_WORKLOAD_GPU_STEPS=1``, so paths stay under the test's folder and poweroff is a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.workload.test_bootstrap import Vm, make_bundle

DRIVER = "570.133.20"
TRAIN_STUB = "print('stub train.py: training', flush=True)\n"

STUBS = {
    "lspci": """
[ -f "$STUB/pci" ] && echo "0000:00:05.0 0302: 10de:2330 (rev a1)"
exit 0
""",
    "nvidia-smi": """
echo "nvidia-smi $*" >>"$STUB/calls"
[ -f "$STUB/driver" ] || { echo "NVIDIA-SMI has failed: couldn't communicate with the driver" >&2; exit 9; }
case "$*" in
  *driver_version*) echo "$(cat "$STUB/driver")" ;;
  *query-gpu=index*) seq 0 $(( $(cat "$STUB/gpus") - 1 )) ;;
  *) echo "NVIDIA-SMI $(cat "$STUB/driver")" ;;
esac
""",
    "apt-get": """
echo "apt-get $*" >>"$STUB/calls"
case "$*" in
  *"install nvidia-fabricmanager-"*) [ -f "$STUB/fm-unavailable" ] && exit 100; touch "$STUB/fm-installed" ;;
esac
exit 0
""",
    "ubuntu-drivers": """
echo "ubuntu-drivers $*" >>"$STUB/calls"
[ -f "$STUB/driver-broken" ] || echo "$DRIVER" >"$STUB/driver"
""",
    "modprobe": "exit 0\n",
    "nv-fabricmanager": """
echo "Fabric Manager version is : $(cat "$STUB/fm-version" 2>/dev/null || cat "$STUB/driver")"
""",
    "systemctl": """
echo "systemctl $*" >>"$STUB/calls"
case "$*" in
  "enable --now nvidia-fabricmanager")
    [ -f "$STUB/fm-installed" ] && [ ! -f "$STUB/fm-broken" ] && touch "$STUB/fm-active" && exit 0
    exit 1 ;;
  "is-active --quiet nvidia-fabricmanager") [ -f "$STUB/fm-active" ] ;;
  *) exit 0 ;;
esac
""",
    # TensorFlow's count: none without a driver; none on an NVSwitch board without Fabric Manager.
    "python": """
if [ "$1" = "-c" ] && [[ "$2" == *list_physical_devices* ]]; then
  if [ ! -f "$STUB/driver" ] || { [ -f "$STUB/needs-fm" ] && [ ! -f "$STUB/fm-active" ]; }; then
    echo 0
  else
    cat "$STUB/tf-gpus" 2>/dev/null || cat "$STUB/gpus"
  fi
  exit 0
fi
exec "$REAL_PYTHON" "$@"
""",
}


class GpuVm:
    def __init__(self, cos, wl, tmp_path: Path, *, gpus: int, nvswitch: bool, **files: str) -> None:
        self.stub = tmp_path / "stub"
        bin_dir, venv_bin = tmp_path / "bin", tmp_path / "venv" / "bin"
        for folder in (self.stub, bin_dir, venv_bin):
            folder.mkdir(parents=True)
        for name, body in STUBS.items():
            path = (venv_bin if name == "python" else bin_dir) / name
            path.write_text("#!/usr/bin/env bash\n" + body)
            path.chmod(0o755)
        (self.stub / "gpus").write_text(str(gpus))
        if nvswitch:
            (self.stub / "needs-fm").touch()
        for name, text in files.items():
            (self.stub / name.replace("_", "-")).write_text(text)
        self.vm = Vm(
            cos,
            wl,
            tmp_path,
            auth="hmac",
            bundle=make_bundle(wl.workload, {"train.py": TRAIN_STUB}),
            EXPECTED_GPU_COUNT=str(gpus),
            NVSWITCH="1" if nvswitch else "0",
        )
        self.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "STUB": str(self.stub),
            "DRIVER": DRIVER,
            "REAL_PYTHON": str(wl.python),
            "GPU_WORKLOAD_VENV": str(tmp_path / "venv"),
            "GPU_WORKLOAD_GPU_STEPS": "1",
        }

    def boot(self):
        return self.vm.boot(timeout=120, **self.env)

    @property
    def calls(self) -> str:
        path = self.stub / "calls"
        return path.read_text() if path.exists() else ""

    def powered_off(self) -> bool:
        return (self.vm.root / "poweroff-requested").exists()

    def trained(self) -> bool:
        return "stub train.py: training" in self.vm.log


def test_an_nvswitch_server_gets_the_driver_and_a_matching_fabric_manager_then_trains(cos, wl, tmp_path):
    gpu = GpuVm(cos, wl, tmp_path, gpus=8, nvswitch=True, pci="")
    result = gpu.boot()
    assert result.returncode == 0, gpu.vm.log[-4000:]
    calls = gpu.calls
    assert "ubuntu-drivers install --gpgpu nvidia:570-server" in calls
    assert f"install nvidia-fabricmanager-{DRIVER.split('.')[0]}" in calls
    assert "systemctl enable --now nvidia-fabricmanager" in calls
    # every apt-get call waits for the dpkg lock, bounded; python-apt (ubuntu-drivers) via apt.conf.d
    apt_calls = [line for line in calls.splitlines() if line.startswith("apt-get")]
    assert apt_calls and all("DPkg::Lock::Timeout=600" in line for line in apt_calls)
    conf = gpu.vm.root / "etc/apt/apt.conf.d/80gpu-workload-lock"
    assert conf.read_text() == 'DPkg::Lock::Timeout "600";\n'
    assert "the profile has 8, nvidia-smi sees 8, TensorFlow sees 8" in gpu.vm.log
    assert gpu.trained() and not gpu.powered_off()
    assert "_FAILED" not in gpu.vm.objects()


def test_a_single_gpu_server_needs_no_fabric_manager(cos, wl, tmp_path):
    gpu = GpuVm(cos, wl, tmp_path, gpus=1, nvswitch=False, pci="", driver=DRIVER)
    assert gpu.boot().returncode == 0, gpu.vm.log[-4000:]
    assert "fabricmanager" not in gpu.calls and "ubuntu-drivers" not in gpu.calls  # driver was there
    assert gpu.trained()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "device missing: the profile has 8 GPU(s), but no NVIDIA device is on the PCI bus"),
        ({"pci": "", "driver_broken": ""}, None),  # first boot: reboot for the driver (below)
        ({"pci": "", "fm_broken": ""}, "fabric manager: the nvidia-fabricmanager service does not start"),
        ({"pci": "", "fm_unavailable": ""}, "fabric manager: could not install nvidia-fabricmanager-570"),
        ({"pci": "", "fm_version": "570.86.15"}, "fabric manager: version '570.86.15' does not match driver"),
        ({"pci": "", "driver": DRIVER, "smi_gpus": "7"}, "device missing: nvidia-smi sees 7 of 8 GPU(s)"),
        ({"pci": "", "tf_gpus": "0"}, "driver: TensorFlow sees 0 of 8 GPU(s) while nvidia-smi sees 8"),
    ],
    ids=["no-device", "driver-reboot", "fm-fails", "fm-missing", "fm-mismatch", "gpu-missing", "cuda"],
)
def test_a_gpu_server_that_cannot_use_its_gpus_writes_failed_and_powers_off(cos, wl, tmp_path, files, reason):
    files = dict(files)
    smi_gpus = files.pop("smi_gpus", None)
    gpu = GpuVm(cos, wl, tmp_path, gpus=8, nvswitch=True, **files)
    if smi_gpus is not None:  # nvidia-smi (and TensorFlow) see fewer GPUs than the profile has
        (gpu.stub / "gpus").write_text(smi_gpus)
    result = gpu.boot()
    if reason is None:  # the driver needs a reboot; the resume unit boots the script again
        assert result.returncode == 0 and "systemctl reboot" in gpu.calls
        assert gpu.vm.state("driver-reboot").exists() and not gpu.vm.objects()
        result = gpu.boot()
        reason = "driver: nvidia-smi fails even after a reboot"
    assert result.returncode == 1, gpu.vm.log[-4000:]
    failed = gpu.vm.json("_FAILED")
    assert failed["error"].startswith(f"GPU check failed: {reason}"), failed["error"]
    assert gpu.powered_off()
    assert not gpu.trained()
    assert gpu.vm.state("finished").read_text().startswith("failed")


def test_a_running_fabric_manager_is_checked_at_every_boot(cos, wl, tmp_path):
    """Installed on the first boot; after a reboot where it did not come up, the check names it."""
    gpu = GpuVm(cos, wl, tmp_path, gpus=8, nvswitch=True, pci="")
    assert gpu.boot().returncode == 0
    (gpu.stub / "fm-active").unlink()
    gpu.vm.state("finished").unlink()
    gpu.vm.state("train.attempts").unlink()
    result = gpu.boot()
    assert result.returncode == 1
    assert "fabric manager: nvidia-fabricmanager is not running" in gpu.vm.json("_FAILED")["error"]


def test_the_sandbox_skips_the_gpu_steps_without_the_switch(cos, wl, tmp_path):
    """The sandbox's simulated servers are CPUs: a GPU profile's run.env must not stop them."""
    gpu = GpuVm(cos, wl, tmp_path, gpus=8, nvswitch=True)  # no PCI device at all
    env = {k: v for k, v in gpu.env.items() if k != "GPU_WORKLOAD_GPU_STEPS"}
    result = gpu.vm.boot(timeout=120, **env)
    assert result.returncode == 0, gpu.vm.log[-4000:]
    assert "sandbox: skipping the NVIDIA driver, Fabric Manager and the GPU check" in gpu.vm.log
    assert gpu.trained() and gpu.calls == ""

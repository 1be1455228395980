"""Simulated GPU servers: run an instance's cloud-init ``user_data`` as a local process.

The Terraform engine calls :meth:`ServerLauncher.start` for every ``ibm_is_instance`` it creates
and :meth:`ServerLauncher.stop` when it destroys one. ``start`` does what cloud-init does with the
parts of ``#cloud-config`` that the VM boot contract uses (docs/architecture.md):

* ``write_files``: each entry is written under ``<state_dir>/servers/<instance_id>/root/<path>``
  (``encoding: b64``/``base64``/``gz+b64`` decoded, ``permissions`` applied, ``append`` honoured);
* ``runcmd``: the commands become a shell script (as cloud-init's ``runcmd`` module does), with
  every absolute path that names something under the server's root mapped into it, and that
  script runs in its own process group with stdout/stderr appended to
  ``<root>/var/log/gpu-workload/console.log``.

The process environment is the sandbox's own minus ``AIRFLOW_*``, plus ``GPU_WORKLOAD_SANDBOX=1``,
``GPU_WORKLOAD_ROOT``, ``GPU_WORKLOAD_VENV``, ``METADATA_URL=<metadata_url>/i/<instance_id>``,
``GPU_WORKLOAD_FAULT=fail|hang|worker_dies`` while the ``workload_fails``/``workload_hangs``/
``worker_dies`` fault is set, and ``GPU_WORKLOAD_LOOPBACK_PORTS``.

With the ``server_lost`` fault set, the first server of a run dies (its whole process group is
killed) once its first valid checkpoint is in COS, and the instance is deleted, stopped or
restarted (``sandbox/ibm/server_loss.py``).

Private addresses on loopback: the servers of one VPC share this machine, so a server at private
address ``a.b.c.d`` is reached at ``127.0.0.1:<base + d>``, where ``base`` is a block of 256 ports
that the launcher gives each VPC (``GPU_WORKLOAD_LOOPBACK_PORTS=<base>``; workload/distributed.py
applies it). Two runs' VPCs may use the same private addresses, as in IBM Cloud; their blocks
differ. TensorFlow's gRPC server listens on ``0.0.0.0:<port>``, so ports, not addresses, must
differ between the processes of one machine.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from sandbox.faults import FaultSet
from sandbox.ibm.server_loss import FAULT as SERVER_LOST
from sandbox.ibm.server_loss import first_valid_checkpoint, read_cos_object, run_env
from sandbox.ibm.server_loss import mode as loss_mode

#: Left in the server's root by bootstrap.sh's poweroff in sandbox mode (relative to the root).
POWEROFF_FILE = "poweroff-requested"

__all__ = ["CloudInitError", "ServerLauncher"]


class CloudInitError(ValueError):
    """The user_data is not a cloud-config document the sandbox can boot."""


# How often a server watched for the server_lost fault is checked for its first checkpoint.
LOSS_POLL_S = 0.1

# Port blocks for private addresses (below the Linux ephemeral range, 32768 and up).
LOOPBACK_PORT_FIRST = 20000
LOOPBACK_PORT_BLOCKS = 48
LOOPBACK_BLOCK_SIZE = 256


class _Server:
    def __init__(
        self, instance_id: str, root: Path, proc: subprocess.Popen, console: IO[bytes], vpc: str = ""
    ) -> None:
        self.instance_id = instance_id
        self.vpc = vpc
        self.root = root
        self.proc = proc
        self.console = console
        self.started_at = time.time()
        self.stopped = False
        # what a reboot runs again (server_lost as "restarted")
        self.script: Path | None = None
        self.env: dict[str, str] = {}


class ServerLauncher:
    """Starts and stops one local process tree per simulated GPU server. Thread-safe."""

    def __init__(
        self,
        workload_venv: Path,
        state_dir: Path,
        metadata_url: str,
        faults: FaultSet,
        extra_env: dict | None = None,
        stop_grace_s: float = 5.0,
        on_poweroff: Callable[[str], None] | None = None,
        on_lost: Callable[[str, str], None] | None = None,
        cos_reader: Callable[[str, str], bytes | None] | None = None,
    ) -> None:
        # Called with the instance id when a server powers itself off (bootstrap.sh's poweroff in
        # sandbox mode leaves POWEROFF_FILE and exits): the sandbox then shows the instance stopped.
        self.on_poweroff = on_poweroff
        # Called with the instance id and "deleted" | "stopped" when the server_lost fault takes a
        # server (sandbox/ibm/server_loss.py); the sandbox then updates the VPC inventory.
        self.on_lost = on_lost
        self.cos_reader = cos_reader or read_cos_object
        self.workload_venv = Path(workload_venv)
        self.state_dir = Path(state_dir)
        self.metadata_url = metadata_url.rstrip("/")
        self.faults = faults
        self.extra_env = dict(extra_env or {})
        self.stop_grace_s = stop_grace_s
        self._lock = threading.Lock()
        self._servers: dict[str, _Server] = {}
        self._port_blocks: dict[str, int] = {}  # VPC id -> first port of its block

    # -- public API ------------------------------------------------------------------------------
    def server_root(self, instance_id: str) -> Path:
        """The folder that stands for ``/`` on the simulated server."""
        return self.state_dir / "servers" / instance_id / "root"

    def start(self, instance_record: dict[str, Any], user_data: str) -> None:
        """Boot a server from its Inventory record and cloud-init user_data."""
        instance_id = instance_record["id"]
        self.stop(instance_id)  # a re-used id never leaves an orphan behind
        config = parse_cloud_config(user_data)
        root = self.server_root(instance_id)
        root.mkdir(parents=True, exist_ok=True)
        (root.parent / "user-data").write_text(user_data, encoding="utf-8")
        written = write_files(root, config.get("write_files") or [])
        script = runcmd_script(root, config.get("runcmd") or [], written)
        script_path = root / "var/lib/cloud/instance/scripts/runcmd"
        script_path.parent.mkdir(parents=True, exist_ok=True)
        script_path.write_text(script, encoding="utf-8")
        script_path.chmod(0o700)
        log_dir = root / "var/log/gpu-workload"
        log_dir.mkdir(parents=True, exist_ok=True)
        console = (log_dir / "console.log").open("ab")
        vpc = str((instance_record.get("attrs") or {}).get("vpc") or "")
        env = self._environment(instance_id, root)
        env["GPU_WORKLOAD_LOOPBACK_PORTS"] = str(self._port_block(vpc))
        try:
            proc = _spawn(script_path, root, env, console)
        except OSError:
            console.close()
            raise
        server = _Server(instance_id, root, proc, console, vpc)
        server.script, server.env = script_path, env
        with self._lock:
            self._servers[instance_id] = server
        threading.Thread(target=self._watch_poweroff, args=(server,), daemon=True).start()
        if self.faults.active(SERVER_LOST):
            threading.Thread(target=self._watch_for_loss, args=(server,), daemon=True).start()

    def _watch_for_loss(self, server: _Server) -> None:
        """The server_lost fault: the first server dies once its first valid checkpoint is in COS."""
        env = run_env(server.root)
        if env.get("INSTANCE_INDEX", "0") != "0" or not env.get("COS_BUCKET"):
            return
        while not server.stopped and server.proc.poll() is None:
            if first_valid_checkpoint(self.cos_reader, env["COS_BUCKET"], env.get("COS_OUTPUT_PREFIX", "")):
                if self.faults.take(SERVER_LOST):
                    self._lose(server, loss_mode(self.faults.options(SERVER_LOST)))
                return
            time.sleep(LOSS_POLL_S)

    def _lose(self, server: _Server, how: str) -> None:
        """The host fails: every process of the server dies at once (no marker, no log upload)."""
        proc = server.proc
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        deadline = time.monotonic() + 10  # every process of the server, and the locks they held
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if how == "restarted" and server.script is not None:
            # IBM restarts the instance on another host: the same disk boots, and the job's unit
            # (bootstrap.sh) runs again; cloud-init's runcmd stands in for it here.
            server.proc = _spawn(server.script, server.root, server.env, server.console)
            server.started_at = time.time()
            threading.Thread(target=self._watch_poweroff, args=(server,), daemon=True).start()
            return
        self.stop(server.instance_id)
        if self.on_lost is not None:
            self.on_lost(server.instance_id, how)

    def _watch_poweroff(self, server: _Server) -> None:
        server.proc.wait()
        if server.stopped or not (server.root / POWEROFF_FILE).exists():
            return
        _signal_group(server.proc.pid, signal.SIGKILL)  # power off: nothing of the server survives
        if self.on_poweroff is not None:
            self.on_poweroff(server.instance_id)

    def stop(self, instance_id: str) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL after the grace period)."""
        with self._lock:
            server = self._servers.get(instance_id)
        if server is None or server.stopped:
            return
        server.stopped = True
        pgid = server.proc.pid  # start_new_session: the leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=self.stop_grace_s)
        # children may outlive the leader (or ignore SIGTERM): give them the same grace
        deadline = time.monotonic() + self.stop_grace_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=5)
        server.console.close()
        with self._lock:  # the VPC's last server is gone: its port block is free again
            if not any(s.vpc == server.vpc and not s.stopped for s in self._servers.values()):
                self._port_blocks.pop(server.vpc, None)

    def _port_block(self, vpc: str) -> int:
        """The first port of the VPC's block (one block per VPC, kept while it has servers)."""
        with self._lock:
            if vpc in self._port_blocks:
                return self._port_blocks[vpc]
            taken = set(self._port_blocks.values())
            for i in range(LOOPBACK_PORT_BLOCKS):
                base = LOOPBACK_PORT_FIRST + i * LOOPBACK_BLOCK_SIZE
                if base not in taken and _ports_free(base, LOOPBACK_BLOCK_SIZE):
                    self._port_blocks[vpc] = base
                    return base
        raise RuntimeError("no free block of loopback ports for the VPC's private addresses")

    def stop_all(self) -> None:
        with self._lock:
            ids = list(self._servers)
        threads = [threading.Thread(target=self.stop, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def processes(self) -> dict[str, dict[str, Any]]:
        """Status by instance id.

        ``{instance_id: {"pid", "status": running|exited|stopped, "returncode", "root",
        "console_log", "started_at"}}``.
        """
        out = {}
        with self._lock:
            servers = list(self._servers.values())
        for s in servers:
            rc = s.proc.poll()
            status = "stopped" if s.stopped else ("running" if rc is None else "exited")
            out[s.instance_id] = {
                "pid": s.proc.pid,
                "status": status,
                "returncode": rc,
                "root": str(s.root),
                "console_log": str(s.root / "var/log/gpu-workload/console.log"),
                "started_at": s.started_at,
            }
        return out

    # -- helpers ---------------------------------------------------------------------------------
    def _environment(self, instance_id: str, root: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
        env.update(
            GPU_WORKLOAD_SANDBOX="1",
            GPU_WORKLOAD_ROOT=str(root),
            GPU_WORKLOAD_VENV=str(self.workload_venv),
            METADATA_URL=f"{self.metadata_url}/i/{instance_id}",
        )
        env.pop("GPU_WORKLOAD_FAULT", None)
        if self.faults.active("workload_fails"):
            env["GPU_WORKLOAD_FAULT"] = "fail"
        elif self.faults.active("workload_hangs"):
            env["GPU_WORKLOAD_FAULT"] = "hang"
        elif self.faults.active("worker_dies"):
            # train.py kills the last server of a multi-server run after its first epoch
            env["GPU_WORKLOAD_FAULT"] = "worker_dies"
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env


def _spawn(script: Path, root: Path, env: dict[str, str], console: IO[bytes]) -> subprocess.Popen:
    """The server's boot script, in its own process group (stop() ends the whole tree)."""
    return subprocess.Popen(
        ["/bin/sh", str(script)],
        cwd=str(root),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _ports_free(first: int, count: int) -> bool:
    """True when no process on this machine listens on any port of the block (loopback)."""
    for port in range(first, first + count):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while a non-zombie process of the group exists (zombies may linger unreaped in a
    container whose PID 1 does not reap them, and must not hold up stop())."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def parse_cloud_config(user_data: str) -> dict[str, Any]:
    """The ``#cloud-config`` YAML document as a dict (CloudInitError otherwise)."""
    if not user_data.startswith("#cloud-config"):
        raise CloudInitError("user_data is not a #cloud-config document")
    try:
        config = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        raise CloudInitError(f"user_data is not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise CloudInitError("user_data must be a YAML mapping")
    return config


def _inside(root: Path, path: str) -> Path:
    if not path.startswith("/"):
        raise CloudInitError(f"write_files path must be absolute: {path!r}")
    target = (root / path.lstrip("/")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise CloudInitError(f"write_files path escapes the server root: {path!r}")
    return target


def write_files(root: Path, entries: list[dict[str, Any]]) -> list[str]:
    """Write cloud-init ``write_files`` entries under ``root``; returns the absolute VM paths."""
    written = []
    for entry in entries:
        path = str(entry.get("path", ""))
        target = _inside(root, path)
        content = entry.get("content", "")
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        encoding = str(entry.get("encoding", "text")).lower()
        if encoding in {"b64", "base64"}:
            data = base64.b64decode(data)
        elif encoding in {"gz+b64", "gzip+base64", "gz+base64", "gzip+b64"}:
            data = gzip.decompress(base64.b64decode(data))
        elif encoding in {"gz", "gzip"}:
            data = gzip.decompress(data)
        elif encoding not in {"text", "text/plain"}:
            raise CloudInitError(f"unsupported write_files encoding {encoding!r} for {path}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab" if entry.get("append") else "wb") as fh:
            fh.write(data)
        perms = entry.get("permissions")
        if perms is not None:
            target.chmod(int(str(perms), 8))
        written.append(path)
    return written


def _map_word(root: Path, word: str, written: list[str]) -> str:
    if not word.startswith("/"):
        return word
    if word in written or (root / word.lstrip("/")).exists():
        return str(root / word.lstrip("/"))
    return word


def runcmd_script(root: Path, runcmd: list[Any], written: list[str]) -> str:
    """A POSIX shell script running the ``runcmd`` entries, VM paths mapped under ``root``."""
    lines = ["#!/bin/sh", "# generated by the sandbox from cloud-init runcmd"]
    for cmd in runcmd:
        if isinstance(cmd, list):
            lines.append(shlex.join(_map_word(root, str(w), written) for w in cmd))
        elif isinstance(cmd, str):
            text = cmd
            for path in sorted(written, key=len, reverse=True):
                text = text.replace(path, str(root / path.lstrip("/")))
            lines.append(text)
        else:
            raise CloudInitError(f"unsupported runcmd entry {cmd!r}")
    return "\n".join(lines) + "\n"

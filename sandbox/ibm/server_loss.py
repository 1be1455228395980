"""The sandbox fault ``server_lost``: a run's first server fails after its first checkpoint.

What IBM Cloud does when the host of a virtual server instance fails depends on the instance's
``availability_policy.host_failure`` (IBM Cloud docs, *Host failure recovery policies*,
``ibm-cloud-docs/vpc`` ``host-failure-recovery-policies``; provider argument
``availability_policy_host_failure`` of ``ibm_is_instance``, ``restart`` by default):

* ``restart``: the instance is restarted on another host, with the same boot volume and
  addresses: the server reboots, and ``gpu-workload.service`` (``bootstrap.sh``) runs the job
  again, which resumes from its checkpoint. Fault option ``{"as": "restarted"}``.
* ``stop``: the instance is not restarted; its status becomes ``stopped``. ``{"as": "stopped"}``.
* An instance can also disappear: deleted by hand, or its capacity reclaimed. ``{"as": "deleted"}``
  (the default): the instance leaves the VPC inventory with what IBM deletes with it (its boot
  volume, as ``auto_delete_volume`` says), as a ``DELETE /instances/{id}`` would.

In every case the server's processes die at once (SIGKILL to the whole process group: no
``_FAILED``, no ``bootstrap.log`` upload), exactly when the server's first valid checkpoint is in
COS: a complete ``checkpoints/slot-<n>/manifest.json`` whose ``state.npz`` matches its size and
sha256 (``workload/checkpoints.py``). Only the server with ``INSTANCE_INDEX=0`` is watched (a
multi-worker run's chief, which alone writes checkpoints). The fault fires once (``times``, default
1) and is then spent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FAULT = "server_lost"
MODES = ("deleted", "stopped", "restarted")
SLOTS = 2


def read_cos_object(bucket: str, key: str) -> bytes | None:
    """An object's bytes from the sandbox's COS (moto's S3 backends, in this process), or None."""
    from moto.s3.models import s3_backends

    for account in list(s3_backends.keys()):
        for backend in list(s3_backends[account].values()):  # one per partition ("aws")
            found = backend.buckets.get(bucket)
            if found is not None:
                obj = found.keys.get(key)
                return None if obj is None else bytes(obj.value)
    return None


def run_env(root: Path) -> dict[str, str]:
    """The server's ``/etc/gpu-workload/run.env`` (``KEY=value`` lines), {} when it has none."""
    path = root / "etc" / "gpu-workload" / "run.env"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("'\"")
    return out


def first_valid_checkpoint(read: Any, bucket: str, output_prefix: str) -> int | None:
    """The epoch of a valid checkpoint under ``<output_prefix>/checkpoints/``, or None."""
    folder = f"{output_prefix.strip('/')}/checkpoints"
    for slot in range(SLOTS):
        body = read(bucket, f"{folder}/slot-{slot}/manifest.json")
        try:
            manifest = json.loads(body) if body else {}
        except ValueError:
            continue
        if not isinstance(manifest, dict) or manifest.get("status") != "complete":
            continue
        for entry in manifest.get("files") or []:
            data = read(bucket, entry.get("key", ""))
            if data is None or len(data) != entry.get("size"):
                break
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                break
        else:
            return int(manifest.get("epoch") or 0)
    return None


def mode(options: dict[str, Any]) -> str:
    chosen = str(options.get("as", "deleted"))
    if chosen not in MODES:
        raise ValueError(f"fault {FAULT}: 'as' must be one of {', '.join(MODES)}, not {chosen!r}")
    return chosen


def lose_instance(inventory: Any, instance_id: str, how: str) -> None:
    """What the VPC API shows after the loss: the instance gone (with what IBM deletes with it), or
    ``stopped``."""
    from sandbox.ibm.vpc_rules import delete_instance

    if how == "deleted":
        delete_instance(inventory, instance_id)
        inventory.remove(instance_id)
    elif how == "stopped":
        inventory.update_attrs(instance_id, status="stopped")

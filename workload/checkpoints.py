"""Training checkpoints in COS for ``train.py``: save every N epochs, resume from the latest valid one.

Layout (``docs/workload.md``, "Checkpoints"), under the server's output prefix:

    <prefix>/vm-<i>/checkpoints/slot-0/{state.npz, manifest.json}
    <prefix>/vm-<i>/checkpoints/slot-1/{state.npz, manifest.json}

Epoch ``n`` goes to slot ``(n // every) % 2``: the two slots alternate, so the newest checkpoint
never overwrites the one before it, and storage stays at two checkpoints per server although the
servers may neither list nor delete objects (their trusted profile holds Object Writer and Object
Reader only): the latest is found with two reads, and Airflow deletes the folder when the run's
results are final (``gpu_pipeline.checkpoints``).

A save is atomic in the sense that counts: the slot's ``manifest.json`` is first overwritten with
``{"status": "writing"}`` (the slot's older checkpoint stops counting), then ``state.npz`` goes up,
and last the manifest with ``"status": "complete"``, the epoch, the history so far and the state
file's size and sha256. A slot whose manifest is missing, unreadable, not complete, or whose state
file does not match it (a save cut short, a corrupt object) is skipped with a warning, and the
other slot, one interval older, is used.

``state.npz`` holds every variable of the model (weights, and Keras' seed-generator states, so
dropout continues its random sequence) and of the optimizer (Adam's iteration count, moments,
learning rate), by position; the manifest names them, and a restore checks names (without Keras'
``_<n>`` suffixes) and shapes first.
The data order needs no state: epoch ``e`` shuffles with the stateless seed ``(seed, e)``
(``train.epoch_order``), so the resumed run sees the batches an uninterrupted one would have
(Keras ``BackupAndRestore`` semantics: training continues at the next epoch).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("gpu_workload.checkpoints")

FOLDER = "checkpoints"
STATE = "state.npz"
MANIFEST = "manifest.json"
SLOTS = 2
FORMAT = 1
COMPLETE, WRITING = "complete", "writing"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, partial, corrupt, or for another model)."""


def _unsuffixed(path: str) -> str:
    """A variable path without Keras' ``_<n>`` uniqueness suffixes (``conv2d_2/kernel`` ->
    ``conv2d/kernel``): they depend on what else the process built, not on the model."""
    return re.sub(r"_\d+(?=[/_]|$)", "", path)


def slot_of(epoch: int, every: int) -> int:
    return (epoch // every) % SLOTS


@dataclass
class Checkpoint:
    """A valid checkpoint read from COS: the epoch it ends, the history so far, the variables."""

    epoch: int
    slot: int
    history: dict[str, list[float]]
    manifest: dict[str, Any]
    arrays: dict[str, Any] = field(repr=False)

    def restore(self, model: Any, optimizer: Any) -> None:
        """Assign the saved values to ``model.variables`` and ``optimizer.variables`` (built).

        Every name and shape is checked before anything is assigned: a checkpoint of another
        model (a changed bundle) raises CheckpointError and leaves the model as it was.
        """
        pairs = []
        for group, variables in (("model", model.variables), ("optimizer", optimizer.variables)):
            names = self.manifest.get(f"{group}_variables") or []
            if len(names) != len(variables):
                raise CheckpointError(
                    f"epoch {self.epoch}: {len(names)} {group} variables saved, the {group} has "
                    f"{len(variables)} (a checkpoint of another model?)"
                )
            for i, (name, var) in enumerate(zip(names, variables, strict=True)):
                value = self.arrays.get(f"{group}/{i}")
                same_name = _unsuffixed(name) == _unsuffixed(var.path)
                if value is None or not same_name or tuple(value.shape) != tuple(var.shape):
                    raise CheckpointError(
                        f"epoch {self.epoch}: {group} variable {i} is {name} "
                        f"{None if value is None else tuple(value.shape)}, the {group} has "
                        f"{var.path} {tuple(var.shape)}"
                    )
                pairs.append((var, value))
        for var, value in pairs:
            var.assign(value)


class Checkpoints:
    """Save and find this run's checkpoints under ``<folder>/`` (a full key prefix).

    ``cos`` is train.py's ``CosWriter``; ``every`` 0 disables saving and restoring. Only the
    process that ``writes`` (a single server, a sweep's server, a multi-worker run's chief) saves;
    every process may read.
    """

    def __init__(self, cos: Any, folder: str, every: int, work_dir: Path, *, writes: bool = True) -> None:
        self.cos = cos
        self.folder = folder.strip("/")
        self.every = max(0, int(every))
        self.work_dir = work_dir
        self.writes = writes

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def key(self, slot: int, name: str) -> str:
        return f"{self.folder}/slot-{slot}/{name}"

    def due(self, epoch: int) -> bool:
        return self.enabled and self.writes and epoch > 0 and epoch % self.every == 0

    # -- saving -------------------------------------------------------------------------------------
    def save(
        self, epoch: int, model: Any, optimizer: Any, history: dict[str, list[float]], **info: Any
    ) -> None:
        """Write the checkpoint that ends ``epoch`` to its slot, manifest last."""
        import numpy as np

        slot = slot_of(epoch, self.every)
        self.cos.put_json_at(self.key(slot, MANIFEST), {"format": FORMAT, "status": WRITING, "epoch": epoch})
        arrays = {f"model/{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
        arrays.update({f"optimizer/{i}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
        path = self.work_dir / f"checkpoint-slot-{slot}.npz"
        with path.open("wb") as fh:
            np.savez(fh, **arrays)
        data = path.read_bytes()
        self.cos.upload_file_at(self.key(slot, STATE), path, "application/octet-stream")
        manifest = {
            "format": FORMAT,
            "status": COMPLETE,
            "epoch": epoch,
            "checkpoint_every_epochs": self.every,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "history": history,
            "model_variables": [v.path for v in model.variables],
            "optimizer_variables": [v.path for v in optimizer.variables],
            "files": [
                {
                    "name": STATE,
                    "key": self.key(slot, STATE),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            ],
            **info,
        }
        self.cos.put_json_at(self.key(slot, MANIFEST), manifest)
        path.unlink(missing_ok=True)
        LOG.info("checkpoint: epoch %d saved to %s/slot-%d/ (%d bytes)", epoch, self.folder, slot, len(data))

    # -- finding ------------------------------------------------------------------------------------
    def latest(self, max_epoch: int, accept: Callable[[Checkpoint], None] | None = None) -> Checkpoint | None:
        """The newest valid checkpoint (ending at most at ``max_epoch``), or None.

        ``accept`` (e.g. restoring it into the model) may raise CheckpointError to reject one.
        Every checkpoint that is skipped is named in a warning with the reason.
        """
        if not self.enabled:
            return None
        manifests = []
        for slot in range(SLOTS):
            manifest = self._manifest(slot)
            if manifest is not None:
                manifests.append((slot, manifest))
        for slot, manifest in sorted(manifests, key=lambda sm: -int(sm[1].get("epoch") or 0)):
            try:
                found = self._load(slot, manifest, max_epoch)
                if accept is not None:
                    accept(found)
                return found
            except CheckpointError as exc:
                LOG.warning("checkpoint in %s/slot-%d/ skipped: %s", self.folder, slot, exc)
        return None

    def load_epoch(self, epoch: int, max_epoch: int) -> Checkpoint:
        """The checkpoint that ends ``epoch`` (a multi-worker worker loads what the chief chose)."""
        slot = slot_of(epoch, self.every)
        manifest = self._manifest(slot)
        if manifest is None:
            raise CheckpointError(f"no readable manifest in {self.folder}/slot-{slot}/ for epoch {epoch}")
        found = self._load(slot, manifest, max_epoch)
        if found.epoch != epoch:
            raise CheckpointError(f"{self.folder}/slot-{slot}/ holds epoch {found.epoch}, not {epoch}")
        return found

    def _manifest(self, slot: int) -> dict[str, Any] | None:
        key = self.key(slot, MANIFEST)
        try:
            body = self.cos.get_bytes(key)
        except Exception as exc:
            # S3 answers a GET of a missing key with 403 to a caller that may not list the bucket;
            # the servers may not (Object Reader): an unreadable manifest is no checkpoint.
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "AccessDenied":
                raise
            LOG.info("no readable checkpoint manifest at %s (403: absent, or not ours to read)", key)
            return None
        if body is None:
            return None
        try:
            manifest = json.loads(body)
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            LOG.warning("checkpoint in %s/slot-%d/ skipped: unreadable manifest (%s)", self.folder, slot, exc)
            return None
        return manifest

    def _load(self, slot: int, manifest: dict[str, Any], max_epoch: int) -> Checkpoint:
        import numpy as np

        epoch = manifest.get("epoch")
        if manifest.get("format") != FORMAT:
            raise CheckpointError(f"format {manifest.get('format')!r}, expected {FORMAT}")
        if manifest.get("status") != COMPLETE:
            raise CheckpointError(f"epoch {epoch}: status {manifest.get('status')!r} (a save was cut short)")
        if not isinstance(epoch, int) or not 0 < epoch <= max_epoch:
            raise CheckpointError(f"epoch {epoch!r} is outside 1..{max_epoch}")
        files = {f.get("name"): f for f in manifest.get("files") or [] if isinstance(f, dict)}
        entry = files.get(STATE)
        if entry is None:
            raise CheckpointError(f"epoch {epoch}: the manifest lists no {STATE}")
        data = self.cos.get_bytes(entry["key"])
        if data is None:
            raise CheckpointError(f"epoch {epoch}: {entry['key']} is missing")
        if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise CheckpointError(
                f"epoch {epoch}: {entry['key']} does not match its manifest "
                f"({len(data)} bytes, expected {entry.get('size')}; sha256 differs or is corrupt)"
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise CheckpointError(f"epoch {epoch}: {entry['key']} is not a readable .npz ({exc})") from exc
        history = manifest.get("history") or {}
        return Checkpoint(
            epoch=epoch,
            slot=slot,
            history={k: [float(v) for v in vals] for k, vals in history.items()},
            manifest=manifest,
            arrays=arrays,
        )


def checkpoint_folder(output_prefix: str, distribution: str, instance_index: int) -> str:
    """Where this server's checkpoints live: its own ``<prefix>/vm-<i>/checkpoints``, except in a
    multi-worker run, whose one training is checkpointed by the chief (``vm-0``) for every worker."""
    prefix = output_prefix.strip("/")
    if distribution == "multi_worker":
        parent, _, leaf = prefix.rpartition("/")
        if leaf == f"vm-{instance_index}":
            prefix = f"{parent}/vm-0" if parent else "vm-0"
    return f"{prefix}/{FOLDER}"


def epoch_index_batches(
    tf: Any,
    indices: Any,
    seed: int,
    first_epoch: int,
    epochs: int,
    batch: int,
    *,
    steps: int | None = None,
    drop_remainder: bool = False,
) -> Any:
    """Batches of example indices for epochs ``first_epoch`` .. ``epochs - 1`` (0-based), in order.

    Epoch ``e`` visits ``indices`` (a count, or the shard's own indices) in the order of
    ``tf.random.experimental.stateless_shuffle`` with the seed ``(seed, e)``: a pure function of
    the run's seed and the epoch, so training resumed at epoch ``e`` reads what an uninterrupted
    run would have read. ``steps``: exactly that many batches per epoch (the epoch's order
    repeats if it runs short).
    """
    idx = tf.range(indices, dtype=tf.int64) if isinstance(indices, int) else tf.constant(indices, tf.int64)
    base = tf.constant(seed, tf.int64)

    def one_epoch(epoch: Any) -> Any:
        order = tf.random.experimental.stateless_shuffle(idx, seed=tf.stack([base, epoch]))
        ds = tf.data.Dataset.from_tensor_slices(order)
        if steps is not None:
            ds = ds.repeat()
        ds = ds.batch(batch, drop_remainder=drop_remainder)
        return ds.take(steps) if steps is not None else ds

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)

#!/usr/bin/env python3
"""The GPU VM's training job: train a Keras classifier and write the COS output contract.

Run by ``workload/bootstrap.sh`` on the VM (and in the sandbox) as ``python train.py``; every
parameter comes from an argument or, failing that, from the environment variable named like the
``run.env`` key (see ``docs/workload.md``). What it writes under ``<COS_OUTPUT_PREFIX>/``, in order
(``docs/architecture.md``, "COS output contract"):

1. ``progress.json``, overwritten at the start and after every epoch;
2. ``model.keras``, ``metrics.json``, ``training-curve.png``, ``train.log``;
3. ``manifest.json`` (every artifact with key, size and sha256);
4. last, ``_SUCCESS`` (body: the manifest's sha256) or, on any failure, ``_FAILED``
   (JSON ``{"error", "log_tail"}``).

Exit status: 0 success; 1 failure, ``_FAILED`` written; 2 bad usage; 3 failure and no marker could
be written (COS unreachable: the reason is on stderr); 143 terminated by SIGTERM/SIGINT (no marker:
a reboot resumes the job, see bootstrap.sh).

TensorFlow is imported only when training starts, so COS and argument errors fail fast.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from checkpoints import Checkpoint, Checkpoints, checkpoint_folder, epoch_index_batches

LOG = logging.getLogger("gpu_workload.train")

BUILTIN_DATASETS = ("digits", "mnist", "cifar10")
COS_DATASET_SCHEME = "cos://"
# The Terraform enables the metadata service over HTTPS, reached by this name.
DEFAULT_METADATA_URL = "https://api.metadata.cloud.ibm.com"
METADATA_SERVICE_VERSION = "2025-08-26"
MiB = 1024 * 1024
LOG_TAIL_LINES = 60

# Names of the objects under the output prefix (docs/architecture.md).
PROGRESS = "progress.json"
MODEL = "model.keras"
METRICS = "metrics.json"
CURVE = "training-curve.png"
TRAIN_LOG = "train.log"
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
FAILED = "_FAILED"


class Terminated(BaseException):
    """SIGTERM/SIGINT: stop without a marker (a reboot or the sandbox ended the job)."""


class DatasetError(RuntimeError):
    """The requested dataset does not exist or is malformed."""


class InjectedFault(RuntimeError):
    """GPU_WORKLOAD_FAULT=fail (sandbox only)."""


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------


@dataclass
class Params:
    dataset: str = "digits"
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 42
    validation_split: float = 0.1
    test_fraction: float = 0.2
    # 0 disables checkpoints (docs/workload.md, "Checkpoints")
    checkpoint_every_epochs: int = 1
    cos_endpoint: str = ""
    cos_bucket: str = ""
    cos_output_prefix: str = ""
    cos_auth: str = "trusted_profile"
    cos_region: str = ""
    trusted_profile_id: str = ""
    metadata_url: str = DEFAULT_METADATA_URL
    cos_max_attempts: int = 5
    cos_connect_timeout: float = 10.0
    cos_read_timeout: float = 60.0
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    work_dir: str = ""
    run_id: str = ""
    instance_index: int = 0
    instance_count: int = 1
    # single | multi_worker | sweep (docs/workload.md); the cluster is for multi_worker
    distribution: str = "single"
    cluster_hosts: str = ""
    training_port: int = 23456
    collective_timeout_s: float = 300.0
    # Never printed, never written to COS.
    hmac_access_key_id: str = field(default="", repr=False)
    hmac_secret_access_key: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        """The parameters without secrets (what goes into logs and metrics.json)."""
        out = asdict(self)
        out.pop("hmac_access_key_id")
        out.pop("hmac_secret_access_key")
        return out


def _env(name: str, default: str = "") -> str:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def parse_args(argv: list[str] | None = None) -> Params:
    d = Params()
    p = argparse.ArgumentParser(
        description="Train a classifier and write the COS output contract (docs/workload.md).",
    )
    p.add_argument(
        "--dataset",
        default=_env("DATASET", d.dataset),
        help="digits | mnist | cifar10 | cos://<key of an .npz in COS_BUCKET> (env DATASET)",
    )
    p.add_argument("--epochs", type=int, default=int(_env("EPOCHS", str(d.epochs))))
    p.add_argument(
        "--batch-size",
        type=int,
        default=int(_env("BATCH_SIZE", str(d.batch_size))),
        help="per replica; the global batch is this times the number of GPUs (env BATCH_SIZE)",
    )
    p.add_argument("--learning-rate", type=float, default=float(_env("LEARNING_RATE", str(d.learning_rate))))
    p.add_argument("--seed", type=int, default=int(_env("SEED", str(d.seed))))
    p.add_argument(
        "--validation-split", type=float, default=float(_env("VALIDATION_SPLIT", str(d.validation_split)))
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=float(_env("TEST_FRACTION", str(d.test_fraction))),
        help="held-out share when the dataset has no test split",
    )
    p.add_argument(
        "--checkpoint-every-epochs",
        type=int,
        default=int(_env("CHECKPOINT_EVERY_EPOCHS", str(d.checkpoint_every_epochs))),
        help="save a checkpoint to COS every N epochs and resume from the latest valid one; "
        "0 disables both (env CHECKPOINT_EVERY_EPOCHS)",
    )
    p.add_argument("--cos-endpoint", default=_env("COS_ENDPOINT"))
    p.add_argument("--cos-bucket", default=_env("COS_BUCKET"))
    p.add_argument("--cos-output-prefix", default=_env("COS_OUTPUT_PREFIX"))
    p.add_argument("--cos-auth", choices=("trusted_profile", "hmac"), default=_env("COS_AUTH", d.cos_auth))
    p.add_argument("--cos-region", default=_env("COS_REGION"))
    p.add_argument("--trusted-profile-id", default=_env("TRUSTED_PROFILE_ID"))
    p.add_argument("--metadata-url", default=_env("METADATA_URL", d.metadata_url))
    p.add_argument(
        "--cos-max-attempts", type=int, default=int(_env("COS_MAX_ATTEMPTS", str(d.cos_max_attempts)))
    )
    p.add_argument(
        "--cos-connect-timeout",
        type=float,
        default=float(_env("COS_CONNECT_TIMEOUT", str(d.cos_connect_timeout))),
    )
    p.add_argument(
        "--cos-read-timeout", type=float, default=float(_env("COS_READ_TIMEOUT", str(d.cos_read_timeout)))
    )
    p.add_argument(
        "--multipart-threshold",
        type=int,
        default=int(_env("COS_MULTIPART_THRESHOLD", str(d.multipart_threshold))),
        help="bytes; larger files go up as multipart uploads",
    )
    p.add_argument(
        "--multipart-chunksize",
        type=int,
        default=int(_env("COS_MULTIPART_CHUNKSIZE", str(d.multipart_chunksize))),
    )
    p.add_argument(
        "--work-dir", default=_env("WORK_DIR"), help="local scratch folder (default: a new temporary folder)"
    )
    p.add_argument("--run-id", default=_env("RUN_ID"))
    p.add_argument("--instance-index", type=int, default=int(_env("INSTANCE_INDEX", "0")))
    p.add_argument("--instance-count", type=int, default=int(_env("INSTANCE_COUNT", "1")))
    p.add_argument(
        "--distribution",
        choices=("single", "multi_worker", "sweep"),
        default=_env("DISTRIBUTION", d.distribution),
        help="multi_worker: one training over every server in CLUSTER_HOSTS (env DISTRIBUTION)",
    )
    p.add_argument(
        "--cluster-hosts", default=_env("CLUSTER_HOSTS"), help="every server's private IP, by index"
    )
    p.add_argument("--training-port", type=int, default=int(_env("TRAINING_PORT", str(d.training_port))))
    p.add_argument(
        "--collective-timeout",
        dest="collective_timeout_s",
        type=float,
        default=float(_env("COLLECTIVE_TIMEOUT_S", str(d.collective_timeout_s))),
        help="seconds before a gradient exchange with a dead server fails the run",
    )
    ns = p.parse_args(argv)
    params = Params(**vars(ns))
    params.hmac_access_key_id = _env("COS_HMAC_ACCESS_KEY_ID")
    params.hmac_secret_access_key = _env("COS_HMAC_SECRET_ACCESS_KEY")
    missing = [n for n in ("cos_endpoint", "cos_bucket", "cos_output_prefix") if not getattr(params, n)]
    if missing:
        p.error(
            "missing "
            + ", ".join("--" + m.replace("_", "-") for m in missing)
            + " (or the environment variables "
            + ", ".join(m.upper() for m in missing)
            + ")"
        )
    if params.cos_auth == "hmac" and not (params.hmac_access_key_id and params.hmac_secret_access_key):
        p.error("COS_AUTH=hmac needs COS_HMAC_ACCESS_KEY_ID and COS_HMAC_SECRET_ACCESS_KEY in the env")
    if params.checkpoint_every_epochs < 0:
        p.error("--checkpoint-every-epochs must be 0 (off) or more")
    if params.multipart_chunksize < 5 * MiB:
        p.error("--multipart-chunksize must be at least 5 MiB (S3 minimum part size)")
    if params.distribution == "multi_worker":
        from distributed import ClusterConfigError, parse_cluster

        try:
            parse_cluster(
                params.cluster_hosts, params.training_port, params.instance_index, params.instance_count
            )
        except ClusterConfigError as exc:
            p.error(str(exc))
    params.cos_output_prefix = params.cos_output_prefix.strip("/")
    return params


# --------------------------------------------------------------------------------------------------
# COS
# --------------------------------------------------------------------------------------------------


def _region_from_endpoint(endpoint: str) -> str:
    # s3.direct.us-south.cloud-object-storage.appdomain.cloud -> us-south
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    parts = host.split(".")
    if "cloud-object-storage" in parts:
        idx = parts.index("cloud-object-storage")
        if idx >= 1 and parts[idx - 1] not in ("s3", "direct", "private"):
            return parts[idx - 1]
    return "us-south"


class CosWriter:
    """Writes the run's objects under ``<bucket>/<prefix>/`` and remembers the order it wrote them.

    Every object carries user metadata ``seq`` (1, 2, 3... in write order within this process) and
    ``written-at``; the manifest repeats both for the artifacts.
    """

    def __init__(self, params: Params) -> None:
        import ibm_boto3
        from ibm_boto3.s3.transfer import TransferConfig
        from ibm_botocore.config import Config

        self.bucket = params.cos_bucket
        self.prefix = params.cos_output_prefix
        self.seq = 0
        self.writes: list[dict[str, Any]] = []
        self.transfer = TransferConfig(
            multipart_threshold=params.multipart_threshold,
            multipart_chunksize=params.multipart_chunksize,
            max_concurrency=4,
        )
        common = {
            "retries": {"total_max_attempts": max(1, params.cos_max_attempts), "mode": "standard"},
            "connect_timeout": params.cos_connect_timeout,
            "read_timeout": params.cos_read_timeout,
            "s3": {"addressing_style": "path"},
        }
        region = params.cos_region or _region_from_endpoint(params.cos_endpoint)
        if params.cos_auth == "hmac":
            self.client = ibm_boto3.client(
                "s3",
                endpoint_url=params.cos_endpoint,
                region_name=region,
                aws_access_key_id=params.hmac_access_key_id,
                aws_secret_access_key=params.hmac_secret_access_key,
                config=Config(signature_version="s3v4", **common),
            )
        else:
            self.client = ibm_boto3.client(
                "s3",
                endpoint_url=params.cos_endpoint,
                region_name=region,
                token_manager=_metadata_token_manager(params),
                config=Config(signature_version="oauth", **common),
            )

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def _meta(self) -> dict[str, str]:
        self.seq += 1
        return {"seq": str(self.seq), "written-at": utcnow()}

    def _record(self, key: str, meta: dict[str, str]) -> dict[str, Any]:
        entry = {"key": key, "seq": int(meta["seq"]), "written_at": meta["written-at"]}
        self.writes.append(entry)
        return entry

    def put_bytes(self, name: str, body: bytes, content_type: str) -> dict[str, Any]:
        return self.put_bytes_at(self.key(name), body, content_type)

    def put_bytes_at(self, key: str, body: bytes, content_type: str) -> dict[str, Any]:
        meta = self._meta()
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata=meta
        )
        return self._record(key, meta)

    def put_json(self, name: str, obj: Any) -> dict[str, Any]:
        return self.put_json_at(self.key(name), obj)

    def put_json_at(self, key: str, obj: Any) -> dict[str, Any]:
        return self.put_bytes_at(key, json.dumps(obj, indent=2, sort_keys=True).encode(), "application/json")

    def upload_file(self, name: str, path: Path, content_type: str) -> dict[str, Any]:
        return self.upload_file_at(self.key(name), path, content_type)

    def upload_file_at(self, key: str, path: Path, content_type: str) -> dict[str, Any]:
        """Upload a local file; files above the multipart threshold go up in parts."""
        meta = self._meta()
        self.client.upload_file(
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type, "Metadata": meta},
            Config=self.transfer,
        )
        return self._record(key, meta)

    def download(self, key: str, path: Path) -> None:
        self.client.download_file(self.bucket, key, str(path), Config=self.transfer)

    def get_bytes(self, key: str) -> bytes | None:
        """The object's body, or None when there is no such object (a GET: Object Reader suffices)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def reset(self, epochs: int) -> None:
        """Announce a (re-)run: a fresh ``progress.json`` (epoch 0) tells a stall detector it is alive.

        Nothing is deleted: Airflow removes an earlier attempt's markers before the servers exist,
        and the servers' trusted profile may only upload and read (least privilege). The other
        objects are overwritten as the run goes; ``_SUCCESS`` comes last.
        """
        self.put_json(
            PROGRESS, {"epoch": 0, "epochs": epochs, "metrics": {}, "time": utcnow(), "status": "starting"}
        )


def _metadata_token_manager(params: Params):
    """An ibm_botocore token manager backed by the VPC instance metadata service (keyless COS).

    ``VPCInstanceAuthenticator`` gets an instance identity token from the metadata service and
    exchanges it for an IAM token of the trusted profile; ibm_botocore's ``oauth`` signer sends it as
    ``Authorization: Bearer <token>``. Tokens are cached and refreshed by the SDK.
    """
    from ibm_botocore.credentials import TokenManager
    from ibm_cloud_sdk_core.authenticators import VPCInstanceAuthenticator

    authenticator = VPCInstanceAuthenticator(
        iam_profile_id=params.trusted_profile_id or None,
        url=params.metadata_url or DEFAULT_METADATA_URL,
        service_version=METADATA_SERVICE_VERSION,
    )
    authenticator.validate()

    class _VpcInstanceTokenManager(TokenManager):
        def get_token(self) -> str:
            return authenticator.token_manager.get_token()

        def set_from_config(self, config) -> None:
            # ibm_botocore calls this on every token manager (only its DefaultTokenManager has it).
            pass

    return _VpcInstanceTokenManager()


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class Data:
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    scale: float
    source: str

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _split(x, y, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    stratify = y if len(set(y.tolist())) > 1 else None
    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=stratify)


def _with_channels(x):
    return x[..., None] if x.ndim == 3 else x


def load_dataset(
    name: str,
    seed: int,
    test_fraction: float = 0.2,
    cos: CosWriter | None = None,
    work_dir: Path | None = None,
) -> Data:
    """Load ``digits`` (offline), ``mnist``/``cifar10`` (downloaded by Keras) or ``cos://<key>``."""
    import numpy as np

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.images.astype("float32"), digits.target.astype("int64")
        x_train, x_test, y_train, y_test = _split(x, y, test_fraction, seed)
        return Data(
            _with_channels(x_train),
            y_train,
            _with_channels(x_test),
            y_test,
            16.0,
            "sklearn.datasets.load_digits",
        )
    if name in ("mnist", "cifar10"):
        import keras

        loader = keras.datasets.mnist if name == "mnist" else keras.datasets.cifar10
        (x_train, y_train), (x_test, y_test) = loader.load_data()
        return Data(
            _with_channels(x_train),
            y_train.reshape(-1).astype("int64"),
            _with_channels(x_test),
            y_test.reshape(-1).astype("int64"),
            255.0,
            f"keras.datasets.{name}",
        )
    if name.startswith(COS_DATASET_SCHEME):
        key = name[len(COS_DATASET_SCHEME) :].lstrip("/")
        if not key or cos is None:
            raise DatasetError(f"dataset {name!r}: expected cos://<object key in the run's bucket>")
        local = (work_dir or Path(tempfile.mkdtemp())) / "dataset.npz"
        try:
            cos.download(key, local)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise DatasetError(
                    f"dataset {name!r} not found: no object {key!r} in bucket {cos.bucket!r}"
                ) from exc
            raise DatasetError(
                f"dataset {name!r}: download of {key!r} from bucket {cos.bucket!r} failed: {exc}"
            ) from exc
        try:
            with np.load(local, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise DatasetError(f"dataset {name!r}: not a readable .npz file: {exc}") from exc
        for needed in ("x_train", "y_train"):
            if needed not in arrays:
                raise DatasetError(f"dataset {name!r}: the .npz has no {needed!r} (arrays: {sorted(arrays)})")
        x, y = arrays["x_train"], arrays["y_train"].reshape(-1).astype("int64")
        if len(x) != len(y) or x.ndim not in (3, 4):
            raise DatasetError(
                f"dataset {name!r}: x_train must be (n, h, w[, c]) with one label each; "
                f"got {x.shape} and {y.shape}"
            )
        if "x_test" in arrays and "y_test" in arrays:
            x_train, y_train = x, y
            x_test, y_test = arrays["x_test"], arrays["y_test"].reshape(-1).astype("int64")
        else:
            x_train, x_test, y_train, y_test = _split(x, y, test_fraction, seed)
        peak = float(max(np.max(x_train), 1.0))
        scale = 255.0 if peak > 16.0 else peak
        return Data(
            _with_channels(x_train),
            y_train,
            _with_channels(x_test),
            y_test,
            scale,
            f"cos://{cos.bucket}/{key}",
        )
    raise DatasetError(f"unknown dataset {name!r}: use one of {', '.join(BUILTIN_DATASETS)} or cos://<key>")


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def build_model(keras, input_shape: tuple[int, ...], num_classes: int, scale: float):
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / scale)(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    if min(input_shape[:2]) >= 16:
        x = layers.Conv2D(128, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    # float32 output keeps the softmax stable under mixed_float16.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="classifier")


def _fault() -> str:
    """GPU_WORKLOAD_FAULT, honoured only in the sandbox (GPU_WORKLOAD_SANDBOX=1)."""
    if os.environ.get("GPU_WORKLOAD_SANDBOX") != "1":
        return ""
    return os.environ.get("GPU_WORKLOAD_FAULT", "").strip().lower()


def _maybe_die(fault: str, index: int, count: int) -> None:
    """GPU_WORKLOAD_FAULT=worker_dies: the last server of a multi-server run crashes after its first
    epoch, as a VM that loses power: its whole process group (bootstrap.sh included) is killed, so
    no marker comes from it and its peers must notice."""
    if fault == "worker_dies" and count > 1 and index == count - 1:
        LOG.error("injected fault worker_dies: this server dies now")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.killpg(os.getpgrp(), signal.SIGKILL)


def write_progress(
    cos: CosWriter,
    params: Params,
    epoch: int,
    metrics: dict[str, float],
    started: float,
    status: str = "training",
) -> None:
    """Overwrite this server's progress.json (every server has its own, in every mode)."""
    cos.put_json(
        PROGRESS,
        {
            "epoch": epoch,
            "epochs": params.epochs,
            "metrics": metrics,
            "time": utcnow(),
            "elapsed_s": round(time.monotonic() - started, 3),
            "status": status,
            "worker": params.instance_index,
        },
    )


def make_progress_callback(
    keras,
    cos: CosWriter,
    epochs: int,
    started: float,
    index: int = 0,
    count: int = 1,
    checkpoints: Checkpoints | None = None,
    history: dict[str, list[float]] | None = None,
):
    params_index, params_count = index, count
    history = {} if history is None else history

    class CosProgress(keras.callbacks.Callback):
        """Overwrites progress.json after every epoch, keeps the whole history (the epochs of an
        earlier attempt included), saves the checkpoints that are due; applies the sandbox's fault
        hooks last (a checkpoint due at epoch 1 is in COS before a fault fires)."""

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            for key, value in metrics.items():
                history.setdefault(key, []).append(value)
            cos.put_json(
                PROGRESS,
                {
                    "epoch": epoch + 1,
                    "epochs": epochs,
                    "metrics": metrics,
                    "time": utcnow(),
                    "elapsed_s": round(time.monotonic() - started, 3),
                    "status": "training",
                    "worker": params_index,
                },
            )
            LOG.info(
                "epoch %d/%d %s",
                epoch + 1,
                epochs,
                " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())),
            )
            if checkpoints is not None and checkpoints.due(epoch + 1):
                checkpoints.save(epoch + 1, self.model, self.model.optimizer, history)
            fault = _fault()
            _maybe_die(fault, params_index, params_count)
            if fault == "fail":
                raise InjectedFault("injected fault GPU_WORKLOAD_FAULT=fail after epoch 1")
            if fault == "hang":
                while True:  # no progress, no output, no exit: the sandbox kills the process
                    time.sleep(3600)

    return CosProgress()


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train_and_publish(params: Params, cos: CosWriter, work_dir: Path, log_path: Path) -> dict[str, Any]:
    started_at, started = utcnow(), time.monotonic()
    # Data first: a bad dataset fails before the (slow) TensorFlow import.
    data = load_dataset(params.dataset, params.seed, params.test_fraction, cos, work_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    cluster = None
    if params.distribution == "multi_worker":
        from distributed import make_strategy, parse_cluster, tf_config

        cluster = parse_cluster(
            params.cluster_hosts, params.training_port, params.instance_index, params.instance_count
        )
        LOG.info(
            "joining the cluster as worker %d of %d: %s", cluster.index, cluster.size, tf_config(cluster)
        )
        strategy = make_strategy(tf, cluster, params.collective_timeout_s, use_nccl=bool(gpus))
        LOG.info("cluster up: %d workers, %d replicas", cluster.size, strategy.num_replicas_in_sync)
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
    elif gpus:
        strategy = tf.distribute.MirroredStrategy()
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    device = {
        "gpus": [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus],
        "gpu_count": len(gpus),
        "strategy": type(strategy).__name__,
        "replicas": replicas,
        "mixed_precision": keras.mixed_precision.global_policy().name,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }
    LOG.info("device: %s", json.dumps(device))

    keras.utils.set_random_seed(params.seed)
    num_classes = data.num_classes
    # A seeded permutation before the validation cut: staged data may be sorted by class.
    order = np.random.default_rng(params.seed).permutation(len(data.x_train))
    x_train, y_train = data.x_train[order], data.y_train[order]
    n_val = round(len(x_train) * params.validation_split) if params.validation_split > 0 else 0
    x_fit, y_fit = x_train[n_val:], y_train[n_val:]
    LOG.info(
        "dataset %s (%s): train %d, validation %d, test %d, shape %s, %d classes",
        params.dataset,
        data.source,
        len(x_fit),
        n_val,
        len(data.x_test),
        x_train.shape[1:],
        num_classes,
    )

    if cluster is not None:
        return _train_multi_worker(
            params,
            cos,
            work_dir,
            log_path,
            tf,
            keras,
            strategy,
            cluster,
            data,
            device,
            started_at,
            started,
            (x_fit, y_fit, x_train[:n_val], y_train[:n_val]),
        )

    global_batch = params.batch_size * replicas
    autotune = tf.data.AUTOTUNE
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def pipeline(x, y):
        ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
        return ds.batch(global_batch).prefetch(autotune).with_options(options)

    val_ds = pipeline(x_train[:n_val], y_train[:n_val]) if n_val else None
    test_ds = pipeline(data.x_test, data.y_test)

    checkpoints = Checkpoints(
        cos,
        checkpoint_folder(params.cos_output_prefix, params.distribution, params.instance_index),
        params.checkpoint_every_epochs,
        work_dir,
    )
    with strategy.scope():
        model = build_model(keras, tuple(x_train.shape[1:]), num_classes, data.scale)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        if checkpoints.enabled:  # a restore assigns the optimizer's variables: create them now
            model.optimizer.build(model.trainable_variables)
    resumed = resume(checkpoints, params, cos, started, model, model.optimizer)
    start = resumed.epoch if resumed else 0
    history = dict(resumed.history) if resumed else {}

    # Every epoch's order is a function of (seed, epoch) alone: a resumed run gets the batches an
    # uninterrupted one would have had (checkpoints.epoch_index_batches).
    x_fit_t, y_fit_t = tf.constant(x_fit.astype("float32")), tf.constant(y_fit)
    steps = math.ceil(len(x_fit) / global_batch)
    train_ds = (
        epoch_index_batches(tf, len(x_fit), params.seed, start, params.epochs, global_batch)
        .map(lambda idx: (tf.gather(x_fit_t, idx), tf.gather(y_fit_t, idx)), num_parallel_calls=autotune)
        .prefetch(autotune)
        .with_options(options)
    )
    fit_started = time.monotonic()
    if start < params.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=start,
            epochs=params.epochs,
            steps_per_epoch=steps,
            verbose=2,
            shuffle=False,  # the order is the dataset's
            callbacks=[
                make_progress_callback(
                    keras,
                    cos,
                    params.epochs,
                    started,
                    params.instance_index,
                    params.instance_count,
                    checkpoints=checkpoints,
                    history=history,
                )
            ],
        )
    fit_seconds = time.monotonic() - fit_started
    test_loss, test_accuracy = (float(v) for v in model.evaluate(test_ds, verbose=0))
    extra = {
        "global_batch_size": global_batch,
        "workers": 1,
        "examples_per_second": _throughput(len(x_fit) * (params.epochs - start), fit_seconds, 1),
        "samples": {"train": len(x_fit), "validation": n_val, "test": len(data.x_test)},
        **resume_summary(params, start),
    }
    return publish(
        params,
        cos,
        work_dir,
        log_path,
        model,
        history,
        (test_loss, test_accuracy),
        data,
        device,
        extra,
        started_at,
        started,
    )


def resume(
    checkpoints: Checkpoints, params: Params, cos: CosWriter, started: float, model: Any, optimizer: Any
) -> Checkpoint | None:
    """Restore the newest valid checkpoint into ``model`` and ``optimizer`` (built); None: fresh.

    A checkpoint that is partial, corrupt or of another model is skipped with a warning and the
    one before it is tried (checkpoints.py).
    """
    found = checkpoints.latest(params.epochs, accept=lambda c: c.restore(model, optimizer))
    if found is None:
        if checkpoints.enabled:
            LOG.info("no checkpoint in %s/: training from epoch 0", checkpoints.folder)
        return None
    LOG.info(
        "resuming after epoch %d/%d from %s/slot-%d/ (saved %s)",
        found.epoch,
        params.epochs,
        checkpoints.folder,
        found.slot,
        found.manifest.get("created_at", "?"),
    )
    last = {k: v[-1] for k, v in found.history.items() if v}
    write_progress(cos, params, found.epoch, last, started, status="resumed")
    return found


def resume_summary(params: Params, start: int) -> dict[str, Any]:
    """What metrics.json says about checkpoints: where this attempt started, what it trained."""
    return {
        "resumed_from_epoch": start,
        "epochs_trained": params.epochs - start,
        "checkpoint_every_epochs": params.checkpoint_every_epochs,
    }


def _throughput(examples: int, seconds: float, workers: int) -> dict[str, float]:
    total = examples / seconds if seconds > 0 else 0.0
    return {"total": round(total, 2), "per_worker": round(total / workers, 2)}


def _train_multi_worker(
    params, cos, work_dir, log_path, tf, keras, strategy, cluster, data, device, started_at, started, split
) -> dict[str, Any]:
    """One training over the cluster (workload/distributed.py); the chief publishes the results."""
    from distributed import agree_on_epoch, fit_multi_worker, local_eval

    x_fit, y_fit, x_val, y_val = split

    progress_metrics: dict[str, float] = {}
    # The chief saves (to vm-0/checkpoints/); every worker reads the chief's.
    checkpoints = Checkpoints(
        cos,
        checkpoint_folder(params.cos_output_prefix, params.distribution, params.instance_index),
        params.checkpoint_every_epochs,
        work_dir,
        writes=cluster.is_chief,
    )

    def on_epoch_end(epoch: int, logs: dict[str, float], model, optimizer, history) -> None:
        metrics = {k: float(v) for k, v in logs.items()}
        progress_metrics.update(metrics)
        write_progress(cos, params, epoch + 1, metrics, started)
        LOG.info(
            "epoch %d/%d %s",
            epoch + 1,
            params.epochs,
            " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())),
        )
        if checkpoints.due(epoch + 1):
            checkpoints.save(epoch + 1, model, optimizer, history)
        _maybe_die(_fault(), params.instance_index, params.instance_count)

    def restore_same_checkpoint(model, optimizer) -> tuple[int, dict[str, list[float]]]:
        """The chief picks the newest valid checkpoint; every worker then loads that one."""
        mine = resume(checkpoints, params, cos, started, model, optimizer) if cluster.is_chief else None
        epoch = agree_on_epoch(tf, strategy, mine.epoch if mine else 0, cluster.is_chief)
        if cluster.is_chief or epoch == 0:
            return (mine.epoch, mine.history) if mine else (0, {})
        found = checkpoints.load_epoch(epoch, params.epochs)  # CheckpointError: _FAILED, as any error
        found.restore(model, optimizer)
        LOG.info("resuming after epoch %d/%d, as the chief chose", epoch, params.epochs)
        write_progress(cos, params, epoch, {}, started, status="resumed")
        return epoch, found.history

    result = fit_multi_worker(
        tf=tf,
        keras=keras,
        strategy=strategy,
        build_model=lambda: build_model(keras, tuple(x_fit.shape[1:]), data.num_classes, data.scale),
        x_fit=x_fit,
        y_fit=y_fit,
        x_val=x_val,
        y_val=y_val,
        per_replica_batch=params.batch_size,
        epochs=params.epochs,
        learning_rate=params.learning_rate,
        seed=params.seed,
        workers=cluster.size,
        is_chief=cluster.is_chief,
        on_epoch_end=on_epoch_end,
        resume=restore_same_checkpoint if checkpoints.enabled else None,
    )
    # tf.distribute names it CollectiveAllReduceStrategy inside; report the public name
    device.update(
        strategy="MultiWorkerMirroredStrategy",
        communication="NCCL" if device["gpu_count"] else "RING",
        replicas=result["replicas"],
    )
    LOG.info(
        "trained over %d workers (%d replicas, global batch %d): %s examples/s in total",
        result["workers"],
        result["replicas"],
        result["global_batch_size"],
        result["examples_per_second"]["total"],
    )
    if not cluster.is_chief:
        # Workers publish nothing but their progress.json; the chief writes the one model.
        # "finished": the sensor stops this folder's stall clock while the chief publishes
        write_progress(cos, params, params.epochs, dict(progress_metrics), started, status="finished")
        return {"workers": result["workers"], "examples_per_second": result["examples_per_second"]}
    test_loss, test_accuracy = local_eval(
        result["model"], data.x_test, data.y_test, result["global_batch_size"]
    )
    extra = {
        "global_batch_size": result["global_batch_size"],
        "workers": result["workers"],
        "replicas": result["replicas"],
        "steps_per_epoch": result["steps_per_epoch"],
        "examples_per_second": result["examples_per_second"],
        "samples": {
            "train": len(x_fit),
            "train_per_worker": len(x_fit) // result["workers"],
            "validation": len(x_val),
            "test": len(data.x_test),
        },
        "cluster": [f"{h}:{cluster.port}" for h in cluster.hosts],
        **resume_summary(params, result["resumed_from_epoch"]),
    }
    return publish(
        params,
        cos,
        work_dir,
        log_path,
        result["model"],
        result["history"],
        (test_loss, test_accuracy),
        data,
        device,
        extra,
        started_at,
        started,
    )


def publish(
    params, cos, work_dir, log_path, model, history, test, data, device, extra, started_at, started
) -> dict[str, Any]:
    """Write the artifacts, the manifest and last ``_SUCCESS`` (the COS output contract)."""
    test_loss, test_accuracy = test
    LOG.info("held-out test: accuracy=%.4f loss=%.4f", test_accuracy, test_loss)

    model_path = work_dir / MODEL
    model.save(model_path)
    curve_path = work_dir / CURVE
    plot_curves(history, curve_path, f"{params.dataset}: test accuracy {test_accuracy:.3f}")
    finished_at = utcnow()
    metrics = {
        "run_id": params.run_id,
        "instance_index": params.instance_index,
        "dataset": params.dataset,
        "dataset_source": data.source,
        "num_classes": data.num_classes,
        "input_shape": list(data.x_train.shape[1:]),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "history": history,
        "epochs_completed": len(history.get("loss", [])),
        "params": params.public(),
        "distribution": params.distribution,
        **extra,
        "device": device,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round(time.monotonic() - started, 3),
    }
    metrics_path = work_dir / METRICS
    metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))

    LOG.info("uploading artifacts to %s/%s/", cos.bucket, cos.prefix)
    for handler in logging.getLogger().handlers:
        handler.flush()
    log_snapshot = work_dir / "train.log.upload"
    shutil.copyfile(log_path, log_snapshot)  # the log keeps growing; upload and hash one snapshot

    artifacts = []
    for name, path, ctype in (
        (MODEL, model_path, "application/zip"),
        (METRICS, metrics_path, "application/json"),
        (CURVE, curve_path, "image/png"),
        (TRAIN_LOG, log_snapshot, "text/plain"),
    ):
        entry = cos.upload_file(name, path, ctype)
        artifacts.append(
            {
                **entry,
                "name": name,
                "size": path.stat().st_size,
                "sha256": sha256_file(path),
                "content_type": ctype,
            }
        )
        LOG.info("uploaded %s (%d bytes)", entry["key"], path.stat().st_size)

    manifest = {
        "run_id": params.run_id,
        "instance_index": params.instance_index,
        "bucket": cos.bucket,
        "prefix": cos.prefix,
        "created_at": utcnow(),
        "test_accuracy": test_accuracy,
        "artifacts": artifacts,
        "marker": cos.key(SUCCESS),
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    cos.put_bytes(MANIFEST, manifest_bytes, "application/json")
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    cos.put_bytes(SUCCESS, manifest_sha.encode(), "text/plain")  # last
    LOG.info("wrote %s (manifest sha256 %s)", cos.key(SUCCESS), manifest_sha)
    return metrics


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def setup_logging(log_path: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.FileHandler(log_path), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    # The SDKs log request details at DEBUG; keep them quiet so nothing sensitive reaches a log.
    for noisy in ("ibm_botocore", "ibm_boto3", "ibm_s3transfer", "urllib3", "ibm_cloud_sdk_core"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _on_signal(signum, _frame):
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)
    work_dir = Path(params.work_dir) if params.work_dir else Path(tempfile.mkdtemp(prefix="gpu-workload-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / TRAIN_LOG
    setup_logging(log_path)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    LOG.info("starting: %s", json.dumps(params.public(), sort_keys=True))

    cos: CosWriter | None = None
    try:
        cos = CosWriter(params)
        cos.reset(params.epochs)
        train_and_publish(params, cos, work_dir, log_path)
        rc = 0
    except Terminated as exc:
        LOG.warning("%s: stopping without a marker", exc)
        rc = 143
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        cause = "error"
        if params.distribution == "multi_worker" and _is_collective_failure(exc):
            # Not this server's fault: a peer is gone. Airflow may replace the servers and resume
            # from the chief's checkpoint (docs/workload.md, "Checkpoints").
            cause = "peer_lost"
            error = (
                "multi-worker training stopped: a gradient exchange with another server failed "
                f"(a server died or is unreachable; collective timeout {params.collective_timeout_s:g} s): "
                f"{type(exc).__name__}: {_collective_reason(exc)}"
            )
        # Indented: a reader of the log tail (the sensor's message) finds the error line above,
        # not the last line of a traceback.
        LOG.error("training failed: %s\n%s", error, textwrap.indent(traceback.format_exc(), "    "))
        rc = _write_failed(cos, error, log_path, cause)
    if params.distribution == "multi_worker":
        # TensorFlow's collective threads can keep a process alive after a peer is gone: the
        # marker is written, so leave now rather than hang until the TTL.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def _collective_reason(exc: BaseException) -> str:
    """The line of TensorFlow's multi-line error that says what happened to the collective."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "aborted by" in line or "timed out" in line.lower() or "deadline" in line.lower():
            return line
    return lines[0] if lines else "(no message)"


def _is_collective_failure(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"UnavailableError", "DeadlineExceededError", "CancelledError", "AbortedError"})


def _write_failed(cos: CosWriter | None, error: str, log_path: Path, cause: str = "error") -> int:
    if cos is None:
        print(f"train.py: FAILED and no COS client to report it: {error}", file=sys.stderr)
        return 3
    target = f"{cos.bucket}/{cos.key(FAILED)}"
    try:
        with contextlib.suppress(Exception):  # the log is a bonus; the marker is what matters
            for handler in logging.getLogger().handlers:
                handler.flush()
            cos.put_bytes(TRAIN_LOG, log_path.read_bytes(), "text/plain")
        cos.put_json(
            FAILED, {"error": error, "cause": cause, "log_tail": log_tail(log_path), "time": utcnow()}
        )
    except Exception as exc:
        print(
            f"train.py: FAILED: {error}\ntrain.py: and the _FAILED marker could not be written to "
            f"{target} at {cos.client.meta.endpoint_url}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 3
    LOG.error("wrote %s", target)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Hook for IBM Cloud Object Storage through ``ibm_boto3`` (S3 API; HMAC or IAM API-key auth).

Requests retry as every IBM Cloud hook's do (``hooks/base.py``: 429, 5xx and transport errors, with
``Retry-After`` honoured), not with botocore's own retries, which are turned off.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudNotFoundError, IbmCloudPermanentError
from ibm_cloud_airflow.hooks.base import CosConnectionConfig, IbmCloudBaseHook, RetryPolicy, map_api_error
from ibm_cloud_airflow.utils.lineage import report_read, report_write

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_AUTH_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Unauthorized", "401"}


class CosHook(IbmCloudBaseHook):
    """Reads and writes IBM COS objects.

    Every object read or written is reported to Airflow's hook lineage collector (an asset
    ``cos://<bucket>/<key>``; OpenLineage names it ``s3://<bucket>`` / ``<key>``): see
    :mod:`ibm_cloud_airflow.utils.lineage`.

    :param cos_conn_id: the ``ibm_cos_default``-style connection (``endpoint_url`` + HMAC keys, or
        ``auth_type = "iam"`` and an API key).
    :param connect_timeout: seconds to open a connection.
    :param read_timeout: seconds to wait for a response.
    :param max_attempts: tries per request (429, 5xx and transport errors are retried).
    """

    conn_name_attr = "cos_conn_id"
    default_conn_name = "ibm_cos_default"
    conn_type = "ibm_cos"
    hook_name = "IBM Cloud Object Storage"
    config_class = CosConnectionConfig

    def __init__(
        self,
        cos_conn_id: str = default_conn_name,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        super().__init__(
            cos_conn_id, retry_policy=RetryPolicy(max_attempts=max_attempts), request_timeout=read_timeout
        )
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    @cached_property
    def client(self) -> Any:
        import ibm_boto3
        from ibm_botocore.client import Config

        cfg = self.config
        retries = {"total_max_attempts": 1, "mode": "standard"}  # no botocore retries: see the module doc
        if cfg.auth_type == "iam":
            return ibm_boto3.client(
                "s3",
                ibm_api_key_id=cfg.api_key,
                ibm_service_instance_id=cfg.instance_crn,
                ibm_auth_endpoint=cfg.iam_url + "/identity/token",
                config=Config(
                    signature_version="oauth",
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    retries=retries,
                ),
                endpoint_url=cfg.endpoint_url,
            )
        return ibm_boto3.client(
            "s3",
            aws_access_key_id=cfg.access_key_id,
            aws_secret_access_key=cfg.secret_access_key,
            endpoint_url=cfg.endpoint_url,
            region_name=cfg.region or "us-south",
            config=Config(
                signature_version="s3v4",
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                retries=retries,
                s3={"addressing_style": "path"},
            ),
        )

    def get_conn(self) -> Any:
        return self.client

    # -- error mapping -----------------------------------------------------------------------
    def _map_error(self, exc: BaseException, what: str) -> AirflowException:
        from ibm_botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message") or str(exc)
            if code in _NOT_FOUND_CODES or status == 404:
                return IbmCloudNotFoundError(f"{what}: not found ({code}: {message})")
            if code in _AUTH_CODES or status in (401, 403):
                return IbmCloudPermanentError(
                    f"{what}: COS denied access ({code}: {message}); check the HMAC keys (login/password) "
                    f"or API key of connection '{self.cos_conn_id}' and the bucket's permissions",
                    status_code=status,
                )
            return IbmCloudApiError(f"{what}: COS error ({code}: {message})", status_code=status)
        if isinstance(exc, EndpointConnectionError):
            return IbmCloudApiError(
                f"{what}: cannot reach COS at {self.config.endpoint_url}; check extra 'endpoint_url' of "
                f"connection '{self.cos_conn_id}'"
            )
        if isinstance(exc, BotoCoreError):
            return IbmCloudApiError(f"{what}: {type(exc).__name__}: {exc}")
        return map_api_error(exc, what, self.cos_conn_id)

    # -- objects -----------------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """Object metadata (``ETag``, ``ContentLength``, ``LastModified``...) or ``None`` if absent."""
        try:
            return self._call(
                f"head cos://{bucket}/{key}", lambda: self.client.head_object(Bucket=bucket, Key=key)
            )
        except IbmCloudNotFoundError:
            return None

    def read_bytes(self, bucket: str, key: str) -> bytes | None:
        try:
            resp = self._call(
                f"read cos://{bucket}/{key}", lambda: self.client.get_object(Bucket=bucket, Key=key)
            )
        except IbmCloudNotFoundError:
            return None
        data = resp["Body"].read()
        report_read(self, bucket, key)
        return data

    def read_text(self, bucket: str, key: str) -> str | None:
        data = self.read_bytes(bucket, key)
        return None if data is None else data.decode("utf-8", errors="replace")

    def read_json(self, bucket: str, key: str) -> Any:
        """Parsed JSON, or ``None`` if the object does not exist."""
        text = self.read_text(bucket, key)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise AirflowException(f"cos://{bucket}/{key} is not valid JSON: {exc}") from exc

    def upload_bytes(self, bucket: str, key: str, data: bytes | str, content_type: str | None = None) -> None:
        body = data.encode() if isinstance(data, str) else data
        extra = {"ContentType": content_type} if content_type else {}
        self._call(
            f"upload cos://{bucket}/{key}",
            lambda: self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra),
        )
        report_write(self, bucket, key)

    def upload_file(self, bucket: str, key: str, path: str | os.PathLike[str]) -> None:
        self._call(
            f"upload {path} to cos://{bucket}/{key}", lambda: self.client.upload_file(str(path), bucket, key)
        )
        report_write(self, bucket, key)

    def copy(self, bucket: str, source_key: str, dest_key: str) -> None:
        """Server-side copy inside ``bucket`` (COS copies the bytes; nothing passes through Airflow)."""
        self._call(
            f"copy cos://{bucket}/{source_key} to {dest_key}",
            lambda: self.client.copy_object(
                Bucket=bucket, Key=dest_key, CopySource={"Bucket": bucket, "Key": source_key}
            ),
        )
        report_read(self, bucket, source_key)
        report_write(self, bucket, dest_key)

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        """Delete ``keys`` (absent keys are fine), in batches of the S3 limit of 1000."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                f"delete {len(batch)} object(s) in cos://{bucket}",
                lambda batch=batch: self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch}),
            )

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        def page_all() -> list[str]:  # a retry lists again from the first page
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
            return [obj["Key"] for page in pages for obj in page.get("Contents") or []]

        return self._call(f"list cos://{bucket}/{prefix}", page_all)

    def download_prefix(self, bucket: str, prefix: str, local_dir: str | os.PathLike[str]) -> list[Path]:
        """Download every object under ``prefix`` into ``local_dir`` (relative paths kept)."""
        root = Path(local_dir).resolve()
        out = []
        for key in self.list_keys(bucket, prefix):
            rel = key[len(prefix) :].lstrip("/") or Path(key).name
            target = (root / rel).resolve()
            if root not in target.parents and target != root:
                raise AirflowException(f"refusing to write {key!r} outside {root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            self._call(
                f"download cos://{bucket}/{key}",
                lambda k=key, t=target: self.client.download_file(bucket, k, str(t)),
            )
            report_read(self, bucket, key)
            out.append(target)
        return out

    def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket if it does not exist; ``True`` when it was created."""
        try:
            self._call(f"head bucket {bucket}", lambda: self.client.head_bucket(Bucket=bucket))
            return False
        except IbmCloudNotFoundError:
            pass
        try:
            self._call(f"create bucket {bucket}", lambda: self.client.create_bucket(Bucket=bucket))
        except IbmCloudApiError as exc:
            # S3 servers that want the endpoint's region as location constraint (IBM accepts none).
            if "LocationConstraint" not in str(exc):
                raise
            region = self.client.meta.region_name
            self._call(
                f"create bucket {bucket}",
                lambda: self.client.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
                ),
            )
        self.log.info("Created bucket %s", bucket)
        return True

    def upload_directory_as_targz(
        self, bucket: str, local_dir: str | os.PathLike[str], key: str
    ) -> dict[str, Any]:
        """Pack ``local_dir`` (symlinks dereferenced, caches left out) as tar.gz and upload it to ``key``.

        Returns ``{"key", "size", "sha256"}``.
        """
        root = Path(local_dir)
        if not root.is_dir():
            raise AirflowException(f"{root} is not a directory")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", dereference=True) as tar:
            for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                dirnames[:] = sorted(
                    d for d in dirnames if d not in {"__pycache__", ".git", ".venv", ".pytest_cache"}
                )
                for name in sorted(filenames):
                    if name.endswith((".pyc", ".pyo")):
                        continue
                    path = Path(dirpath) / name
                    info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
        data = buf.getvalue()
        self.upload_bytes(bucket, key, data, content_type="application/gzip")
        return {"key": key, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

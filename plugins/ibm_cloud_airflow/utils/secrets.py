"""Connections and the secrets they hold.

* :func:`get_connection`: the connection lookup of every hook; its password is registered with
  Airflow's secrets masker, and a missing connection says how to define it.
* :func:`mask_secret`: register a value with the masker (best effort outside a task).
* Secret references: ``"<conn_id>:password"`` style pointers resolved at execute time. Operators
  take references instead of secret values so that secrets never appear in DAG files, rendered
  template fields or XCom. Supported forms: ``"<conn_id>:login"``, ``"<conn_id>:password"``,
  ``"<conn_id>:host"``, ``"<conn_id>:schema"``, ``"<conn_id>:extra.<key>"``, and ``""`` (an empty
  value).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk.exceptions import AirflowNotFoundException

from ibm_cloud_airflow.exceptions import IbmCloudConfigError

log = logging.getLogger(__name__)

_FIELDS = ("login", "password", "host", "schema")


def mask_secret(value: Any) -> None:
    """Have Airflow's secrets masker redact ``value`` from logs (best effort outside a task)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret as airflow_mask_secret

        airflow_mask_secret(value)
    except Exception:  # pragma: no cover - masking is best effort outside a task
        log.debug("could not register a secret with the masker", exc_info=True)


def get_connection(conn_id: str) -> Any:
    """``BaseHook.get_connection`` with an error that says what to do when the connection is absent."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as err:
        raise IbmCloudConfigError(
            f"Connection '{conn_id}' is not defined; create it (UI, CLI or the environment variable "
            f"AIRFLOW_CONN_{conn_id.upper()}) as described in docs/provider.md"
        ) from err
    mask_secret(conn.password)
    return conn


def resolve_secret_reference(reference: str | None, *, variable: str = "secret") -> str:
    """Resolve one reference (see module doc). Errors never echo the reference's value."""
    if reference is None or reference == "":
        return ""
    if not isinstance(reference, str):
        raise IbmCloudConfigError(f"secure variable {variable!r}: the reference must be a string")
    conn_id, sep, field = reference.partition(":")
    if not sep or not conn_id or not (field in _FIELDS or (field.startswith("extra.") and len(field) > 6)):
        raise IbmCloudConfigError(
            f"secure variable {variable!r} is not a secret reference; pass '<conn_id>:password', "
            "'<conn_id>:login' or '<conn_id>:extra.<key>' (the value is read from that Airflow connection)"
        )
    conn = get_connection(conn_id)
    if field.startswith("extra."):
        key = field[len("extra.") :]
        extra = conn.extra_dejson or {}
        if key not in extra:
            raise IbmCloudConfigError(
                f"secure variable {variable!r}: connection '{conn_id}' has no extra {key!r}; add it"
            )
        value = extra[key]
        value = "" if value is None else str(value)
    else:
        value = getattr(conn, field) or ""
    mask_secret(value)
    return value


def resolve_secret_references(references: Mapping[str, str] | None) -> dict[str, str]:
    return {name: resolve_secret_reference(ref, variable=name) for name, ref in (references or {}).items()}

"""Secret references: ``"<conn_id>:password"`` style pointers resolved at execute time.

Operators take references instead of secret values so that secrets never appear in DAG files,
rendered template fields or XCom. Supported forms: ``"<conn_id>:login"``, ``"<conn_id>:password"``,
``"<conn_id>:host"``, ``"<conn_id>:schema"``, ``"<conn_id>:extra.<key>"``, and ``""`` (an empty value).
"""

from __future__ import annotations

from collections.abc import Mapping

from ibm_cloud_airflow.hooks.base import IbmCloudConfigError, _mask, get_connection

_FIELDS = ("login", "password", "host", "schema")


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
    _mask(value)
    return value


def resolve_secret_references(references: Mapping[str, str] | None) -> dict[str, str]:
    return {name: resolve_secret_reference(ref, variable=name) for name, ref in (references or {}).items()}

"""Run identity: the slug, COS prefix and tags that name everything a DAG run creates.

See ``docs/architecture.md`` ("Run identity").
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

SLUG_MAX_LEN = 40
_HASH_LEN = 8
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def _sanitize(text: str) -> str:
    return _NOT_ALLOWED.sub("-", text.lower()).strip("-")


def run_slug(dag_id: str, run_id: str) -> str:
    """Return the run slug: ``[a-z0-9-]``, starts with a letter, at most 40 chars, ends in 8 hex.

    The readable part is the sanitised ``run_id`` (truncated); the last 8 characters are the first
    8 hex digits of ``sha256(dag_id + "\\n" + run_id)``, so runs whose ids sanitise alike (or two DAGs
    with the same run id) still get different slugs.
    """
    if not dag_id or not run_id:
        raise ValueError("run_slug needs a non-empty dag_id and run_id")
    digest = hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:_HASH_LEN]
    readable = _sanitize(run_id)
    if not readable or not readable[0].isalpha():
        readable = f"r-{readable}" if readable else "r"
    readable = readable[: SLUG_MAX_LEN - _HASH_LEN - 1].rstrip("-")
    return f"{readable}-{digest}"


def run_prefix(output_prefix: str, dag_id: str, slug: str) -> str:
    """Return the run's COS prefix ``<output_prefix>/<dag_id>/<slug>/`` (no leading slash)."""
    parts = [p for p in (output_prefix.strip("/"), dag_id.strip("/"), slug.strip("/")) if p]
    return "/".join(parts) + "/"


def format_deadline(deadline: datetime | str) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC for a datetime or an RFC 3339 string."""
    if isinstance(deadline, str):
        deadline = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    return deadline.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_tags(slug: str, deadline: datetime | str) -> list[str]:
    """Tags for every resource of the run: ``airflow-run:<slug>`` and ``ttl:<YYYYMMDDTHHMMSSZ>``."""
    return [f"airflow-run:{slug}", f"ttl:{format_deadline(deadline)}"]


_DESCRIPTION = "Airflow run dag_id={dag_id} run_id={run_id}"
_DESCRIPTION_RE = re.compile(r"Airflow run dag_id=(?P<dag_id>\S+) run_id=(?P<run_id>\S+)")


def run_description(dag_id: str, run_id: str) -> str:
    """The workspace description that names the Airflow run (the reaper looks the run up by it)."""
    return _DESCRIPTION.format(dag_id=dag_id, run_id=run_id)


def parse_run_description(text: str | None) -> tuple[str, str] | None:
    """``(dag_id, run_id)`` from :func:`run_description` text, or None."""
    match = _DESCRIPTION_RE.search(text or "")
    return (match["dag_id"], match["run_id"]) if match else None

"""Run identity: a slug and a COS prefix per Airflow run, and a description that names the run.

The tags a pipeline puts on what a run creates are the pipeline's own (the shipped DAG's are in
``gpu_pipeline/naming.py``). See ``docs/provider.md`` ("Run identity").
"""

from __future__ import annotations

import hashlib
import re

SLUG_MAX_LEN = 40
_HASH_LEN = 8
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")
#: What :func:`run_slug` returns: ``[a-z0-9-]``, starts with a letter, ends in ``-`` and 8 hex digits.
SLUG_RE = re.compile(r"^[a-z][a-z0-9-]*-[0-9a-f]{8}$")


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


_DESCRIPTION = "Airflow run dag_id={dag_id} run_id={run_id}"
_DESCRIPTION_RE = re.compile(r"Airflow run dag_id=(?P<dag_id>\S+) run_id=(?P<run_id>\S+)")


def run_description(dag_id: str, run_id: str) -> str:
    """The workspace description that names the Airflow run (the reaper looks the run up by it)."""
    return _DESCRIPTION.format(dag_id=dag_id, run_id=run_id)


def parse_run_description(text: str | None) -> tuple[str, str] | None:
    """``(dag_id, run_id)`` from :func:`run_description` text, or None."""
    match = _DESCRIPTION_RE.search(text or "")
    return (match["dag_id"], match["run_id"]) if match else None

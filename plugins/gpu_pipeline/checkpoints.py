"""The Airflow side of the workload's training checkpoints (``workload/checkpoints.py``).

The servers save checkpoints under ``<server prefix>checkpoints/`` and can neither list nor delete
objects (their trusted profile holds Object Writer and Object Reader only), so what a re-run must
keep and what a finished run leaves behind is Airflow's to decide, with its own credentials:

* before the servers of a new attempt exist, only the stale markers go
  (:func:`stale_markers`): the checkpoints stay, so that the attempt resumes from them;
* when the run's results are final (every awaited marker is a ``_SUCCESS``), the report deletes the
  checkpoints, unless the run parameter ``keep_checkpoints`` says to keep them
  (:func:`finish_checkpoints`). A run that did not succeed keeps them: clearing it resumes training.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

CHECKPOINT_FOLDER = "checkpoints/"
MARKERS = ("/_SUCCESS", "/_FAILED")


def stale_markers(keys: list[str]) -> list[str]:
    """The keys a new attempt must delete before its servers exist: the completion markers only.

    Checkpoints (``.../checkpoints/slot-<n>/manifest.json``, ``state.npz``), the model and the other
    artifacts are kept: the servers overwrite what they rewrite, and resume from the checkpoints.
    """
    return [k for k in keys if k.endswith(MARKERS)]


def checkpoint_prefixes(plan: dict[str, Any]) -> list[str]:
    """Every server's checkpoint folder (a multi-worker run's are all in ``vm-0``'s)."""
    return [f"{server}{CHECKPOINT_FOLDER}" for server in plan["server_prefixes"]]


def finish_checkpoints(cos: Any, plan: dict[str, Any], *, final: bool) -> dict[str, Any]:
    """Delete the run's checkpoints when its results are ``final``, unless the run keeps them.

    ``cos`` is a :class:`~ibm_cloud_airflow.hooks.cos.CosHook`. Returns what the report shows:
    ``{"state": "deleted" | "kept" | "none", "objects": n, "prefixes": [...], "reason"}``.
    """
    bucket = plan["bucket"]
    prefixes = checkpoint_prefixes(plan)
    where = [f"cos://{bucket}/{prefix}" for prefix in prefixes]
    try:
        keys = [key for prefix in prefixes for key in cos.list_keys(bucket, prefix)]
        if not keys:
            return {"state": "none", "objects": 0, "prefixes": where}
        if not final:
            reason = "the run's results are not final: clearing the run resumes from them"
            return {"state": "kept", "objects": len(keys), "prefixes": where, "reason": reason}
        if plan.get("keep_checkpoints"):
            return {"state": "kept", "objects": len(keys), "prefixes": where, "reason": "keep_checkpoints"}
        cos.delete_keys(bucket, keys)
    except Exception as exc:  # storage, not servers: the report is still written, and says so
        log.warning("could not clean up the checkpoints in %s: %s", ", ".join(where), exc)
        return {"state": "error", "prefixes": where, "reason": f"{type(exc).__name__}: {exc}"}
    return {"state": "deleted", "objects": len(keys), "prefixes": where}

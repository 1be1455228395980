"""The training wait's liveness check: is each server still at work alive? (VPC API).

The pipeline names its servers ``<slug>-vm-<i>``, and server ``vm-<i>`` writes its markers under the
run's ``vm-<i>/`` folder. A server that stopped, or that is gone, without its marker will never
write it: the workload powers its server off when it cannot write any marker (COS refused its
writes, or is unreachable), and a lost host or a server deleted by hand leaves no server at all.
The provider's COS watch runs :func:`lost_servers` by import path (on a worker, or in the
triggerer) every ``interval_s`` while it waits: :func:`liveness_check` builds that check.
"""

from __future__ import annotations

import posixpath
from typing import Any

from ibm_cloud_airflow.utils.cos_watch import LivenessCheck, WatchResult, WatchStatus

#: VPC instance states of a server that has powered off (or is doing so).
STOPPED_STATES = ("stopping", "stopped")
#: :attr:`WatchResult.reason` of a lost result: a server stopped, or no server at all.
STOPPED = "stopped"
GONE = "gone"


def server_prefix(slug: str) -> str:
    """What every server name of the run starts with: ``<slug>-vm-``."""
    return f"{slug}-vm-"


def run_servers(vpc_hook: Any, slug: str) -> list[dict[str, Any]]:
    """The run's servers, as the VPC API lists them (one list call)."""
    prefix = server_prefix(slug)
    return [i for i in vpc_hook.list_all("instance") if str(i.get("name") or "").startswith(prefix)]


def liveness_check(ibm_conn_id: str, slug: str, interval_s: float) -> LivenessCheck:
    """The check of a run's servers (``slug`` may be a template, rendered with the sensor's fields)."""
    return LivenessCheck(
        "gpu_pipeline.server_check.lost_servers", {"ibm_conn_id": ibm_conn_id, "slug": slug}, interval_s
    )


def lost_servers(pending: list[str], *, ibm_conn_id: str, slug: str) -> WatchResult | None:
    """A ``lost`` result when a server of a folder still at work has stopped or is gone, else None."""
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    return find_lost(run_servers(VpcHook(str(ibm_conn_id)), str(slug)), str(slug), pending)


def find_lost(servers: list[dict[str, Any]], slug: str, pending: list[str]) -> WatchResult | None:
    """The check on a listing: stopped servers first (``reason`` :data:`STOPPED`), else gone ones."""
    status_of = {str(s.get("name") or ""): s.get("status") for s in servers}
    stopped, missing = [], []
    for folder in pending:
        name = f"{slug}-{posixpath.basename(folder)}"
        if name not in status_of:
            missing.append((name, "gone", folder + "/"))
        elif status_of[name] in STOPPED_STATES:
            stopped.append((name, status_of[name], folder + "/"))
    found = stopped or missing
    if not found:
        return None
    name, status, folder = found[0]
    others = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    why = (
        "it powers itself off when it cannot write to COS"
        if stopped
        else "deleted, or lost with its host; its marker never came"
    )
    return WatchResult(
        WatchStatus.LOST,
        f"Server {name} is {status} without a marker in {folder}{others}: {why}",
        lost=tuple(s[0] for s in found),
        reason=STOPPED if stopped else GONE,
    )

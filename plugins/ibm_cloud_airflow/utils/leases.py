"""Leases on shared Schematics workspaces: a run that adopts a workspace tags it ``airflow-lease:<holder>``.

This is policy (who may use a workspace, who waits), so it lives here and not in the hook, which
only reads and writes the workspace's tags. Two runs that tag the same workspace at once both see
each other's tag; the smaller tag keeps the lease and the other backs off and waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudNotFoundError

if TYPE_CHECKING:
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook

LEASE_TAG_PREFIX = "airflow-lease:"


def lease_tags(workspace: dict[str, Any]) -> list[str]:
    """The workspace's lease tags (any holder)."""
    return [t for t in workspace.get("tags") or [] if str(t).startswith(LEASE_TAG_PREFIX)]


def acquire_lease(
    hook: SchematicsHook,
    workspace_id: str,
    holder: str,
    *,
    wait_s: float = 1800.0,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Tag ``airflow-lease:<holder>`` onto a shared workspace, waiting while another holder has one."""
    tag = LEASE_TAG_PREFIX + holder
    deadline = time.monotonic() + wait_s
    while True:
        workspace = hook.get_workspace(workspace_id)
        tags = list(workspace.get("tags") or [])
        others = [t for t in lease_tags(workspace) if t != tag]
        if not others:
            if tag not in tags:
                hook.set_workspace_tags(workspace_id, [*tags, tag])
                workspace = hook.get_workspace(workspace_id)
                tags = list(workspace.get("tags") or [])
                others = [t for t in lease_tags(workspace) if t != tag]
            if tag in tags and not others:
                hook.log.info("Holding lease %r on workspace %s", tag, workspace_id)
                return workspace
            if tag in tags and others and min([tag, *others]) != tag:
                # Two holders raced; the smaller tag wins, the other backs off.
                hook.set_workspace_tags(workspace_id, [t for t in tags if t != tag])
        if time.monotonic() + poll_s > deadline:
            raise IbmCloudApiError(
                f"workspace {workspace_id} is leased by {others} for more than {wait_s:.0f} s; wait for "
                "that run to finish or release the lease tag"
            )
        hook.log.info("Workspace %s is leased by %s; waiting %.0f s", workspace_id, others, poll_s)
        sleep(poll_s)


def release_lease(hook: SchematicsHook, workspace_id: str, holder: str | None = None) -> bool:
    """Remove ``airflow-lease:<holder>`` (or every lease tag when ``holder`` is None)."""
    try:
        workspace = hook.get_workspace(workspace_id)
    except IbmCloudNotFoundError:
        return False
    tags = list(workspace.get("tags") or [])
    released = {t for t in lease_tags(workspace) if holder is None or t == LEASE_TAG_PREFIX + holder}
    if not released:
        return False
    hook.set_workspace_tags(workspace_id, [t for t in tags if t not in released])
    hook.log.info("Released lease on workspace %s", workspace_id)
    return True

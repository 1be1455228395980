"""The lease protocol on shared workspaces, over a hook whose workspace tags live in memory."""

from __future__ import annotations

from unittest import mock

import pytest

from ibm_cloud_airflow.exceptions import IbmCloudApiError, IbmCloudNotFoundError
from ibm_cloud_airflow.utils.leases import acquire_lease, lease_tags, release_lease


def tag_store(tags):
    """A hook whose one workspace's tags are ``tags`` (a list changed in place)."""
    hook = mock.MagicMock()
    hook.get_workspace.side_effect = lambda ws: {"id": ws, "tags": list(tags)}
    hook.set_workspace_tags.side_effect = lambda ws, new: tags.__setitem__(slice(None), new)
    return hook


def test_a_lease_held_by_another_run_is_waited_for_then_taken_and_released():
    tags = ["keep", "airflow-lease:other"]
    hook, sleeps = tag_store(tags), []
    with pytest.raises(IbmCloudApiError, match="leased by"):
        acquire_lease(hook, "w", "me", wait_s=0, poll_s=1, sleep=sleeps.append)
    assert tags == ["keep", "airflow-lease:other"]  # nothing changed while another holds it
    assert release_lease(hook, "w", "other") is True
    acquire_lease(hook, "w", "me", wait_s=0, poll_s=1)
    assert tags == ["keep", "airflow-lease:me"]
    assert lease_tags({"tags": tags}) == ["airflow-lease:me"]
    assert release_lease(hook, "w", "me") is True and tags == ["keep"]
    assert release_lease(hook, "w", "me") is False


def test_two_runs_racing_for_a_lease_the_smaller_tag_keeps_it():
    # "b" tags the workspace at the same moment as "a": both tags are there when "b" reads back.
    tags = ["airflow-lease:a"]
    hook = tag_store(tags)
    hook.get_workspace.side_effect = [
        {"id": "w", "tags": []},
        {"id": "w", "tags": [*tags, "airflow-lease:b"]},
    ]
    hook.set_workspace_tags.side_effect = None
    with pytest.raises(IbmCloudApiError, match="leased by"):
        acquire_lease(hook, "w", "b", wait_s=0, poll_s=1)
    # "b" backed off: its own tag removed, "a" kept
    assert hook.set_workspace_tags.call_args_list[-1] == mock.call("w", ["airflow-lease:a"])


def test_release_without_a_holder_removes_every_lease_and_a_gone_workspace_is_nothing():
    tags = ["airflow-lease:a", "airflow-lease:b", "team"]
    hook = tag_store(tags)
    assert release_lease(hook, "w") is True and tags == ["team"]
    hook.get_workspace.side_effect = IbmCloudNotFoundError("gone")
    assert release_lease(hook, "w") is False

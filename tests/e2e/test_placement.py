"""Capacity failover end to end: real Airflow (``dag.test()``), the sandbox's Terraform and VPC.

The sandbox's ``no_capacity`` lasts across tries, as a real zone's capacity comes back in hours:
the run must move, not retry. Each case counts what is left in the sandbox afterwards.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

WORKSPACE_CREATE = "schematics POST /v1/workspaces"


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        # the instance is created, then fails to start: IBM's status reason
        ("no_capacity", "cannot_start_capacity"),
        # the create call is refused: the zone turns out not to offer the profile (issue 25)
        ("profile_not_offered", "instance_profile_not_available"),
    ],
)
def test_a_zone_that_cannot_start_the_servers_moves_the_run_to_the_next(
    fault, code, sandbox_factory, run_pipeline
):
    # us-south-1 (the run's zone) cannot start an L4 server; every other zone can.
    box = sandbox_factory(faults={fault: {"zones": ["us-south-1"]}})
    (result,) = run_pipeline(box, conf={"zone": "us-south-1"})

    assert result["dag_run_state"] == "success", result["failures"]
    placement = result["report"]["placement"]
    assert (placement["zone"], placement["gpu_profile"]) == ("us-south-2", "gx3-16x80x1l4")
    first, second = placement["attempts"]
    assert (first["zone"], first["outcome"]) == ("us-south-1", "no_capacity")
    assert code in first["error"], first["error"]
    assert first["seconds"] >= 0 and first["cost_usd"] is not None
    assert (second["zone"], second["outcome"], second["error"]) == ("us-south-2", "succeeded", None)
    # The run's cost is priced at the placement that started the servers.
    assert result["report"]["cost"] is not None
    # One workspace for the run, its variables moved; nothing left behind.
    assert box.request_counts().get(WORKSPACE_CREATE) == 1
    assert box.inventory.list() == []


def test_a_run_fails_only_once_every_placement_was_tried_and_names_each(sandbox_factory, run_pipeline):
    box = sandbox_factory(faults={"no_capacity": {"zones": "all"}})
    placements = [{"zone": "us-south-1"}, {"zone": "us-south-3", "gpu_profile": "gx3-24x120x1l40s"}]
    (result,) = run_pipeline(box, conf={"placements": placements})

    assert result["dag_run_state"] == "failed"
    assert result["tasks"]["apply"] == "failed" and result["tasks"]["destroy"] == "success"
    why = result["failures"]["apply"]
    assert why.startswith("No placement could start the servers (every placement was tried)"), why
    assert "us-south-1 (gx3-16x80x1l4): cannot_start_capacity" in why
    assert "us-south-3 (gx3-24x120x1l40s): cannot_start_capacity" in why
    attempts = result["report"]["placement"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["no_capacity", "no_capacity"]
    assert box.inventory.list() == []

"""Placements: the default failover order, the capacity errors that move a run, the attempts' record."""

from __future__ import annotations

import pytest
from gpu_pipeline.placement import (
    Placement,
    PlacementState,
    capacity_error,
    default_placements,
    explain_capacity,
    run_placements,
)

PARAMS = {"region": "us-south", "zone": "us-south-2", "gpu_profile": "gx3-16x80x1l4"}
# The provider's message for an instance that failed to start (resource_ibm_is_instance.go).
FAILED_TO_START = (
    "Error: [ERROR] Instance (0717_x) went into failed state during the operation "
    '([{"code": "cannot_start_capacity", "message": "Can\'t start instance because resource capacity '
    'is unavailable.", "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-instance-status-messages"}])'
)


def test_the_default_is_the_run_s_zone_then_the_region_s_other_zones_with_the_profile():
    assert default_placements("us-south", "us-south-2", "gx3-16x80x1l4") == [
        Placement("us-south-2", "gx3-16x80x1l4"),
        Placement("us-south-1", "gx3-16x80x1l4"),
        Placement("us-south-3", "gx3-16x80x1l4"),
    ]
    # H100 is offered in one us-south zone only: nothing to fail over to.
    assert default_placements("us-south", "us-south-1", "gx3d-160x1792x8h100") == [
        Placement("us-south-1", "gx3d-160x1792x8h100")
    ]


def test_a_run_s_own_placements_may_change_the_profile_and_are_checked():
    own = {
        **PARAMS,
        "placements": [{"zone": "us-south-3"}, {"zone": "us-south-1", "gpu_profile": "gx3-24x120x1l40s"}],
    }
    placements, problems = run_placements(own)
    assert problems == []
    assert placements == [
        Placement("us-south-3", "gx3-16x80x1l4"),
        Placement("us-south-1", "gx3-24x120x1l40s"),
    ]

    bad = {**PARAMS, "placements": [{"zone": "eu-de-1"}, {"zone": "us-south-1"}, {"zone": "us-south-1"}]}
    _, problems = run_placements(bad)
    assert any("zone 'eu-de-1' is not in region 'us-south'" in p for p in problems), problems
    assert any("listed twice" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (FAILED_TO_START, "cannot_start_capacity"),
        ('[{"code": "cannot_start_placement_group"}]', "cannot_start_placement_group"),
        (
            "CreateInstance failed: ... (status 400, code instance_profile_not_available)",
            "instance_profile_not_available",
        ),
        # Not about capacity: a quota, an image, IAM. These are not failed over.
        ("CreateInstance failed: ... put the user over quota (status 400, code over_quota)", None),
        ("Image r006-x not found (status 404, code image_not_found)", None),
        ("", None),
    ],
)
def test_only_capacity_errors_move_a_run(text, code):
    assert capacity_error(text) == code


def test_the_error_a_user_reads_is_ibm_s_reason_not_the_provider_s_paragraph():
    assert explain_capacity("cannot_start_capacity", FAILED_TO_START) == (
        "cannot_start_capacity: Can't start instance because resource capacity is unavailable."
    )


def test_the_state_survives_a_round_trip_and_says_why_it_gave_up():
    state = PlacementState([Placement("us-south-1", "p"), Placement("us-south-2", "p")], deadline=None)
    state.start()
    state.end("no_capacity", error="cannot_start_capacity: no")
    state.index += 1
    state.start()
    state.end("no_capacity", error="cannot_start_capacity: none either")
    again = PlacementState.from_dict(state.to_dict())
    assert again.exhausted and not again.timed_out
    assert [a.zone for a in again.attempts] == ["us-south-1", "us-south-2"]
    why = again.why_exhausted()
    assert "every placement was tried" in why
    assert "us-south-1 (p): cannot_start_capacity: no" in why and "us-south-2 (p)" in why
    summary = again.summary()
    assert summary["zone"] == "us-south-2" and summary["attempts"][0]["started_at"].endswith("Z")


def test_a_passed_deadline_stops_the_failover_before_the_list_ends():
    state = PlacementState([Placement("a-b-1", "p"), Placement("a-b-2", "p")], deadline=0.0)
    state.start()
    state.end("no_capacity", error="cannot_start_capacity: no")
    assert state.timed_out and not state.exhausted
    assert "placement_timeout_minutes passed" in state.why_exhausted()

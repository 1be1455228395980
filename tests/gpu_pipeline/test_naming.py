"""The pipeline's names and tags: what the run plan writes is what the reaper reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from gpu_pipeline.naming import (
    belongs_to_run,
    format_deadline,
    lease_holder_slug,
    parse_ttl,
    profile_names_run,
    run_tags,
    slug_of_trusted_profile,
    slug_of_workspace,
    tag_value,
    trusted_profile_name,
    workspace_name,
)

from ibm_cloud_airflow.utils.leases import LEASE_TAG_PREFIX
from ibm_cloud_airflow.utils.run_identity import run_slug

SLUG = run_slug("ibm_gpu_workload", "manual__2026-12-01T17:03:00+00:00")


def test_run_tags() -> None:
    deadline = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    assert run_tags("s", deadline) == ["airflow-run:s", "ttl:20261201T170300Z"]
    assert run_tags("s", "2026-12-01T17:03:00Z") == ["airflow-run:s", "ttl:20261201T170300Z"]
    other_tz = datetime(2026, 12, 1, 18, 3, tzinfo=timezone(timedelta(hours=1)))
    assert run_tags("s", other_tz)[1] == "ttl:20261201T170300Z"


def test_the_tags_read_back() -> None:
    deadline = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    tags = ["other:x", *run_tags(SLUG, deadline)]
    assert tag_value(tags, "airflow-run:") == SLUG
    assert parse_ttl(tag_value(tags, "ttl:")) == deadline
    assert parse_ttl("tomorrow") is None and parse_ttl(None) is None
    assert format_deadline(deadline) == "20261201T170300Z"


def test_workspace_and_profile_names_hold_the_slug() -> None:
    assert workspace_name(SLUG) == f"airflow-{SLUG}"
    assert slug_of_workspace(workspace_name(SLUG)) == SLUG
    assert slug_of_workspace("airflow-not-a-slug") is None and slug_of_workspace(SLUG) is None
    assert trusted_profile_name(SLUG) == f"{SLUG}-vm-profile"
    assert slug_of_trusted_profile(trusted_profile_name(SLUG)) == SLUG
    assert slug_of_trusted_profile(f"{SLUG}-profile") is None
    assert profile_names_run(f"GPU servers of Airflow run {SLUG}: write outputs", SLUG)
    assert not profile_names_run(None, SLUG)


def test_a_lease_names_the_holding_runs_workspace() -> None:
    assert lease_holder_slug(LEASE_TAG_PREFIX + workspace_name(SLUG)) == SLUG
    assert lease_holder_slug(LEASE_TAG_PREFIX + "someone-else") is None
    assert lease_holder_slug(f"airflow-run:{SLUG}") is None


def test_belongs_to_run() -> None:
    assert belongs_to_run(f"{SLUG}-vpc", SLUG) and belongs_to_run(SLUG, SLUG)
    assert not belongs_to_run(f"{SLUG}x", SLUG) and not belongs_to_run(None, SLUG)

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ibm_cloud_airflow.utils.run_identity import run_prefix, run_slug, run_tags

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]*-[0-9a-f]{8}$")


@pytest.mark.parametrize(
    "run_id",
    [
        "manual__2026-12-01T05:08:38.123456+00:00",
        "scheduled__2026-12-01T00:00:00+00:00",
        "2026-12-01",
        "___",
        "Ünïcödé run ✓",
        "x" * 300,
        "UPPER_case--run",
    ],
)
def test_slug_shape(run_id: str) -> None:
    slug = run_slug("ibm_gpu_workload", run_id)
    assert SLUG_RE.match(slug), slug
    assert len(slug) <= 40
    assert "--" not in slug


def test_slug_is_deterministic_and_unique() -> None:
    assert run_slug("d", "manual__1") == run_slug("d", "manual__1")
    # ids that sanitise alike still differ by their hash
    assert run_slug("d", "run.1") != run_slug("d", "run_1")
    assert run_slug("d1", "r") != run_slug("d2", "r")
    rnd = random.Random(7)
    slugs = {
        run_slug("dag", "".join(rnd.choice(string.printable) for _ in range(rnd.randint(1, 60))))
        for _ in range(2000)
    }
    assert all(SLUG_RE.match(s) and len(s) <= 40 for s in slugs)
    assert len(slugs) > 1990


def test_slug_rejects_empty() -> None:
    with pytest.raises(ValueError):
        run_slug("", "x")


def test_prefix_and_tags() -> None:
    assert run_prefix("gpu-runs", "dag", "slug-1") == "gpu-runs/dag/slug-1/"
    assert run_prefix("/gpu-runs/", "dag", "s") == "gpu-runs/dag/s/"
    assert run_prefix("", "dag", "s") == "dag/s/"
    deadline = datetime(2026, 12, 1, 17, 3, tzinfo=UTC)
    assert run_tags("s", deadline) == ["airflow-run:s", "ttl:20261201T170300Z"]
    assert run_tags("s", "2026-12-01T17:03:00Z") == ["airflow-run:s", "ttl:20261201T170300Z"]
    other_tz = datetime(2026, 12, 1, 18, 3, tzinfo=timezone(timedelta(hours=1)))
    assert run_tags("s", other_tz)[1] == "ttl:20261201T170300Z"


def test_the_workspace_description_names_the_run():
    from ibm_cloud_airflow.utils.run_identity import parse_run_description, run_description

    text = run_description("ibm_gpu_workload", "manual__2026-12-02T00:00:00.123+00:00")
    assert parse_run_description(text) == ("ibm_gpu_workload", "manual__2026-12-02T00:00:00.123+00:00")
    assert parse_run_description("Created by Airflow (airflow-x)") is None

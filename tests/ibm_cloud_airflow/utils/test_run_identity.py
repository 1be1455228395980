from __future__ import annotations

import random
import re
import string

import pytest

from ibm_cloud_airflow.utils import run_identity
from ibm_cloud_airflow.utils.run_identity import run_prefix, run_slug

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


def test_the_published_slug_pattern_is_the_slug_format() -> None:
    # The reaper recognises slugs by it (gpu_pipeline/naming.py).
    assert run_identity.SLUG_RE.pattern == SLUG_RE.pattern


def test_slug_rejects_empty() -> None:
    with pytest.raises(ValueError):
        run_slug("", "x")


def test_prefix() -> None:
    assert run_prefix("gpu-runs", "dag", "slug-1") == "gpu-runs/dag/slug-1/"
    assert run_prefix("/gpu-runs/", "dag", "s") == "gpu-runs/dag/s/"
    assert run_prefix("", "dag", "s") == "dag/s/"


def test_the_workspace_description_names_the_run():
    from ibm_cloud_airflow.utils.run_identity import parse_run_description, run_description

    text = run_description("ibm_gpu_workload", "manual__2026-12-02T00:00:00.123+00:00")
    assert parse_run_description(text) == ("ibm_gpu_workload", "manual__2026-12-02T00:00:00.123+00:00")
    assert parse_run_description("Created by Airflow (airflow-x)") is None

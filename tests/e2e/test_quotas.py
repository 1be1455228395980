"""Quotas checked before anything exists, end to end: real Airflow, real SDKs, the sandbox.

``make demo CONF='{"vm_count": 3, "gpu_profile": "gx3d-160x1792x8h100"}'`` asks for 480 vCPU and
24 GPUs in one region, over IBM's default quotas (200 vCPU, 16 GPUs): validate fails naming the
quotas, and no Schematics workspace is created. Cheap: the run ends at its first task.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_a_run_over_the_regions_quotas_fails_at_validate_naming_them(template_db, tmp_path: Path):
    from scripts.demo import run_demo

    conf = {"vm_count": 3, "gpu_profile": "gx3d-160x1792x8h100"}
    summary = run_demo(None, conf=conf, output_root=tmp_path, template_db=template_db)

    assert summary["dag_run_state"] == "failed" and "validate" in summary["failed_tasks"], summary
    assert summary["workspaces_created"] == 0  # no Schematics create call at all
    why = summary["why"]
    assert why.startswith("validate: Invalid run, nothing was created. Fix: quota: 3 x gx3d-160x1792x8h100 ")
    assert "480 vCPU (3 x 160), over the quota of 200 (IBM's default)" in why, why
    assert "24 GPUs (3 x 8), over the quota of 16 (IBM's default)" in why, why
    assert "support case" in why and "[ibm_cloud] quota_vcpu" in why, why
    assert summary["leaked_resources"] == 0

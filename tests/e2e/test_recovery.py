"""Lost servers are replaced and the training resumes from its checkpoint; a failed workload is not.

Real Airflow (``dag.test()``), the sandbox's Terraform, VPC and COS, and the real training job. The
sandbox fault ``server_lost`` deletes the run's first server right after its first valid checkpoint,
with no marker, as a lost host or a server deleted by hand would.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

EPOCHS = 8


def read_json(box, bucket: str, key: str) -> dict:
    return json.loads(box.cos_client().get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_lost_server_is_replaced_and_the_training_resumes_from_its_checkpoint(
    sandbox_factory, run_pipeline
):
    box = sandbox_factory(faults=["server_lost"])
    (result,) = run_pipeline(box, conf={"epochs": EPOCHS, "checkpoint_every_epochs": 1})

    assert result["dag_run_state"] == "success", result["failures"]
    report = result["report"]
    (recovery,) = report["recoveries"]
    assert recovery["counted"] is True and "gone without a marker" in recovery["reason"], recovery
    plan = result["plan"]
    metrics = read_json(box, plan["bucket"], f"{plan['prefix']}vm-0/metrics.json")
    # Resumed after the checkpoint, not from epoch 0: at most one interval trained twice.
    assert metrics["resumed_from_epoch"] >= 1
    assert metrics["epochs_trained"] == EPOCHS - metrics["resumed_from_epoch"]
    # The training curve goes on across the resume: one point per epoch, none lost or repeated.
    assert all(len(values) == EPOCHS for values in metrics["history"].values()), metrics["history"]
    assert report["resumed_from_epoch"]["vm-0"] == metrics["resumed_from_epoch"]
    assert box.inventory.list() == []


def test_a_workload_that_wrote_failed_is_not_recovered(sandbox_factory, run_pipeline):
    box = sandbox_factory(faults=["workload_fails"])
    (result,) = run_pipeline(box)

    assert result["dag_run_state"] == "failed"
    assert result["tasks"]["wait_for_output"] == "failed"
    assert "_FAILED" in result["failures"]["wait_for_output"]
    assert result["report"]["recoveries"] == []
    assert box.inventory.list() == []


def test_no_recovery_beyond_max_recoveries(sandbox_factory, run_pipeline):
    box = sandbox_factory(faults=["server_lost"])
    (result,) = run_pipeline(box, conf={"epochs": EPOCHS, "max_recoveries": 0})

    assert result["dag_run_state"] == "failed"
    why = result["failures"]["wait_for_output"]
    assert "gone without a marker" in why and "max_recoveries" in why, why
    assert box.inventory.list() == []

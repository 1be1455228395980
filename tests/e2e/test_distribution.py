"""Several servers, end to end: one multi-worker training, a sweep, and a server that dies.

The same real pieces as test_pipeline.py (dag.test() in a child process, the IBM SDKs against the
sandbox, bootstrap.sh and train.py in the simulated servers), with two servers. In multi_worker
the two servers' train.py processes form one real MultiWorkerMirroredStrategy cluster on
loopback (sandbox/ibm/launcher.py maps their reserved IPs to loopback ports). Two epochs each, to
keep CPU time small.
"""

from __future__ import annotations

import json

import pytest

from .test_pipeline import assert_cleanup_ran, assert_nothing_left, object_keys

pytestmark = pytest.mark.e2e

CONTRACT = {"progress.json", "model.keras", "metrics.json", "training-curve.png", "manifest.json", "_SUCCESS"}


def _names(keys: set[str], server: str) -> set[str]:
    return {k.split("/", 1)[1] for k in keys if k.startswith(f"{server}/")}


def test_multi_worker_trains_one_model_over_two_servers(sandbox, run_pipeline):
    # A generous stall timeout: two trainings share the CPUs here, and epochs are slow.
    (result,) = run_pipeline(sandbox, conf={"vm_count": 2, "epochs": 2, "progress_stall_minutes": 5})

    assert result["dag_run_state"] == "success", result["failures"]
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)  # the reserved IPs and the cluster rules went with the rest
    plan = result["plan"]
    assert plan["distribution"] == "multi_worker"
    keys = object_keys(sandbox, plan["bucket"], plan["prefix"])
    assert _names(keys, "vm-0") >= CONTRACT
    assert _names(keys, "vm-1") == {"progress.json"}  # one model, from the chief
    metrics = result["report"]["metrics"]["vm-0"]
    assert metrics["workers"] == 2 and metrics["device"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert metrics["examples_per_second"]["total"] > 0 and metrics["examples_per_second"]["per_worker"] > 0
    assert metrics["global_batch_size"] == 2 * 64


def test_sweep_trains_one_trial_per_server_and_ranks_them(sandbox, run_pipeline):
    conf = {
        "vm_count": 2,
        "epochs": 2,
        "progress_stall_minutes": 5,
        "distribution": "sweep",
        "sweep": {"learning_rate": [0.01, 0.0001]},
    }
    (result,) = run_pipeline(sandbox, conf=conf)

    assert result["dag_run_state"] == "success", result["failures"]
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)
    plan = result["plan"]
    keys = object_keys(sandbox, plan["bucket"], plan["prefix"])
    assert _names(keys, "vm-0") >= CONTRACT and _names(keys, "vm-1") >= CONTRACT
    ranking = result["report"]["sweep"]["ranking"]
    assert sorted(r["learning_rate"] for r in ranking) == [0.0001, 0.01]
    assert [r["rank"] for r in ranking] == [1, 2]
    assert ranking[0]["test_accuracy"] >= ranking[1]["test_accuracy"]
    best = result["report"]["sweep"]["best"]
    assert best == ranking[0] and best["model"].endswith(f"{best['server']}/model.keras")
    assert result["report"]["distribution"] == "sweep"
    # Each server really trained its own trial: its metrics.json says with which learning rate.
    cos = sandbox.cos_client()
    for entry in ranking:
        key = f"{plan['prefix']}{entry['server']}/metrics.json"
        metrics = json.loads(cos.get_object(Bucket=plan["bucket"], Key=key)["Body"].read())
        assert metrics["params"]["learning_rate"] == entry["learning_rate"]
        assert metrics["test_accuracy"] == entry["test_accuracy"]


def test_a_dead_worker_fails_the_run_within_the_collective_timeout(sandbox_factory, run_pipeline):
    sandbox = sandbox_factory(faults=["worker_dies"])
    conf = {"vm_count": 2, "epochs": 20, "collective_timeout_seconds": 30, "progress_stall_minutes": 5}
    (result,) = run_pipeline(sandbox, conf=conf)

    assert result["dag_run_state"] == "failed"
    assert result["tasks"]["wait_for_output"] == "failed", result["tasks"]
    # The chief noticed (not the stall clock, 5 minutes here) and said why.
    assert "multi-worker training stopped" in result["failures"]["wait_for_output"], result["failures"]
    assert result["tasks"]["run_verdict"] == "failed"
    assert_cleanup_ran(result)
    assert_nothing_left(sandbox)

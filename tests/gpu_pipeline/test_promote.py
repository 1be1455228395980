"""Champion/challenger: the comparison, and the promotion's objects in a real S3 endpoint (moto)."""

from __future__ import annotations

import json

import pytest
from gpu_pipeline.model_asset import champion_prefix, model_event_extra
from gpu_pipeline.promote import compare, promote

PLAN = {
    "dag_id": "ibm_gpu_workload",
    "run_id": "manual__1",
    "slug": "manual-1-abcd1234",
    "bucket": "models-bkt",
    "prefix": "gpu-runs/ibm_gpu_workload/manual-1-abcd1234/",
    "report_key": "gpu-runs/ibm_gpu_workload/manual-1-abcd1234/run-report.json",
}


def challenger(run: str, accuracy: float | None) -> dict:
    plan = {**PLAN, "run_id": run, "slug": f"{run}-slug", "prefix": f"gpu-runs/ibm_gpu_workload/{run}-slug/"}
    metrics = {} if accuracy is None else {"test_accuracy": accuracy}
    return model_event_extra(plan, {"metrics": {"vm-0": metrics}, "cost": {"usd": 0.1}})


def test_the_champion_prefix_sits_beside_the_runs():
    assert champion_prefix(PLAN) == "gpu-runs/ibm_gpu_workload/champion/"


def test_the_model_of_a_sweep_is_its_best_trial():
    report = {"sweep": {"best": {"server": "vm-1"}}, "metrics": {"vm-1": {"test_accuracy": 0.9}}}
    extra = model_event_extra(PLAN, report)
    assert extra["model_key"] == f"{PLAN['prefix']}vm-1/model.keras"
    assert extra["metrics"] == {"test_accuracy": 0.9}


@pytest.mark.parametrize(
    ("new", "old", "promoted"),
    [(0.9, None, True), (0.9, 0.8, True), (0.8, 0.8, False), (0.7, 0.8, False), (None, 0.8, False)],
)
def test_only_a_strictly_better_model_wins(new, old, promoted):
    champion = None if old is None else {"run_id": "old", "metrics": {"test_accuracy": old}}
    won, reason = compare(challenger("new", new), champion)
    assert won is promoted, reason
    assert "test_accuracy" in reason


def test_the_champion_itself_is_not_promoted_twice():
    new = challenger("r1", 0.9)
    won, reason = compare(new, {"run_id": "r1", "metrics": {"test_accuracy": 0.5}})
    assert not won and "already the champion" in reason


@pytest.fixture
def cos(moto_url, monkeypatch):
    from ibm_cloud_airflow.hooks.cos import CosHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_COS_PROMOTE_TEST",
        json.dumps(
            {
                "conn_type": "ibm_cos",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_url},
            }
        ),
    )
    hook = CosHook("cos_promote_test")
    hook.ensure_bucket("models-bkt")
    return hook


def put_model(cos, extra: dict, weights: bytes) -> None:
    cos.upload_bytes("models-bkt", extra["model_key"], weights)
    cos.upload_bytes("models-bkt", extra["metrics_key"], json.dumps(extra["metrics"]))


def test_promotion_copies_the_better_model_and_records_every_decision(cos):
    first, worse, better = challenger("r1", 0.8), challenger("r2", 0.7), challenger("r3", 0.95)
    for extra, weights in ((first, b"m1"), (worse, b"m2"), (better, b"m3")):
        put_model(cos, extra, weights)
    prefix = first["champion_prefix"]

    assert promote(first, cos_conn_id="cos_promote_test").promoted
    assert not promote(worse, cos_conn_id="cos_promote_test").promoted
    assert cos.read_bytes("models-bkt", f"{prefix}model.keras") == b"m1"  # the worse one changed nothing
    decision = promote(better, cos_conn_id="cos_promote_test")
    assert decision.promoted and decision.champion_before["run_id"] == "r1"

    assert cos.read_bytes("models-bkt", f"{prefix}model.keras") == b"m3"
    assert cos.read_json("models-bkt", f"{prefix}metrics.json") == {"test_accuracy": 0.95}
    champion = cos.read_json("models-bkt", f"{prefix}champion.json")
    assert champion["run_id"] == "r3" and "beats the champion's 0.8000" in champion["reason"]
    decisions = sorted(k.rsplit("/", 1)[-1] for k in cos.list_keys("models-bkt", f"{prefix}decisions/"))
    assert decisions == ["r1-slug.json", "r2-slug.json", "r3-slug.json"]
    assert cos.read_json("models-bkt", f"{prefix}decisions/r2-slug.json")["promoted"] is False

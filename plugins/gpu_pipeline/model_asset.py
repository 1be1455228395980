"""The trained model as an Airflow Asset, and the champion that ``ibm_gpu_promote`` keeps.

A successful training run emits one event on its DAG's model asset (``<dag_id>.model``); the
event's ``extra`` says where the model is and how good and how costly it was, so that a DAG
scheduled on the asset needs nothing else (no TensorFlow, no XCom of another DAG).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

# The asset group the UI's Assets page lists them under.
ASSET_GROUP = "ibm-gpu-models"


def model_asset(dag_id: str) -> Asset:
    """The asset a training group in ``dag_id`` updates with each model it trains."""
    return Asset(name=f"{dag_id}.model", group=ASSET_GROUP)


def champion_asset(dag_id: str) -> Asset:
    """The asset ``ibm_gpu_promote`` updates when a new model of ``dag_id`` becomes the champion."""
    return Asset(name=f"{dag_id}.champion", group=ASSET_GROUP)


# The shipped pipeline's assets, shared by the training DAG and the promote DAG.
MODEL_ASSET = model_asset("ibm_gpu_workload")
CHAMPION_ASSET = champion_asset("ibm_gpu_workload")


def champion_prefix(plan: dict[str, Any]) -> str:
    """``<output_prefix>/<dag_id>/champion/``: beside the runs' own prefixes, shared by all runs."""
    run_part = f"{plan['slug']}/"
    return plan["prefix"][: -len(run_part)] + "champion/"


def model_event_extra(plan: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """What the model asset's event carries: where the model is, its metrics, cost and placement.

    The model is server 0's (one model in ``single`` and ``multi_worker``), or the sweep's best trial.
    """
    server = "vm-0"
    best = ((report.get("sweep") or {}).get("best")) or None
    if best:
        server = best["server"]
    model_key = f"{plan['prefix']}{server}/model.keras"
    return {
        "dag_id": plan["dag_id"],
        "run_id": plan["run_id"],
        "run_slug": plan["slug"],
        "bucket": plan["bucket"],
        "model_key": model_key,
        "model_uri": f"cos://{plan['bucket']}/{model_key}",
        "metrics_key": f"{plan['prefix']}{server}/metrics.json",
        "report_uri": f"cos://{plan['bucket']}/{plan['report_key']}",
        "champion_prefix": champion_prefix(plan),
        "metrics": (report.get("metrics") or {}).get(server) or {},
        "cost": report.get("cost"),
        "placement": report.get("placement"),
        "distribution": report.get("distribution"),
    }

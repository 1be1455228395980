"""
### Promote the better model

Runs by itself each time `ibm_gpu_workload` trains a model (its `ibm_gpu_workload.model` asset).
It compares the new model's `test_accuracy` with the current champion's, and when the new one is
better copies it to `<output_prefix>/ibm_gpu_workload/champion/` in the runs' bucket, with
`champion.json` saying which run it came from and why it won. Every comparison is recorded under
`champion/decisions/`. A promotion updates the `ibm_gpu_workload.champion` asset, for a deploy DAG
to schedule on. Needs no TensorFlow: only the metrics are compared.
"""

from __future__ import annotations

import logging

from airflow.sdk import DAG, task
from gpu_pipeline.model_asset import CHAMPION_ASSET, MODEL_ASSET

COS_CONN_ID = "ibm_cos_default"
log = logging.getLogger(__name__)

with DAG(
    dag_id="ibm_gpu_promote",
    description="Keep the better of the champion model and each newly trained one",
    doc_md=__doc__,
    schedule=[MODEL_ASSET],
    catchup=False,
    tags=["ibm-cloud", "gpu", "model"],
    default_args={"owner": "ml-platform", "retries": 2},
):

    @task(outlets=[CHAMPION_ASSET])
    def promote(triggering_asset_events=None, outlet_events=None) -> list[dict]:
        """Compare each new model (oldest first) with the champion; promote the better one."""
        from airflow.sdk.exceptions import AirflowSkipException
        from gpu_pipeline.promote import promote as promote_model

        events = list((triggering_asset_events or {}).get(MODEL_ASSET, []))
        if not events:
            raise AirflowSkipException("No new model: this run was not started by a model event.")
        decisions = [promote_model(event.extra, cos_conn_id=COS_CONN_ID) for event in events]
        for decision in decisions:
            verdict = "promoted" if decision.promoted else "not promoted"
            log.info("%s: %s: %s", decision.challenger["model_uri"], verdict, decision.reason)
        winners = [d for d in decisions if d.promoted]
        if not winners:
            raise AirflowSkipException("The champion is unchanged: no champion asset event.")
        outlet_events[CHAMPION_ASSET].extra = {**winners[-1].challenger, "reason": winners[-1].reason}
        return [d.to_dict() for d in decisions]

    promote()

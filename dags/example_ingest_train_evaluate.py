"""
### Example: training on IBM Cloud GPUs as one step of a larger DAG

`ingest` → **`train`** (the `ibm_gpu_training` task group: validate, approve, workspace, plan,
apply, wait, hold, destroy, delete, report, verdict) → `evaluate` → `publish`.

The group's last task, `train.run_verdict`, succeeds only when the model was trained and nothing
was left behind, so `evaluate` sees a finished model or does not run. `evaluate` reads the model's
metrics from the verdict's return value (the same as the model asset event's extra) and refuses a
model under `min_accuracy`. Copy this file to build your own chain; see docs/provider.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, Param, task
from gpu_pipeline.params import training_params
from gpu_pipeline.training_group import ibm_gpu_training

REPO = Path(__file__).resolve().parents[1]
COS_CONN_ID = "ibm_cos_default"

with DAG(
    dag_id="example_ingest_train_evaluate",
    description="Ingest, train on IBM Cloud GPUs (one task group), evaluate, publish",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    params={
        **training_params(epochs=3),
        "min_accuracy": Param(
            0.5,
            type="number",
            minimum=0,
            maximum=1,
            title="Minimum test accuracy",
            description="evaluate refuses a model below this.",
        ),
    },
    render_template_as_native_obj=True,
    tags=["ibm-cloud", "gpu", "example"],
    default_args={"owner": "ml-platform", "retries": 1},
):

    @task
    def ingest(params: dict) -> dict:
        """Stand-in for a team's ingest step: says which data the training will use."""
        return {"dataset": params["dataset"], "bucket": params["bucket"]}

    @task
    def evaluate(trained: dict, params: dict) -> dict:
        """Refuse a model below ``min_accuracy``; pass its location on."""
        from airflow.sdk.exceptions import AirflowFailException

        accuracy = (trained.get("metrics") or {}).get("test_accuracy")
        floor = params["min_accuracy"]
        if accuracy is None or accuracy < floor:
            raise AirflowFailException(f"{trained['model_uri']}: test_accuracy {accuracy} is below {floor}")
        return {"model_uri": trained["model_uri"], "test_accuracy": accuracy}

    @task
    def publish(evaluated: dict) -> str:
        """Stand-in for a deploy step: here, the model's location goes to the log."""
        print(f"Publishing {evaluated['model_uri']} (test_accuracy {evaluated['test_accuracy']:.4f})")
        return evaluated["model_uri"]

    train = ibm_gpu_training(
        "train",
        workload_dir=REPO / "workload",
        terraform_dir=REPO / "terraform",
        ibm_conn_id="ibm_cloud_default",
        cos_conn_id=COS_CONN_ID,
    )
    ingested = ingest()
    ingested >> train
    # The verdict's return value is the model event's extra: where the model is and its metrics.
    publish(evaluate(train.children["train.run_verdict"].output))

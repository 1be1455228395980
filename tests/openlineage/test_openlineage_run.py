"""With the OpenLineage provider installed, `make airflow` imports the DAG, a run succeeds, and
OpenLineage's events name what the run read and wrote.

Runs in .venv-openlineage (`make test` builds it: .venv plus requirements-openlineage.txt), where
Airflow registers OpenLineage's listener as soon as it starts. The whole `make airflow`
(scripts/airflow_ui.py: the sandbox, api-server, scheduler with the LocalExecutor, dag-processor,
triggerer), configured only through the caller's environment as a deployment would be:
OpenLineage's file transport and namespace (AIRFLOW__OPENLINEAGE__*), which the launcher passes on.
Without the provider the same DAG keeps its triggerer endings
(tests/ibm_cloud_airflow/utils/test_triggerer.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import airflow.providers.openlineage  # noqa: F401  (this folder runs where the provider is installed)
import pytest

from ibm_cloud_airflow.utils.run_identity import run_prefix, run_slug
from scripts.local_run import DAG_ID, DEMO_BUCKET, LOCAL_CONF

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = f"s3://{DEMO_BUCKET}"
DATASET_KEY = "datasets/digits.npz"
JOB_NAMESPACE = "ibm-gpu-lineage-test"
RUN_ID = "lineage-1"


def staged_digits() -> bytes:
    """Digits as an .npz with x_train/y_train (TensorFlow's environment has numpy and scikit-learn)."""
    script = (
        "import io, sys, numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "d = load_digits()\n"
        "buf = io.BytesIO()\n"
        "np.savez_compressed(buf, x_train=d.images.astype('uint8'), y_train=d.target)\n"
        "sys.stdout.buffer.write(buf.getvalue())\n"
    )
    python = REPO / ".venv-workload" / "bin" / "python"
    return subprocess.run([str(python), "-c", script], capture_output=True, check=True, timeout=120).stdout


def test_with_the_provider_installed_the_dag_imports_and_every_task_ends_on_a_worker(airflow_db):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.listeners.listener import get_listener_manager

    assert get_listener_manager().has_listeners  # OpenLineage's (configured by conftest.py)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    for task in bag.get_dag(DAG_ID).tasks:
        assert not getattr(task, "end_from_trigger", False), task.task_id
        assert not getattr(task, "start_from_trigger", False), task.task_id


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory) -> dict[str, Any]:
    """One run through `make airflow` with OpenLineage writing each event to a file."""
    from scripts.airflow_ui import local_airflow_ui
    from scripts.local_airflow import TERMINAL_RUN_STATES

    work = tmp_path_factory.mktemp("openlineage")
    events = work / "events"
    events.mkdir()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "AIRFLOW__OPENLINEAGE__TRANSPORT",
            json.dumps({"type": "file", "log_file_path": str(events / "ol")}),
        )
        env.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", JOB_NAMESPACE)
        with local_airflow_ui(work) as (box, af):
            box.cos_client().put_object(Bucket=DEMO_BUCKET, Key=DATASET_KEY, Body=staged_digits())
            connections = [c["connection_id"] for c in af.api("GET", "/connections")["connections"]]
            # Keyless: the servers' trusted profile reads the staged dataset through its own policy.
            conf = {**LOCAL_CONF, "dataset": f"cos://{DATASET_KEY}", "epochs": 1}
            af.trigger(DAG_ID, conf=conf, run_id=RUN_ID)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                run = next(r for r in af.dag_runs(DAG_ID) if r["dag_run_id"] == RUN_ID)
                if run["state"] in TERMINAL_RUN_STATES:
                    break
                af.check_alive()
                time.sleep(2)
            tasks = {
                ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID) if ti["dag_run_id"] == RUN_ID
            }
            logs = "".join(p.read_text(errors="replace") for p in af.log_dir.glob("*.log"))
            api_key = box.endpoints["api_key"]
        time.sleep(1)  # the last events are written by the task processes as they end
    return {
        "state": run["state"],
        "tasks": tasks,
        "events": [json.loads(p.read_text()) for p in sorted(events.iterdir())],
        "connections": connections,
        "secret_in_logs": api_key in logs,
    }


def test_the_run_succeeds_and_make_airflow_lists_its_connections(lineage_run):
    assert lineage_run["state"] == "success", lineage_run["tasks"]
    assert {"ibm_cloud_default", "ibm_cos_default"} <= set(lineage_run["connections"])
    assert not lineage_run["secret_in_logs"]


def by_task(events: list[dict]) -> dict[str, list[dict]]:
    """The run's task events by task id, in the order they happened."""
    found: dict[str, list[dict]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e["eventTime"]):
        name = event["job"]["name"]
        if event["job"]["namespace"] == JOB_NAMESPACE and name.startswith(f"{DAG_ID}."):
            found[name.removeprefix(f"{DAG_ID}.")].append(event)
    return found


def datasets(event: dict, side: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event.get(side) or []}


def test_each_task_that_ran_reports_its_start_and_its_completion(lineage_run):
    events = by_task(lineage_run["events"])
    ran = [task for task, state in lineage_run["tasks"].items() if state == "success"]
    assert {"validate", "create_workspace", "plan", "apply", "wait_for_output", "destroy", "report"} <= set(
        ran
    )
    for task in ran:
        kinds = [e["eventType"] for e in events[task]]
        assert "START" in kinds and kinds[-1] == "COMPLETE", (task, kinds)


def test_the_events_name_the_dataset_the_bundle_the_models_the_metrics_and_the_report(lineage_run):
    events = by_task(lineage_run["events"])
    prefix = run_prefix(LOCAL_CONF.get("output_prefix", "gpu-runs"), DAG_ID, run_slug(DAG_ID, RUN_ID))
    bundle = (NAMESPACE, f"{prefix}bundle/workload.tar.gz")
    dataset = (NAMESPACE, DATASET_KEY)
    model, metrics = (NAMESPACE, f"{prefix}vm-0/model.keras"), (NAMESPACE, f"{prefix}vm-0/metrics.json")
    report = (NAMESPACE, f"{prefix}run-report.json")

    validated = events["validate"][-1]
    assert bundle in datasets(validated, "outputs")

    trained = events["wait_for_output"][-1]  # the training: what the servers read and wrote
    assert datasets(trained, "inputs") == {bundle, dataset}
    assert datasets(trained, "outputs") == {model, metrics}

    reported = events["report"][-1]
    assert metrics in datasets(reported, "inputs")
    assert report in datasets(reported, "outputs")

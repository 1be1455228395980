"""The DAG folder holds to Airflow's standards: it imports cleanly, fast, and without I/O."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parse_result(airflow_db) -> dict:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("parse_probe.py"))],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_file_imports_without_errors(parse_result):
    assert parse_result["import_errors"] == {}
    assert {
        "ibm_gpu_workload",
        "ibm_gpu_reaper",
        "ibm_gpu_promote",
        "example_ingest_train_evaluate",
    } <= set(parse_result["dag_ids"])


def test_plugins_folder_loads_without_errors(parse_result):
    assert parse_result["plugin_errors"] == {}


def test_parsing_does_no_network_or_file_io(parse_result):
    # The probe blocks sockets and records every non-source file the parse opens in the repo.
    assert parse_result["io_events"] == []


def test_every_dag_has_tags_owner_retries_and_docs(dagbag):
    assert dagbag.dags, "no DAG found"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.doc_md and len(dag.doc_md) > 100, f"{dag_id}: doc_md missing or too short"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id}: default owner"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id}: no default retries"


def test_cleanup_runs_whatever_happened_before(dagbag):
    dag = dagbag.get_dag("ibm_gpu_workload")
    for task_id in ("destroy", "report"):
        assert dag.get_task(task_id).trigger_rule == "all_done", task_id
    # The hold runs only after a failure; on success the scheduler skips it (no worker start
    # between the workload's _SUCCESS and the destroy), and destroy runs after it either way.
    assert dag.get_task("hold_on_failure").trigger_rule == "one_failed"
    assert dag.get_task("destroy").upstream_task_ids == {"hold_on_failure"}
    # apply must not be a setup task: a teardown is skipped when its setup fails.
    assert not dag.get_task("apply").is_setup
    # The verdict is the only leaf: it waits for every task, fails on any failure, and succeeds
    # (emitting the model asset event) otherwise, so that tasks after a training group run only
    # on a good model.
    assert dag.get_task("run_verdict").trigger_rule == "all_done"
    assert set(dag.get_task("run_verdict").upstream_task_ids) == {
        t.task_id for t in dag.tasks if t.task_id != "run_verdict"
    }
    assert [t.task_id for t in dag.leaves] == ["run_verdict"]
    # Nothing is created before a costly run is approved.
    assert dag.get_task("create_workspace").upstream_task_ids == {"approve"}
    assert dag.get_task("approve").upstream_task_ids == {"validate"}


def test_the_model_asset_links_training_and_promotion(dagbag):
    from gpu_pipeline.model_asset import MODEL_ASSET

    training = dagbag.get_dag("ibm_gpu_workload")
    assert training.get_task("run_verdict").outlets == [MODEL_ASSET]
    promote = dagbag.get_dag("ibm_gpu_promote")
    assert list(promote.timetable.asset_condition.objects) == [MODEL_ASSET]


def test_the_example_dag_uses_the_training_group_as_one_step(dagbag):
    dag = dagbag.get_dag("example_ingest_train_evaluate")
    group = dag.task_group_dict["train"]
    ids = {t.task_id for t in dag.tasks}
    assert {"train.validate", "train.apply", "train.destroy", "train.run_verdict"} <= ids
    assert dag.get_task("train.validate").upstream_task_ids == {"ingest"}
    assert dag.get_task("evaluate").upstream_task_ids == {"train.run_verdict"}
    assert [t.task_id for t in group.get_leaves()] == ["train.run_verdict"]
    # Inside the group, the operators read the group's own tasks.
    create = dag.get_task("train.create_workspace")
    templates = " ".join(str(getattr(create, field)) for field in create.template_fields)
    assert "task_ids='train.validate'" in templates and "task_ids='validate'" not in templates
    assert dag.get_task("train.hold_on_failure").watched_task_ids == ["train.apply", "train.wait_for_output"]


def test_the_training_group_refuses_a_dag_without_its_parameters():
    from airflow.sdk import DAG
    from gpu_pipeline.training_group import ibm_gpu_training

    with DAG("no_params", schedule=None), pytest.raises(ValueError, match="lacks the training parameters"):
        ibm_gpu_training(workload_dir=REPO / "workload", terraform_dir=REPO / "terraform")


def test_the_reaper_destroys_through_the_provider_and_always_reports(dagbag):
    dag = dagbag.get_dag("ibm_gpu_reaper")
    assert dag.params["dry_run"] is True  # a manual trigger reports only, unless told otherwise
    assert type(dag.get_task("destroy_orphan_workspaces")).__name__ == "MappedOperator"
    for task_id in ("reap_leftovers", "write_report"):
        assert dag.get_task(task_id).trigger_rule == "all_done", task_id
    assert dag.max_active_runs == 1


def test_a_dry_run_of_the_reaper_destroys_no_workspace(dagbag):
    pick = dagbag.get_dag("ibm_gpu_reaper").get_task("orphan_workspaces").python_callable
    verdicts = [
        {"orphan": True, "workspace_id": "us-south.workspace.a"},
        {"orphan": False, "workspace_id": "us-south.workspace.b"},
        {"orphan": True, "workspace_id": None},
    ]
    assert pick({"dry_run": True, "verdicts": verdicts}) == []
    assert pick({"dry_run": False, "verdicts": verdicts}) == ["us-south.workspace.a"]


def test_without_openlineage_the_shipped_dag_keeps_its_triggerer_endings(airflow_db, monkeypatch):
    """Nothing changes where no listener is registered: teardown latency does not regress.

    With the OpenLineage provider installed the same DAG ends every task on a worker
    (tests/openlineage/).
    """
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER", raising=False)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    tasks = {t.task_id: t for t in bag.get_dag("ibm_gpu_workload").tasks}
    assert tasks["wait_for_output"].start_from_trigger and tasks["wait_for_output"].end_from_trigger
    assert tasks["destroy"].start_from_trigger and tasks["destroy"].end_from_trigger
    assert tasks["plan"].end_from_trigger

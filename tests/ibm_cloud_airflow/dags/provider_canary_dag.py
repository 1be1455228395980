"""DAG used by tests/ibm_cloud_airflow/test_dag_integration.py (dag.test() needs the DAG in a bundle file).

It exercises every provider operator against the sandbox: create -> plan -> apply -> (check
variables) -> markers -> CosKeySensor -> destroy -> delete.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

TF = str(Path(__file__).resolve().parents[1] / "fixtures" / "tf_small")
BUCKET = "provider-dag-test"


def build_dag() -> Any:
    from airflow.sdk import DAG, TriggerRule, task

    from ibm_cloud_airflow.hooks.cos import CosHook
    from ibm_cloud_airflow.hooks.schematics import SchematicsHook
    from ibm_cloud_airflow.operators.schematics import (
        SchematicsApplyOperator,
        SchematicsCreateWorkspaceOperator,
        SchematicsDeleteWorkspaceOperator,
        SchematicsDestroyOperator,
        SchematicsPlanOperator,
    )
    from ibm_cloud_airflow.sensors.cos import CosKeySensor
    from ibm_cloud_airflow.utils.run_identity import run_prefix, run_slug

    def ident(key: str) -> str:
        return "{{ ti.xcom_pull(task_ids='identity')['" + key + "'] }}"

    with DAG(
        dag_id="provider_canary_dag",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"retries": 0},
    ) as dag:

        @task
        def identity(**context: Any) -> dict[str, str]:
            slug = run_slug(context["dag"].dag_id, context["run_id"])
            return {
                "slug": slug,
                "name": f"airflow-{slug}",
                "prefix": run_prefix("runs", "provider_canary_dag", slug),
            }

        create = SchematicsCreateWorkspaceOperator(
            task_id="create",
            workspace_name=ident("name"),
            template_dir=TF,
            variables={"run_id": ident("slug"), "vpc_count": 2},
            secure_variables={"secret_value": "ibm_cos_default:password"},
            tags=["airflow-run:" + ident("slug")],
        )
        ws = "{{ ti.xcom_pull(task_ids='create') }}"
        plan = SchematicsPlanOperator(task_id="plan", workspace_id=ws, poll_interval=0.2)
        apply = SchematicsApplyOperator(task_id="apply", workspace_id=ws, poll_interval=0.2)

        @task
        def inspect_variables(workspace_id: str) -> None:
            """Every Schematics variable holding a connection secret must be ``secure``."""
            from ibm_cloud_airflow.utils.secrets import get_connection

            secrets = [get_connection(c).password for c in ("ibm_cloud_default", "ibm_cos_default")]
            workspace = SchematicsHook().get_workspace(workspace_id)
            entries = [e for t in workspace.get("template_data") or [] for e in t.get("variablestore") or []]
            assert any(e["name"] == "secret_value" and e.get("secure") for e in entries), entries
            for e in entries:
                if not e.get("secure"):
                    assert not any(c in str(e.get("value")) for c in secrets), e["name"]

        @task
        def write_markers(ids: dict[str, str]) -> None:
            def later() -> None:
                time.sleep(1.0)
                cos = CosHook()
                cos.upload_bytes(BUCKET, ids["prefix"] + "vm-0/progress.json", '{"epoch": 2, "epochs": 2}')
                cos.upload_bytes(BUCKET, ids["prefix"] + "vm-0/_SUCCESS", "sha")

            threading.Thread(target=later, daemon=True).start()

        wait = CosKeySensor(
            task_id="wait",
            bucket_name=BUCKET,
            bucket_key=[ident("prefix") + "vm-0/_SUCCESS"],
            poke_interval=0.2,
            timeout=60,
            stall_timeout=60,
        )
        destroy = SchematicsDestroyOperator(
            task_id="destroy",
            workspace_id=ws,
            workspace_name=ident("name"),
            poll_interval=0.2,
            trigger_rule=TriggerRule.ALL_DONE,
        )
        delete = SchematicsDeleteWorkspaceOperator(
            task_id="delete",
            workspace_id=ws,
            workspace_name=ident("name"),
            trigger_rule=TriggerRule.ALL_DONE,
        )
        ids = identity()
        check = inspect_variables(create.output)
        ids >> create >> plan >> apply >> check >> write_markers(ids) >> wait >> destroy >> delete
    return dag


dag = build_dag()

"""A small DAG built from the provider's operators, run with ``dag.test()`` against the sandbox.

Deferred tasks run their triggers inline (Airflow's dag.test), so this covers the deferred path end
to end. The sandbox is started with recognisable canary credentials, and the test then checks that
neither the API key nor the HMAC secret (also passed to Terraform as a secure variable) shows up in
task logs, XCom, rendered template fields, the metadata DB, or any non-secure Schematics variable.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import CANARY_API_KEY, CANARY_HMAC_SECRET, named_for

pytestmark = pytest.mark.sandbox

DAGS = Path(__file__).parent / "dags"
BUCKET = "provider-dag-test"
CANARIES = (CANARY_API_KEY, CANARY_HMAC_SECRET)


@pytest.fixture
def canary_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from sandbox import Sandbox

    # Jobs that outlive the operators' first check (as IBM's do): every job is waited for by its
    # trigger, whose logs must not leak either.
    box = Sandbox(
        state_dir=tmp_path / "sandbox",
        rate_limit_per_min=None,
        resource_delay_s=0.05,
        faults={"slow_jobs": {"seconds": 2}},
    )
    # The sandbox draws random credentials; give it our canaries before it starts.
    box.api_key = CANARY_API_KEY
    box.cos_hmac["secret_access_key"] = CANARY_HMAC_SECRET
    box.start()
    try:
        for key, value in box.airflow_connections().items():
            monkeypatch.setenv(key, value)
        box.ensure_bucket(BUCKET)
        yield box
    finally:
        box.stop()


def test_dag_end_to_end_without_leaking_secrets(
    airflow_db: Path, canary_box: Any, capfd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from ibm_cloud_airflow.hooks.schematics import SchematicsHook
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    # dag.test() serialises the DAG from its bundle: give our test DAG folder a bundle of its own.
    bundle = {
        "name": "provider-tests",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(DAGS), "refresh_interval": 0},
    }
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("provider_canary_dag")
    started = time.monotonic()
    dr = dag.test()
    elapsed = time.monotonic() - started
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == "success", states
    assert set(states.values()) == {"success"}
    assert elapsed < 120

    slug_xcom = dr.get_task_instance("identity").xcom_pull(task_ids="identity")
    assert VpcHook().find_resources(named_for(slug_xcom["slug"])) == []
    assert SchematicsHook().find_workspace_by_name(slug_xcom["name"]) is None
    outputs = dr.get_task_instance("apply").xcom_pull(task_ids="apply")
    assert outputs["vpc_name"] == f"{slug_xcom['slug']}-vpc-0" and outputs["secret_echo"] == "<sensitive>"

    # 1. task logs (dag.test prints them) and any log files under AIRFLOW_HOME
    out, err = capfd.readouterr()
    assert "Progress " in out + err  # the sensor/trigger logged progress, so logs were captured
    logs = out + err
    for task_id in ("plan", "apply", "wait", "destroy"):  # the deferred path ran for each of these
        assert re.search(rf"Pausing task as DEFERRED\..*task_id={task_id}\b", logs), task_id
    assert "Terraform outputs" in logs and "[schematics " in logs  # operator and trigger logs captured
    home = Path(airflow_db).parent
    texts = {"stdout": out, "stderr": err}
    for path in home.rglob("*"):
        if path.is_file() and path.suffix != ".db" and path.stat().st_size < 50_000_000:
            texts[str(path)] = path.read_text(errors="replace")
    # 2. XCom, rendered template fields, task state: everything in the metadata DB, raw bytes
    db_bytes = b"".join(p.read_bytes() for p in home.glob("airflow.db*"))
    for canary in CANARIES:
        assert canary.encode() not in db_bytes
        for where, text in texts.items():
            assert canary not in text, f"canary leaked into {where}"
    # the checks above looked at real rows
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rendered = (
            session.query(RenderedTaskInstanceFields)
            .filter(RenderedTaskInstanceFields.dag_id == "provider_canary_dag")
            .all()
        )
        by_task = {r.task_id: r.rendered_fields for r in rendered}
    # the field holds the reference (Airflow's masker may also redact it because of its key name)
    assert by_task["create"]["secure_variables"]["secret_value"] in ("ibm_cos_default:password", "***")
    assert by_task["create"]["variables"]["run_id"] == slug_xcom["slug"]
    assert all(c not in repr(by_task) for c in CANARIES)

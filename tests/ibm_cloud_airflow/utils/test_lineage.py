"""COS lineage without OpenLineage: the hook reports what it reads and writes, the plan says what the
training reads and writes, and without a lineage reader nothing is collected.

CosHook runs against moto's S3 server over HTTP; Airflow's own HookLineageCollector collects. With the
OpenLineage provider installed, tests/openlineage/ checks the events a real run emits.
"""

from __future__ import annotations

import json

import pytest

from ibm_cloud_airflow.hooks.cos import CosHook
from ibm_cloud_airflow.utils import lineage


@pytest.fixture
def hook(moto_url, monkeypatch):
    conn = {
        "conn_type": "ibm_cos",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_COS_LINEAGE", json.dumps(conn))
    made = CosHook("cos_lineage")
    made.ensure_bucket("bkt")
    return made


@pytest.fixture
def collector(monkeypatch):
    """Airflow's collector, as it is where a lineage reader (OpenLineage's) is registered."""
    import airflow.sdk.lineage

    made = airflow.sdk.lineage.HookLineageCollector()
    monkeypatch.setattr(airflow.sdk.lineage, "get_hook_lineage_collector", lambda: made)
    return made


def uris(infos) -> list[str]:
    return sorted(info.asset.uri for info in infos)


def test_the_hook_reports_each_object_it_reads_and_writes(hook, collector, tmp_path):
    hook.upload_bytes("bkt", "run/bundle/workload.tar.gz", b"tar")
    (tmp_path / "m").write_text("model")
    hook.upload_file("bkt", "run/vm-0/model.keras", tmp_path / "m")
    assert hook.read_json("bkt", "run/vm-0/missing.json") is None  # nothing read: nothing reported
    hook.upload_bytes("bkt", "run/vm-0/metrics.json", json.dumps({"test_accuracy": 0.9}))
    assert hook.read_json("bkt", "run/vm-0/metrics.json") == {"test_accuracy": 0.9}
    hook.copy("bkt", "run/vm-0/model.keras", "champion/model.keras")
    hook.download_prefix("bkt", "champion/", tmp_path / "down")
    hook.head("bkt", "run/vm-0/model.keras")  # metadata only: no lineage
    hook.list_keys("bkt", "run/")

    collected = collector.collected_assets
    assert uris(collected.inputs) == [
        "cos://bkt/champion/model.keras",
        "cos://bkt/run/vm-0/metrics.json",
        "cos://bkt/run/vm-0/model.keras",
    ]
    assert uris(collected.outputs) == [
        "cos://bkt/champion/model.keras",
        "cos://bkt/run/bundle/workload.tar.gz",
        "cos://bkt/run/vm-0/metrics.json",
        "cos://bkt/run/vm-0/model.keras",
    ]
    assert all(info.context is hook for info in collected.inputs + collected.outputs)


def test_without_a_lineage_reader_nothing_is_collected(hook):
    """No OpenLineage provider: Airflow's collector is a no-op, and the hook works as before."""
    from airflow.sdk.lineage import NoOpCollector, get_hook_lineage_collector

    assert isinstance(get_hook_lineage_collector(), NoOpCollector)
    hook.upload_bytes("bkt", "k", b"v")
    assert hook.read_text("bkt", "k") == "v"
    assert not get_hook_lineage_collector().has_collected


def test_cos_assets_name_a_bucket():
    from airflow.sdk import Asset

    asset = lineage.create_asset(bucket="bkt", key="/run/vm-0/model.keras")
    assert asset.uri == "cos://bkt/run/vm-0/model.keras"
    with pytest.raises(ValueError, match="must name a bucket"):
        Asset(uri="cos:///run/vm-0/model.keras")


def test_the_provider_registers_the_cos_scheme():
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManagerTaskRuntime()
    assert manager.asset_factories["cos"] is lineage.create_asset
    assert manager.asset_uri_handlers["cos"] is lineage.sanitize_uri
    assert manager.asset_to_openlineage_converters["cos"] is lineage.convert_asset_to_openlineage


def test_the_sensor_takes_its_lineage_from_the_plan():
    from ibm_cloud_airflow.sensors.cos import CosKeySensor

    sensor = CosKeySensor(task_id="wait", plan_task_id="validate")
    assert "'lineage_inputs'" in sensor.lineage_inputs and "'lineage_outputs'" in sensor.lineage_outputs
    assert {"lineage_inputs", "lineage_outputs"} <= set(sensor.template_fields)

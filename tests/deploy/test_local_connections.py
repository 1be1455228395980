"""`make airflow` stores its connections in the metadata DB: Admin > Connections lists them.

Real Airflow CLI against a real (SQLite) metadata DB; the whole `make airflow` is started by the
OpenLineage end-to-end test (tests/e2e/test_openlineage.py), which lists them through the REST API.
"""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest

from scripts.local_airflow import AirflowCluster, ClusterError, store_connections
from scripts.local_run import airflow_env, prepare_home

SECRET = "CANARY-CONN-SECRET-4f1e"
CONNECTIONS = {
    "AIRFLOW_CONN_IBM_CLOUD_DEFAULT": json.dumps(
        {"conn_type": "ibm_cloud", "password": SECRET, "extra": {"region": "us-south"}}
    ),
    "AIRFLOW_CONN_IBM_COS_DEFAULT": json.dumps(
        {"conn_type": "ibm_cos", "login": "key-id", "password": SECRET, "extra": {"endpoint_url": "http://x"}}
    ),
}


def stored(home) -> dict[str, str]:
    """The connections in the metadata DB, by id: their types (the rest is Fernet-encrypted)."""
    with sqlite3.connect(home / "airflow.db") as db:
        return dict(db.execute("SELECT conn_id, conn_type FROM connection").fetchall())


def test_the_connections_are_stored_again_at_each_start_and_never_shown(airflow_db, tmp_path):
    prepare_home(tmp_path, template_db=airflow_db)
    env = airflow_env(tmp_path, {})

    for _ in range(2):  # a second start finds them there: replaced, not refused
        assert store_connections(sys.executable, env, CONNECTIONS, tmp_path) == [
            "ibm_cloud_default",
            "ibm_cos_default",
        ]
    assert stored(tmp_path) == {"ibm_cloud_default": "ibm_cloud", "ibm_cos_default": "ibm_cos"}
    assert list(tmp_path.glob("connections*")) == []  # the file with the secrets is gone

    bad = {"AIRFLOW_CONN_BROKEN": json.dumps({"conn_type": "x", "password": SECRET, "no_such_field": 1})}
    with pytest.raises(ClusterError) as err:
        store_connections(sys.executable, env, bad, tmp_path)
    assert "broken" in str(err.value) and SECRET not in str(err.value)


def test_the_components_get_no_connection_variables(tmp_path):
    """An AIRFLOW_CONN_* variable would hide the connection from the UI and shadow its edits."""
    cluster = AirflowCluster(tmp_path, connections=CONNECTIONS)
    cluster._http.close()
    assert not any(key.startswith("AIRFLOW_CONN_") for key in cluster.env)
    assert cluster.connections == CONNECTIONS

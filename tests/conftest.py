"""Test session setup: a private AIRFLOW_HOME with a migrated SQLite DB, set before Airflow loads.

Airflow reads its configuration when first imported, so the environment is prepared here at module
import time, before any test module can import ``airflow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = REPO / ".airflow" / f"test-{os.getpid()}"

os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)

pytest_plugins = ["sandbox.testing"]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB for tests that run DAGs (``dag.test()``) or build a DagBag."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME / "airflow.db"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="module")
def moto_url():
    """A plain S3 endpoint (moto's server, over HTTP) for the hooks that need no sandbox."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()

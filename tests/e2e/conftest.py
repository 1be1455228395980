"""End-to-end fixtures: real Airflow (``dag.test()`` in a child process) against a real sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.local_run import DEMO_BUCKET, prepare_home, read_result, start_run


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """One migrated metadata DB, copied for each run (a migration costs seconds)."""
    home = tmp_path_factory.mktemp("airflow-template")
    prepare_home(home)
    return home / "airflow.db"


@pytest.fixture
def run_pipeline(template_db, tmp_path) -> Callable[..., list[dict[str, Any]]]:
    """Run the DAG ``count`` times at once against ``sandbox``; return each run's result."""

    def run(sandbox, conf: dict[str, Any] | None = None, count: int = 1, timeout: float = 600) -> list[dict]:
        sandbox.ensure_bucket(DEMO_BUCKET)
        procs = []
        for i in range(count):
            home = tmp_path / f"run{i}"
            prepare_home(home, template_db)
            result, log = tmp_path / f"result{i}.json", tmp_path / f"airflow{i}.log"
            proc = start_run(
                home=home, connections=sandbox.airflow_connections(), conf=conf or {}, result=result, log=log
            )
            procs.append((proc, result, log))
        results = []
        for proc, result, log in procs:
            try:
                proc.wait(timeout=timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert result.exists(), f"the run crashed:\n{log.read_text()[-4000:]}"
            results.append(read_result(result, log))
        return results

    return run


# Module-scoped: the sandbox lives in the test process, and one left running would share its COS
# (moto's backend is per process) with every later test's sandbox.
@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(sandbox, airflow)``: ``make airflow``'s deployment, without a login."""
    from scripts.airflow_ui import local_airflow_ui

    with local_airflow_ui(tmp_path_factory.mktemp("api")) as (box, af):
        af.wait_for_dag("ibm_gpu_promote", timeout_s=300)
        yield box, af


@pytest.fixture(scope="module")
def api(deployment: tuple[Any, Any]) -> Iterator[Any]:
    """An ``airflow_client.client.ApiClient`` logged in as the all-admin SimpleAuthManager user."""
    import airflow_client.client as client
    import httpx

    _, af = deployment
    token = httpx.get(f"{af.base_url}/auth/token", timeout=30).json()["access_token"]
    config = client.Configuration(host=af.base_url, access_token=token)
    with client.ApiClient(config) as api_client:
        yield api_client

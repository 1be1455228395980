"""Browser fixtures: the sandbox and a real Airflow (``make airflow``'s launcher), and Chromium.

Playwright drives Debian's ``chromium`` (``make browser`` installs it): Playwright's own browser
download is not reachable from this project's machines. One Airflow serves the whole module: it
takes a minute or more to start on a 2-core machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("UI_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless, and nothing that would reach out to the network or to a GPU.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: six developers share two cores, and the SPA renders in software.
ACTION_TIMEOUT_MS = 180_000
SCREENSHOTS_DIR = os.environ.get("UI_SCREENSHOTS_DIR")


# The shipped DAG's weekly schedule (Mondays 12:00 UTC), which ``make airflow`` turns off: Airflow
# backfills only a DAG with a periodic schedule. The scheduler starts no scheduled run here
# (use_job_schedule off): every run is one a test started, and the tests' leak checks stay theirs.
# Nothing here needs the asset-triggered runs that use_job_schedule off also stops (ibm_gpu_promote:
# tests/e2e/test_airflow_api.py); the model's asset events are recorded all the same.
UI_TEST_ENV = {
    "AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE": "0 12 * * 1",
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
}


@pytest.fixture(scope="module")
def local_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """``(sandbox, airflow)``: ``make airflow``'s deployment, without a login, with the weekly schedule."""
    from scripts.airflow_ui import local_airflow_ui

    with local_airflow_ui(tmp_path_factory.mktemp("ui"), extra_env=UI_TEST_ENV) as (box, af):
        yield box, af


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=ACTION_TIMEOUT_MS)  # assertions wait as long as actions

    if shutil.which(CHROMIUM) is None:  # a failure, not a skip: these tests are the UI's only check
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, local_ui: tuple[Any, Any]) -> Iterator[Any]:
    _, af = local_ui
    context = browser.new_context(base_url=af.base_url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def save_screenshot(target: Any, name: str) -> None:
    """Write ``docs/images/<name>.png`` when ``UI_SCREENSHOTS_DIR`` is set (make ui-screenshots)."""
    if SCREENSHOTS_DIR:
        Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(Path(SCREENSHOTS_DIR) / f"{name}.png"), animations="disabled")

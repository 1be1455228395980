"""``make airflow``: the local sandbox and a real Airflow with its UI, in the foreground.

Starts the IBM Cloud sandbox (this process) and Airflow's api-server, scheduler (LocalExecutor on
SQLite), dag-processor and triggerer (scripts/local_airflow.py), with the connections
``ibm_cloud_default`` and ``ibm_cos_default`` pointing at the sandbox, stored in the metadata DB
(Admin > Connections lists them). Prints the UI's URL and login; Ctrl-C stops everything,
including any training job a run started.

    python -m scripts.airflow_ui [--port 8080] [--home .airflow/ui]

The time-based schedules are off here unless you set them (``[ibm_cloud] workload_schedule`` and
``reaper_schedule`` default to ``None``): runs start when you trigger them, never by surprise on
start-up. The UI's Backfill needs a periodic schedule:
``AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE='0 12 * * 1' make airflow`` turns it on. The scheduler
still creates asset-triggered runs: each trained model starts ``ibm_gpu_promote``.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from scripts.local_airflow import AirflowCluster, ClusterError
from scripts.local_run import DAG_ID, DEMO_BUCKET, REPO

if TYPE_CHECKING:
    from sandbox.core import Sandbox

DEFAULT_PORT = 8080
USER = "admin"


def ui_env(poll_seconds: float = 2.0) -> dict[str, str]:
    """What a local UI deployment sets on top of the launcher's defaults."""
    return {
        # Only triggered, backfilled and asset-triggered runs: no scheduled run appears on start-up.
        # (Not use_job_schedule=False: the scheduler would then create no asset-triggered run either.)
        # Yours when set (your AIRFLOW__* win over these): a cron schedule turns the UI's Backfill on.
        "AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE": "None",
        "AIRFLOW__IBM_CLOUD__REAPER_SCHEDULE": "None",
        "AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": str(poll_seconds),
        # A laptop busy training (or a shared CI core) can keep the api-server from answering a
        # task's start within Airflow's default 5 s, which fails the task before it runs.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    }


@contextlib.contextmanager
def local_airflow_ui(
    work: Path,
    *,
    port: int | None = None,
    login: tuple[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[Sandbox, AirflowCluster]]:
    """The sandbox (with the demo bucket) and an Airflow whose connections point at it."""
    from sandbox import Sandbox

    with Sandbox(state_dir=work / "sandbox") as box:
        box.ensure_bucket(DEMO_BUCKET)
        with AirflowCluster(
            work / "airflow",
            connections=box.airflow_connections(),
            # the UI's defaults: the caller's AIRFLOW__* settings override them
            default_env=ui_env(),
            extra_env=extra_env,
            port=port,
            login=login,
            parallelism=8,
            start_timeout_s=600,  # a busy 2-core machine can take minutes
        ) as af:
            af.wait_for_dag(DAG_ID, timeout_s=600)
            yield box, af


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.airflow_ui", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="UI port (another if taken)")
    parser.add_argument("--home", type=Path, default=REPO / ".airflow" / "ui", help="state, logs, DB")
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    password = secrets.token_urlsafe(9)
    print("starting the sandbox and Airflow (about a minute) ...", flush=True)
    with local_airflow_ui(args.home.resolve(), port=args.port, login=(USER, password)) as (box, af):
        connections = ", ".join(sorted(name.removeprefix("AIRFLOW_CONN_").lower() for name in af.connections))
        print(
            f"\n  Airflow UI: {af.base_url}/dags/{DAG_ID}\n"
            f"  login:      {USER} / {password}\n"
            f"  connections: {connections} (Admin > Connections), pointing at the sandbox\n"
            f"  logs:       {af.log_dir}\n"
            f"  sandbox:    {box.endpoints_file}\n\n"
            "Press Trigger to start a run. Ctrl-C stops everything.",
            flush=True,
        )
        try:
            while not done.wait(2.0):
                af.check_alive()
        except ClusterError as err:
            print(f"an Airflow component stopped: {err}", file=sys.stderr, flush=True)
            return 1
        finally:
            print("stopping Airflow and the sandbox ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parse the DAG folder in a fresh interpreter and report import errors and parse-time I/O.

Run as a script by tests/dags/test_dag_integrity.py: a fresh process is the only way to see the
imports of the DAG's own modules happen (and so the I/O they would do) during the parse.
"""

import json
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
events: list[str] = []
watching = False


def audit(event: str, args: tuple) -> None:
    if not watching:
        return
    if event == "open":
        path = str(args[0])
        # Reading Python sources to import them is parsing; any other file in the repo is I/O.
        if path.startswith(str(REPO)) and not path.endswith((".py", ".pyc")) and "__pycache__" not in path:
            events.append(f"open {path}")
    elif event in ("socket.connect", "socket.getaddrinfo", "socket.bind"):
        events.append(f"{event} {args[1:]!r}")


def refuse(*args, **kwargs):
    raise OSError("network access at DAG parse time")


sys.addaudithook(audit)
from airflow import plugins_manager  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.listeners.listener import get_listener_manager  # noqa: E402

# A dag-processor has loaded the plugins (and their listeners) before it parses anything; the
# DagBag consults the listeners for tasks that end in the triggerer. Only the parse is watched.
get_listener_manager()

socket.socket.connect = refuse  # sockets are blocked for the parse
socket.create_connection = refuse
watching = True
started = time.perf_counter()
bag = DagBag(dag_folder=str(REPO / "dags"))
elapsed = time.perf_counter() - started
watching = False
plugins_manager.ensure_plugins_loaded()
plugin_errors = plugins_manager.get_import_errors()
print(
    json.dumps(
        {
            "dag_ids": sorted(bag.dag_ids),
            "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
            "plugin_errors": {str(k): str(v) for k, v in dict(plugin_errors).items()},
            "io_events": events,
            "parse_s": elapsed,
        }
    )
)

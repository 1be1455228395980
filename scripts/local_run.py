"""Run the ``ibm_gpu_workload`` DAG once with ``dag.test()`` against a running sandbox.

Used by ``make demo``, the end-to-end tests and the benchmarks. Each run happens in its own
process with its own ``AIRFLOW_HOME`` (Airflow reads its configuration once, at import), so several
runs can share one sandbox at the same time, as concurrent DAG runs share one cloud account.

    python -m scripts.local_run --endpoints .sandbox/endpoints.json --home .airflow/run1 \
        --conf '{"epochs": 2}' --result result.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "ibm_gpu_workload"
DEMO_BUCKET = "airflow-gpu-results"
# The task whose return value is each DAG's report.
REPORT_TASKS = {DAG_ID: "report", "ibm_gpu_reaper": "write_report"}

# Parameters that make a local run quick: a few epochs on the bundled digits data set.
LOCAL_CONF: dict[str, Any] = {
    "bucket": DEMO_BUCKET,
    "dataset": "digits",
    "epochs": 3,
    "batch_size": 64,
    "max_runtime_minutes": 15,
    "progress_stall_minutes": 2,
}


# Of the caller's environment, the Airflow configuration (every AIRFLOW__<SECTION>__<KEY>, e.g.
# OpenLineage's [openlineage] section) and OpenLineage's own variables reach every local Airflow;
# the other AIRFLOW_* variables (AIRFLOW_HOME, AIRFLOW_CONFIG, AIRFLOW_CONN_*, AIRFLOW_VAR_*) do not.
PASSED_PREFIXES = ("AIRFLOW__", "OPENLINEAGE_")


def passed_through(owned: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's settings that a launcher passes on: those it does not set itself.

    An owned setting is held back in its ``_CMD`` and ``_SECRET`` forms too (Airflow reads those
    when the plain variable is absent).
    """
    environ = os.environ if environ is None else environ
    held = {form for key in owned for form in (key, f"{key}_CMD", f"{key}_SECRET")}
    return {k: v for k, v in environ.items() if k.startswith(PASSED_PREFIXES) and k not in held}


_announced: set[tuple[str, ...]] = set()


def announce_passed_through(names: Iterable[str]) -> None:
    """Say once, on stderr, which of the caller's settings a local Airflow gets (names only)."""
    names = tuple(sorted(names))
    if names and names not in _announced:
        _announced.add(names)
        print(f"local Airflow: passing through your settings {', '.join(names)}", file=sys.stderr, flush=True)


def home_settings(home: Path) -> dict[str, str]:
    """What every local launcher owns: where the deployment's state lives and which code it runs."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }


def airflow_env(
    home: Path,
    connections: dict[str, str],
    poll_seconds: float = 2.0,
    *,
    defaults: Mapping[str, str] | None = None,
    owned: Mapping[str, str] | None = None,
    announce: bool = True,
) -> dict[str, str]:
    """The environment of one local Airflow: its own home and DB, the sandbox's connections.

    Lowest first: the launcher's ``defaults``, then the caller's ``AIRFLOW__*`` and
    ``OPENLINEAGE_*`` settings, then what the launcher owns (home, DB, DAG and plugin folders, the
    connections, and ``owned``: ports, URLs, executor, login). ``announce``: name the caller's
    settings on stderr (a launcher that holds back more of them names them itself).
    """
    own = {
        **home_settings(home),
        # the caller's PYTHONPATH after the project's (e.g. a provider install made with --target)
        "PYTHONPATH": os.pathsep.join(
            [
                str(REPO),
                str(REPO / "plugins"),
                *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
            ]
        ),
        **connections,
        **(owned or {}),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", *PASSED_PREFIXES))}
    env.update(
        {
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": str(poll_seconds),
            **(defaults or {}),
        }
    )
    callers = passed_through(own)
    if announce:
        announce_passed_through(callers)
    env.update(callers)
    env.update(own)
    return env


def prepare_home(home: Path, template_db: Path | None = None) -> None:
    """A fresh AIRFLOW_HOME with a migrated DB (copied from ``template_db`` when given: faster)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if template_db is not None and template_db.exists():
        shutil.copy(template_db, home / "airflow.db")
        return
    env = airflow_env(home, {})
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )


def start_run(
    *,
    home: Path,
    connections: dict[str, str],
    conf: dict[str, Any],
    result: Path,
    log: Path,
    dag_id: str = DAG_ID,
    new_session: bool = False,
) -> subprocess.Popen:
    """Start one DAG run in a child process; its result JSON lands in ``result``.

    ``new_session`` makes the child the leader of its own process group (so that it can be killed
    with everything it started, as the ``airflow_lost`` demo does).
    """
    # dag.test() resumes a task that a trigger ended (TaskSuccessEvent) with the event's bare
    # payload, and ignores start_from_trigger: its runs take the worker path all the way, whatever
    # the caller's setting.
    env = airflow_env(home, connections, owned={"AIRFLOW__IBM_CLOUD__END_FROM_TRIGGER": "False"})
    cmd = [sys.executable, "-m", "scripts.local_run", "--conf", json.dumps(conf), "--result", str(result)]
    if dag_id != DAG_ID:
        cmd += ["--dag-id", dag_id]
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Exception|Error|Timeout|Failed)\w*: ")
_LOG_RECORD = re.compile(r"^\d{4}-\d{2}-\d{2}T")


def failure_messages(log_text: str, failed_tasks: list[str]) -> dict[str, str]:
    """The exception each failed task raised, read from the ``dag.test()`` console log.

    ``dag.test()`` runs tasks one after another in-process and logs each failure's traceback after
    a "starting task_id=..." line, so each task's last exception is in its own stretch of the log.
    """
    messages: dict[str, str] = {}
    task, lines = None, log_text.splitlines()
    for i, line in enumerate(lines):
        started = _TASK_START.search(line)
        if started:
            task = started.group(1)
        elif task in failed_tasks and _EXCEPTION_LINE.match(line):
            message = [line.split(": ", 1)[1]]
            for following in lines[i + 1 : i + 15]:
                if _LOG_RECORD.match(following) or _EXCEPTION_LINE.match(following):
                    break
                message.append(following)
            messages[task] = "\n".join(message).strip()
    return {t: messages.get(t, "failed (no exception in the log)") for t in failed_tasks}


def read_result(result_file: Path, log_file: Path) -> dict[str, Any]:
    """A run's result, with what each failed task said (empty when the run crashed)."""
    if not result_file.exists():
        return {}
    result = json.loads(result_file.read_text())
    failed = sorted(t for t, state in (result.get("tasks") or {}).items() if state == "failed")
    result["failures"] = failure_messages(log_file.read_text(errors="replace"), failed)
    return result


def run_once(conf: dict[str, Any], dag_id: str = DAG_ID) -> dict[str, Any]:
    """Parse the DAG folder and run the DAG once in this process (env prepared by the caller)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.utils.session import create_session

    started = time.monotonic()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        return {"dag_run_state": "import_error", "errors": {str(k): v for k, v in bag.import_errors.items()}}
    dag = bag.get_dag(dag_id)
    try:
        dag_run = dag.test(run_conf=conf)
    except ParamValidationError as err:
        return {
            "dag_run_state": "rejected",
            "reason": str(err),
            "duration_s": round(time.monotonic() - started, 2),
        }
    with create_session() as session:
        from airflow.models.dagrun import DagRun

        dr = session.get(DagRun, dag_run.id)
        tasks = {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}
        from airflow.models.xcom import XComModel

        def xcom(task_id: str) -> Any:
            query = XComModel.get_many(run_id=dr.run_id, dag_ids=dag_id, task_ids=task_id, key="return_value")
            row = session.scalars(query).first()
            return XComModel.deserialize_value(row) if row else None

        return {
            "dag_run_state": str(dr.state),
            "run_id": dr.run_id,
            "tasks": tasks,
            "asset_events": _asset_events(session, dag_id, dr.run_id),
            "plan": xcom("validate"),
            "report": xcom(REPORT_TASKS.get(dag_id, "report")),
            "duration_s": round(time.monotonic() - started, 2),
        }


def _asset_events(session: Any, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The asset events the run emitted: the asset's name and the event's extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    rows = session.execute(
        select(AssetModel.name, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
    ).all()
    return [{"asset": name, "extra": extra} for name, extra in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="{}", help="run parameters as JSON (merged over LOCAL_CONF)")
    parser.add_argument("--result", type=Path, required=True, help="where to write the result JSON")
    parser.add_argument("--dag-id", default=DAG_ID, help="the DAG to run (default: %(default)s)")
    args = parser.parse_args()
    # The demo's defaults are the workload's parameters; another DAG gets --conf alone.
    base = LOCAL_CONF if args.dag_id == DAG_ID else {}
    result = run_once({**base, **json.loads(args.conf)}, dag_id=args.dag_id)
    args.result.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

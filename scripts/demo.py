"""``make demo``: the whole pipeline once, end to end, on the local sandbox.

Starts the sandbox, runs the DAG once with ``dag.test()``, copies the run's outputs to
``demo-output/<run_id>/`` and prints one line of JSON. Exits 0 only when the run succeeded and
nothing leaked. ``--fault NAME`` injects one of the sandbox's named faults, or the demo's own
``airflow_lost``: the run's Airflow is SIGKILLed mid-training (its whole process group) and its
database discarded, then the ``ibm_gpu_reaper`` DAG runs once (``dry_run`` false) in a fresh Airflow
and must reap everything. ``--conf JSON`` sets run parameters, merged over the demo's defaults
(``scripts.local_run.LOCAL_CONF``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox import Sandbox
from sandbox.faults import FAULT_NAMES
from scripts.local_run import DEMO_BUCKET, REPO, prepare_home, read_result, start_run

# Faults the pipeline must survive (the run still succeeds) and faults that must fail the run.
SURVIVABLE = (
    "api_errors",
    "rate_limited",
    "workspace_locked",
    "destroy_fails_once",
    "short_tokens",
    "slow_jobs",
    # no capacity, or the profile not offered, in the run's zone: the run moves to the next zone
    "no_capacity",
    "profile_not_offered",
    # the first server is lost after its first checkpoint: replaced, the training resumes there
    "server_lost",
)
RUN_FAILING = (
    "plan_fails",
    "apply_fails_midway",
    "workload_fails",
    "workload_hangs",
    "api_key_missing_policy",
    "worker_dies",
)
assert set(SURVIVABLE) | set(RUN_FAILING) == set(FAULT_NAMES)
# Faults of the demo itself, not of the sandbox: Airflow is lost and the reaper must clean up.
REAPED = ("airflow_lost",)
DEMO_FAULTS = (*FAULT_NAMES, *REAPED)
RUN_TIMEOUT_S = 30 * 60
TRAINING_TIMEOUT_S = 10 * 60


def run_demo(
    fault: str | None,
    *,
    conf: dict[str, Any] | None = None,
    output_root: Path = REPO / "demo-output",
    template_db: Path | None = None,
) -> dict[str, Any]:
    """One demo run; ``template_db`` (a migrated metadata DB to copy) saves the migration (tests)."""
    started = time.monotonic()
    work = Path(
        tempfile.mkdtemp(prefix="demo-", dir=REPO / ".airflow" if (REPO / ".airflow").exists() else None)
    )
    sandbox_fault = fault if fault in FAULT_NAMES else None
    reaper: dict[str, Any] = {}
    with Sandbox(faults=[sandbox_fault] if sandbox_fault else None, state_dir=REPO / ".sandbox") as sandbox:
        sandbox.ensure_bucket(DEMO_BUCKET)
        prepare_home(work / "home", template_db)
        if fault in REAPED:  # the reaper's Airflow, ready before the other one is lost
            prepare_home(work / "reaper-home", template_db=work / "home" / "airflow.db")
        result_file, log_file = work / "result.json", work / "airflow.log"
        proc = start_run(
            home=work / "home",
            connections=sandbox.airflow_connections(),
            conf=conf or {},
            result=result_file,
            log=log_file,
            new_session=fault in REAPED,
        )
        try:
            if fault in REAPED:
                reaper = lose_airflow_then_reap(sandbox, proc, work)
            proc.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if proc.poll() is None:  # timed out or interrupted: never leave a run behind
                proc.kill()
                proc.wait()
        result = read_result(result_file, log_file) if fault not in REAPED else {"dag_run_state": "lost"}
        plan = result.get("plan") or {}
        output_dir = None
        if plan:
            output_dir = output_root / re.sub(r"[^A-Za-z0-9._+-]", "_", result["run_id"])
            download_prefix(sandbox.endpoints, plan["bucket"], plan["prefix"], output_dir)
        leaked = sandbox.inventory.list()
        creates = sandbox.request_counts().get("schematics POST /v1/workspaces", 0)
    state = result.get("dag_run_state", "crashed")
    expected = "lost" if fault in REAPED else "failed" if fault in RUN_FAILING else "success"
    summary = {
        "dag_run_state": state,
        "output_dir": str(output_dir.relative_to(REPO)) if output_dir else None,
        "leaked_resources": len(leaked),
        "duration_s": round(time.monotonic() - started, 1),
        "run_id": result.get("run_id"),
        "fault": fault,
        "conf": conf or {},
        "expected_state": expected,
        "failed_tasks": sorted(result.get("failures", {})),
        "why": _why(result),
        "metrics": (result.get("report") or {}).get("metrics"),
        "distribution": plan.get("distribution"),
        "sweep": (result.get("report") or {}).get("sweep"),
        "airflow_log": str(log_file),
        "workspaces_created": creates,
        "cost": (result.get("report") or {}).get("cost"),
        "placement": (result.get("report") or {}).get("placement"),
        "recoveries": len((result.get("report") or {}).get("recoveries") or []),
        "resumed_from_epoch": ((result.get("report") or {}).get("resumed_from_epoch") or {}).get("vm-0"),
        **reaper,
    }
    if leaked:
        summary["leaked"] = [f"{r['kind']} {r['name']}" for r in leaked]
    return summary


def lose_airflow_then_reap(sandbox: Sandbox, proc: Any, work: Path) -> dict[str, Any]:
    """``airflow_lost``: SIGKILL the run's Airflow mid-training, discard its DB, run the reaper once."""
    cos = sandbox.cos_client()
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        listing = cos.list_objects_v2(Bucket=DEMO_BUCKET, Prefix="gpu-runs/ibm_gpu_workload/")
        if any(o["Key"].endswith("/progress.json") for o in listing.get("Contents", [])):
            break  # the servers are training
        time.sleep(1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # every process of the run's Airflow, at once
        proc.wait()
    shutil.rmtree(work / "home", ignore_errors=True)  # its database goes with it
    live_before = len(sandbox.inventory.list())
    result_file, log_file = work / "reaper-result.json", work / "reaper.log"
    reaper = start_run(
        home=work / "reaper-home",
        connections=sandbox.airflow_connections(),
        conf={"dry_run": False, "bucket": DEMO_BUCKET},
        result=result_file,
        log=log_file,
        dag_id="ibm_gpu_reaper",
    )
    try:
        reaper.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if reaper.poll() is None:
            reaper.kill()
            reaper.wait()
    result = read_result(result_file, log_file)
    report = result.get("report") or {}
    return {
        "live_resources_when_lost": live_before,
        "reaper_run_state": result.get("dag_run_state", "crashed"),
        "reaped_resources": report.get("reaped_resources", 0),
        "reaper_report": report.get("report"),
        "reaper_failures": result.get("failures") or {},
        "reaper_log": str(log_file),
    }


def download_prefix(endpoints: dict[str, Any], bucket: str, prefix: str, dest: Path) -> None:
    """Copy every object under ``prefix`` to ``dest``, keeping the key's path below the prefix."""
    import ibm_boto3

    cos = ibm_boto3.client(
        "s3",
        endpoint_url=endpoints["cos"],
        aws_access_key_id=endpoints["cos_hmac"]["access_key_id"],
        aws_secret_access_key=endpoints["cos_hmac"]["secret_access_key"],
    )
    for page in cos.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            cos.download_file(bucket, obj["Key"], str(target))


def _why(result: dict[str, Any]) -> str | None:
    """The first failure a user should read, in one line: the failed work task's error first.

    The run report's ``why`` when it knows the cause (a task's first try's error, not a later try's:
    ``gpu_pipeline/failure_cause.py``); else the failed task's exception from the log. The whole
    message (job log or workload log tail) is in the Airflow log named in the output.
    """
    reported = (result.get("report") or {}).get("why")
    if reported and not reported.endswith("failed (see its log)"):
        return reported.strip().splitlines()[0]
    failures = result.get("failures") or {}
    first = next(
        (
            f"{task_id}: {failures[task_id]}"
            for task_id in (
                "validate",
                "approve",
                "create_workspace",
                "plan",
                "apply",
                "wait_for_output",
                "destroy",
                "report",
            )
            if task_id in failures
        ),
        result.get("reason") or next((f"{t}: {m}" for t, m in failures.items()), None),
    )
    return first.strip().splitlines()[0] if first else None


EXAMPLE = """e.g. make demo CONF='{"vm_count": 2}'"""


def _conf(text: str) -> dict[str, Any]:
    """``--conf`` text as a dict of run parameters; argparse turns the error into a usage message."""
    try:
        conf = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"CONF is not JSON ({err}); {EXAMPLE}") from err
    if not isinstance(conf, dict):
        raise argparse.ArgumentTypeError(f"CONF must be a JSON object of run parameters; {EXAMPLE}")
    return conf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fault", choices=DEMO_FAULTS, help="inject one of the sandbox's faults, or airflow_lost"
    )
    parser.add_argument(
        "--conf",
        type=_conf,
        default={},
        help="run parameters as a JSON object, merged over the demo's defaults: '{\"vm_count\": 2}'",
    )
    args = parser.parse_args()
    summary = run_demo(args.fault, conf=args.conf)
    print(json.dumps(summary))
    if summary["fault"] in REAPED:
        reaped = summary["reaper_run_state"] == "success" and summary["reaped_resources"] > 0
        return 0 if reaped and summary["leaked_resources"] == 0 else 1
    return 0 if summary["dag_run_state"] == "success" and summary["leaked_resources"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

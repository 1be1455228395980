"""``make cluster-test``: the pipeline's promises on a Celery cluster, through crashes and a backfill.

Starts the sandbox and the ``make cluster`` layout (CeleryExecutor, PostgreSQL, Redis, two
schedulers, two triggerers, two workers), then loads it with concurrent manual runs plus a backfill
of the DAG's schedule, and while they run:

* SIGKILLs a Celery worker while it runs an ``apply`` task,
* SIGKILLs a scheduler mid-run,
* SIGKILLs a triggerer while sensors are deferred,

restarting each a few seconds later. It then checks that every run succeeded, that the sandbox's
Schematics journal shows exactly one apply and one destroy per run workspace (a restarted task
re-attaches; it never submits twice), that nothing leaked, and that no waiting sensor ever held a
worker slot. It prints one JSON line last and exits 0 only when all of that holds.

    make cluster-test                              # 5 manual runs + a backfill of 3 dates
    make cluster-test CLUSTER_TEST_ARGS="--runs 2 --backfill 0 --faults scheduler"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from croniter import croniter

from scripts.cluster import CeleryCluster
from scripts.local_run import DAG_ID, DEMO_BUCKET, LOCAL_CONF

FAULTS = ("worker", "scheduler", "triggerer")
RESTART_AFTER_S = 5.0
TERMINAL = ("success", "failed")
# Timings only, so that the tasks a killed worker held are noticed in minutes rather than five or
# ten (a running one stops heartbeating; a queued one it had reserved stays queued); every other
# setting is the compose file's.
TEST_TIMINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
}


class Chaos(threading.Thread):
    """Watches the task instances and kills each component once, when its moment comes."""

    def __init__(self, cluster: CeleryCluster, faults: tuple[str, ...], started: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.pending, self.started = cluster, list(faults), started
        self.killed: list[dict[str, Any]] = []
        self.sensor_running_samples = 0
        self.stopping = threading.Event()
        self.error: str | None = None
        self._apply_deferred_since: float | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                tis = self.cluster.task_instances(DAG_ID)
                by_state = Counter((ti["task_id"], ti["state"]) for ti in tis)
                self.sensor_running_samples += by_state[("wait_for_output", "running")]
                for fault in list(self.pending):
                    target, during = self._moment(fault, tis, by_state)
                    if target:
                        self._kill_and_restart(target, during)
                        self.pending.remove(fault)
                self.stopping.wait(0.5)
        except Exception as err:  # reported in the JSON; the run checks still decide
            self.error = f"{type(err).__name__}: {err}"

    def _moment(self, fault: str, tis: list[dict], by_state: Counter) -> tuple[str | None, str]:
        if fault == "worker":
            for ti in tis:
                if ti["task_id"] == "apply" and ti["state"] == "running" and ti.get("pid"):
                    worker = self._worker_running(ti["pid"])
                    if worker:
                        return worker, f"apply of {ti['dag_run_id']} running on it (pid {ti['pid']})"
            # An apply task is on a worker for seconds only (it submits, then defers); if no sample
            # caught one, kill a worker while the applies run in the triggerer, and say so.
            if by_state[("apply", "deferred")] and self._apply_deferred_since is None:
                self._apply_deferred_since = time.monotonic()
            if self._apply_deferred_since and time.monotonic() - self._apply_deferred_since > 60:
                return "worker-1", "apply jobs in progress (no apply task was caught on a worker)"
            return None, ""
        if fault == "scheduler":
            # mid-run: the worker has been killed (or is not part of this test) and work is under way
            if (
                "worker" not in self.pending
                and by_state[("apply", "deferred")] + by_state[("wait_for_output", "deferred")]
            ):
                return "scheduler-1", "runs in flight"
            return None, ""
        waiting = by_state[("wait_for_output", "deferred")]
        if fault == "triggerer" and waiting and "scheduler" not in self.pending:
            return "triggerer-1", f"{waiting} sensors deferred"
        return None, ""

    def _worker_running(self, pid: int) -> str | None:
        """The Celery worker whose session holds ``pid`` (each worker runs in a session of its own)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        session = int(fields[3])
        for name, proc in self.cluster.procs.items():
            if name.startswith("worker-") and proc.pid == session:
                return name
        return None

    def _kill_and_restart(self, name: str, during: str) -> None:
        self.cluster.kill(name)
        self.killed.append(
            {"component": name, "at_s": round(time.monotonic() - self.started, 1), "during": during}
        )
        time.sleep(RESTART_AFTER_S)
        self.cluster.start_component(name)


def backfill_window(schedule: str, now: datetime, count: int) -> tuple[datetime, datetime]:
    """The last ``count`` ticks of ``schedule`` before ``now``: the newest one included, so that
    unpausing the DAG creates no scheduled run of its own (catchup=False picks that tick)."""
    it = croniter(schedule, now)
    ticks = [it.get_prev(datetime) for _ in range(count)]
    return ticks[-1], ticks[0]


def run_cluster_test(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sandbox import Sandbox

    started = time.monotonic()
    conf = {**LOCAL_CONF, "epochs": args.epochs, "progress_stall_minutes": 10, "max_runtime_minutes": 40}
    env = {
        **TEST_TIMINGS,
        "AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE": args.schedule,
        "AIRFLOW__IBM_CLOUD__WORKLOAD_MAX_ACTIVE_RUNS": str(args.runs + args.backfill),
        "AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": "10",
    }
    summary: dict[str, Any] = {"executor": "CeleryExecutor", "schedulers": 2}
    # Jobs that take seconds, as IBM's take minutes: each outlives the operator's first check and is
    # waited for in a triggerer, so that the kills land mid-job (re-attach, resubmission checks).
    with Sandbox(state_dir=work / "sandbox", faults={"slow_jobs": {"seconds": 5}}) as box:
        box.ensure_bucket(DEMO_BUCKET)
        with CeleryCluster(work / "airflow", connections=box.airflow_connections(), extra_env=env) as cluster:
            summary.update(database=cluster.postgres.version(), broker=cluster.redis.version())
            summary["cluster_start_s"] = round(time.monotonic() - started, 1)
            cluster.wait_for_dag(DAG_ID)
            for i in range(args.runs):
                cluster.trigger(DAG_ID, conf=conf, run_id=f"cluster-test-{i}")
            if args.backfill:
                first, last = backfill_window(args.schedule, datetime.now(UTC), args.backfill)
                cluster.airflow_cli(
                    "backfill", "create", "--dag-id", DAG_ID, "--from-date", first.isoformat(),
                    "--to-date", last.isoformat(), "--dag-run-conf", json.dumps(conf),
                    "--max-active-runs", str(args.backfill),
                )  # fmt: skip
            cluster.unpause(DAG_ID)
            chaos = Chaos(cluster, tuple(args.faults), started)
            chaos.start()
            runs = _wait_for_runs(cluster, args.runs + args.backfill, timeout_s=args.timeout)
            chaos.stopping.set()
            chaos.join(timeout=30)
            logs = cluster.home / "logs" / f"dag_id={DAG_ID}"
            sensors_on_workers = sorted(
                run["dag_run_id"]
                for run in runs
                if any(not p.name.count(".log.trigger.") for p in _task_logs(logs, run["dag_run_id"]))
            )
        jobs = box.inventory.snapshot()["jobs"]
        leaked = box.inventory.list()

    # Every workspace of this sandbox belongs to one run (the pipeline makes one per run).
    per_workspace: dict[str, Counter] = {}
    for job in jobs:
        per_workspace.setdefault(job["workspace_name"], Counter())[job["action"]] += 1
    summary.update(
        runs=len(runs),
        workspaces=len(per_workspace),
        manual_runs=sum(run["run_type"] == "manual" for run in runs),
        backfill_runs=sum(run["run_type"] == "backfill" for run in runs),
        succeeded=sum(run["state"] == "success" for run in runs),
        states={run["dag_run_id"]: run["state"] for run in runs},
        killed=chaos.killed,
        faults_not_injected=chaos.pending,
        chaos_error=chaos.error,
        max_applies_per_workspace=max((c["APPLY"] for c in per_workspace.values()), default=0),
        min_applies_per_workspace=min((c["APPLY"] for c in per_workspace.values()), default=0),
        max_destroys_per_workspace=max((c["DESTROY"] for c in per_workspace.values()), default=0),
        min_destroys_per_workspace=min((c["DESTROY"] for c in per_workspace.values()), default=0),
        sensor_running_samples=chaos.sensor_running_samples,
        sensors_run_on_workers=sensors_on_workers,
        leaked_resources=len(leaked),
        duration_s=round(time.monotonic() - started, 1),
    )
    if leaked:
        summary["leaked"] = [f"{r['kind']} {r['name']}" for r in leaked]
    expected_runs = args.runs + args.backfill
    summary["ok"] = (
        summary["runs"] == summary["workspaces"] == expected_runs
        and summary["succeeded"] == expected_runs
        and summary["backfill_runs"] == args.backfill
        and not chaos.pending
        and summary["max_applies_per_workspace"] == summary["min_applies_per_workspace"] == 1
        and summary["max_destroys_per_workspace"] == summary["min_destroys_per_workspace"] == 1
        and summary["leaked_resources"] == 0
        and summary["sensor_running_samples"] == 0
        and not sensors_on_workers
    )
    return summary


def _task_logs(logs: Path, run_id: str) -> list[Path]:
    folder = logs / f"run_id={run_id}" / "task_id=wait_for_output"
    return sorted(folder.iterdir()) if folder.exists() else []


def _wait_for_runs(cluster: CeleryCluster, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        runs = cluster.dag_runs(DAG_ID)
        if len(runs) >= expected and all(run["state"] in TERMINAL for run in runs):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="concurrent manual runs")
    parser.add_argument("--backfill", type=int, default=3, help="logical dates to backfill")
    parser.add_argument("--faults", nargs="*", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per run")
    parser.add_argument("--schedule", default="0 12 * * 1", help="the DAG's schedule (its default)")
    parser.add_argument("--timeout", type=float, default=40 * 60, help="seconds to wait for the runs")
    parser.add_argument("--keep", action="store_true", help="keep the logs and homes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cluster-test-"))
    try:
        summary = run_cluster_test(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.keep:
        summary["work_dir"] = str(work)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The concurrent scenario: N DAG runs at once under a real scheduler, against one sandbox.

One scenario = one sandbox + one fresh Airflow (api-server, scheduler with the LocalExecutor,
dag-processor, triggerer). It triggers ``runs`` DAG runs through the REST API at once and, while they
run, samples every ``sample_s``:

* the task instances (REST): how many worker slots are held, and by which task;
* nothing else over HTTP: the cloud side is read in-process from the sandbox (it runs in this
  process), so that the benchmark adds no request to the Schematics rate limit it measures.

From the sandbox it takes the Schematics activities (when each job was submitted, started, ended),
the time each ``_SUCCESS`` marker was written, and every Schematics request with its HTTP status.
Per run it derives: wall time, cloud time, orchestration overhead, teardown latency, API calls.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scripts.local_airflow import TERMINAL_RUN_STATES, AirflowCluster
from scripts.local_run import DAG_ID, DEMO_BUCKET, LOCAL_CONF, REPO

WAIT_TASK = "wait_for_output"
GRACE_S = 5.0  # a sensor running longer than this before its marker exists holds a slot to wait
SAMPLED_STATES = ("queued", "running", "deferred", "up_for_reschedule")
_WS_PATH = re.compile(r"^/v1/workspaces/([^/]+)")
_ID = re.compile(r"(?<=/)(?=[^/]*\d)[A-Za-z0-9._-]{16,}(?=/|$)")  # workspace, template, activity ids


@dataclass
class ScenarioConfig:
    mode: str = "deferrable"  # deferrable (the DAG as shipped) | poke (bench/poke_policy)
    runs: int = 10
    sensor_poke_s: float = 1.0  # AIRFLOW__IBM_CLOUD__COS_POKE_INTERVAL
    schematics_poll_s: float = 10.0  # AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL
    rate_limit_per_min: int = 50
    parallelism: int = 16
    sample_s: float = 0.5
    timeout_s: float = 900.0
    conf: dict[str, Any] = field(default_factory=dict)
    dags_folder: str = str(REPO / "dags")
    nice_servers: bool = True  # simulated servers at nice 19: the cloud's CPUs are not Airflow's
    # One short run first, not measured: the api-server's and the triggerer's execution API are
    # built at their first request (several seconds each), a cost per process start, not per run.
    warmup: bool = True
    # Sandbox faults for the whole scenario (tests; the benchmark runs none).
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dag_env(self) -> dict[str, str]:
        env = {
            "AIRFLOW__IBM_CLOUD__COS_POKE_INTERVAL": str(self.sensor_poke_s),
            "AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": str(self.schematics_poll_s),
            "AIRFLOW__IBM_CLOUD__WORKLOAD_SCHEDULE": "None",
            "AIRFLOW__IBM_CLOUD__WORKLOAD_MAX_ACTIVE_RUNS": str(self.runs),
        }
        if self.mode == "poke":
            # A cluster policy turns the sensor into a poke-mode one: the DAG itself has no switch.
            policy = REPO / "bench" / "poke_policy"
            env["PYTHONPATH"] = os.pathsep.join([str(policy), str(REPO), str(REPO / "plugins")])
            env["BENCH_POKE_SECONDS"] = str(self.sensor_poke_s)
        elif self.mode != "deferrable":
            raise ValueError(f"unknown sensor mode {self.mode!r}: deferrable or poke")
        return env


def ts(value: str | None) -> float | None:
    """ISO 8601 (``Z`` or offset) -> epoch seconds."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


# -- cloud-side observation (in-process, no HTTP) -------------------------------------------------
class SchematicsTap:
    """Every Schematics request with its time, status and workspace; activities kept after deletion.

    Wraps the sandbox's Schematics dispatcher (an instance attribute, so the sandbox is unchanged) and
    keeps a reference to each workspace's activity records, which the sandbox drops when the
    workspace is deleted at the end of a run.
    """

    def __init__(self, sandbox: Any) -> None:
        self.service = sandbox._schematics
        self.requests: list[tuple[float, int, str | None, str]] = []  # time, status, workspace, route
        self.workspaces: dict[str, dict[str, Any]] = {}  # id -> {"name", "activities": [refs]}
        self._lock = threading.Lock()
        original = self.service.dispatch

        def dispatch(request: Any) -> Any:
            response = original(request)
            ws_id = None
            match = _WS_PATH.match(request.path)
            if match:
                ws_id = match.group(1)
            elif request.method == "POST" and response.status_code < 300:
                try:
                    ws_id = json.loads(response.get_data()).get("id")
                except (ValueError, AttributeError):
                    ws_id = None
            with self._lock:
                self.requests.append(
                    (time.time(), response.status_code, ws_id, f"{request.method} {request.path}")
                )
            self.remember()
            return response

        self.service.dispatch = dispatch

    def reset(self) -> None:
        """Forget the requests seen so far (the warm-up run's)."""
        with self._lock:
            self.requests.clear()

    def remember(self) -> None:
        with self.service._lock:
            for ws_id, ws in self.service._workspaces.items():
                entry = self.workspaces.setdefault(ws_id, {"name": ws.get("name"), "activities": []})
                known = {id(a) for a in entry["activities"]}
                entry["activities"].extend(a for a in ws.get("activities", []) if id(a) not in known)

    def activities(self, ws_id: str) -> list[dict[str, Any]]:
        with self.service._lock:
            acts = [
                json.loads(json.dumps({k: v for k, v in a.items() if not k.startswith("_")}))
                for a in self.workspaces.get(ws_id, {}).get("activities", [])
            ]
        return sorted(acts, key=lambda a: a.get("performed_at") or "")


def marker_times(bucket: str) -> dict[str, float]:
    """``{key: write time}`` of every ``_SUCCESS`` in the sandbox's COS (moto, in-process, µs)."""
    from moto.s3.models import s3_backends

    found: dict[str, float] = {}
    for account in list(s3_backends.keys()):
        backend = s3_backends[account]["global"]
        fake_bucket = backend.buckets.get(bucket)
        if fake_bucket is None:
            continue
        for name in list(fake_bucket.keys.keys()):
            if name.endswith("/_SUCCESS"):
                modified = fake_bucket.keys[name].last_modified
                found[name] = modified.replace(tzinfo=UTC).timestamp()
    return found


# -- Airflow-side observation ----------------------------------------------------------------------
class Sampler(threading.Thread):
    """Samples task-instance states every ``period_s`` through the REST API."""

    def __init__(
        self, cluster: AirflowCluster, tap: SchematicsTap, period_s: float, nice_under: Path | None = None
    ) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.cluster, self.tap, self.period_s = cluster, tap, period_s
        self.nice_under = nice_under
        self.reniced: set[int] = set()
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            started = time.time()
            try:
                tis = self.cluster.task_instances(DAG_ID, SAMPLED_STATES)
            except Exception:
                self.errors += 1
                tis = None
            if tis is not None:
                by_state = Counter(t["state"] for t in tis)
                self.samples.append(
                    {
                        "t": started,
                        "running": by_state.get("running", 0),
                        "running_wait": sum(
                            1 for t in tis if t["state"] == "running" and t["task_id"] == WAIT_TASK
                        ),
                        # which sensors, since when: decides "waiting" (before the run's _SUCCESS)
                        "wait_tis": [
                            [t["dag_run_id"], ts(t.get("start_date"))]
                            for t in tis
                            if t["state"] == "running" and t["task_id"] == WAIT_TASK
                        ],
                        "deferred": by_state.get("deferred", 0),
                        "queued": by_state.get("queued", 0),
                        "up_for_reschedule": by_state.get("up_for_reschedule", 0),
                    }
                )
            self.tap.remember()
            if self.nice_under is not None:
                renice_servers(self.nice_under, self.reniced)
            self._halt.wait(max(0.0, self.period_s - (time.time() - started)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def renice_servers(state_dir: Path, done: set[int]) -> None:
    """Lowest CPU priority for the sandbox's simulated servers (processes running under its dir).

    On a real deployment the training runs on the GPU servers, not on the Airflow machine; here
    they share its CPUs, and ten TensorFlow trainings would starve the scheduler and triggerer.
    """
    marker = str(state_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in done:
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                os.setpriority(os.PRIO_PROCESS, int(entry.name), 19)
                done.add(int(entry.name))
        except OSError:
            continue


# -- the scenario ------------------------------------------------------------------------------------
def run_scenario(cfg: ScenarioConfig, work: Path, log=print) -> dict[str, Any]:
    from ibm_cloud_airflow.utils.run_identity import run_slug
    from sandbox import Sandbox

    conf = {**LOCAL_CONF, **cfg.conf}
    bucket = conf.get("bucket", DEMO_BUCKET)
    started = time.time()
    limit = cfg.rate_limit_per_min or None  # 0: no limit
    # An account that runs this many GPU servers at once has had its GPU quota raised (16 per region).
    gpus = cfg.runs * int(conf.get("vm_count", 1))
    with Sandbox(
        rate_limit_per_min=limit,
        state_dir=work / "sandbox",
        gpu_quota=max(16, gpus),
        faults=cfg.faults or None,
    ) as sandbox:
        sandbox.ensure_bucket(bucket)
        tap = SchematicsTap(sandbox)
        with AirflowCluster(
            work / "airflow",
            connections=sandbox.airflow_connections(),
            dags_folder=Path(cfg.dags_folder),
            extra_env=cfg.dag_env(),
            parallelism=cfg.parallelism,
        ) as af:
            log(f"[{cfg.mode}] airflow up after {time.time() - started:.0f} s; waiting for the DAG")
            af.wait_for_dag(DAG_ID)
            warmup = _warm_up(af, cfg, conf, log) if cfg.warmup else None
            tap.reset()
            sampler = Sampler(af, tap, cfg.sample_s, work / "sandbox" if cfg.nice_servers else None)
            sampler.start()
            run_ids = [f"bench-{cfg.mode}-{i:02d}" for i in range(cfg.runs)]
            for run_id in run_ids:
                af.trigger(DAG_ID, conf=conf, run_id=run_id)
            log(f"[{cfg.mode}] triggered {cfg.runs} runs")
            deadline = time.time() + cfg.timeout_s
            runs: dict[str, dict[str, Any]] = {}
            while time.time() < deadline:
                af.check_alive()
                runs = {r["dag_run_id"]: r for r in af.dag_runs(DAG_ID) if r["dag_run_id"] in run_ids}
                if len(runs) == cfg.runs and all(r["state"] in TERMINAL_RUN_STATES for r in runs.values()):
                    break
                time.sleep(2.0)
            sampler.stop()
            timed_out = not all(r.get("state") in TERMINAL_RUN_STATES for r in runs.values())
            tis = {
                run_id: {
                    t["task_id"]: t
                    for t in af.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").get(
                        "task_instances", []
                    )
                }
                for run_id in run_ids
            }
            reports = {run_id: _run_report(af, run_id) for run_id in run_ids}
            log(f"[{cfg.mode}] runs done ({'timed out' if timed_out else 'all terminal'}); collecting")
        tap.remember()
        markers = marker_times(bucket)
        leaked = sandbox.inventory.list()
        snapshot = sandbox.inventory.snapshot()

    per_run = []
    for run_id in run_ids:
        slug = run_slug(DAG_ID, run_id)
        ws_id = next((w for w, e in tap.workspaces.items() if e["name"] == f"airflow-{slug}"), None)
        run_markers = [t for key, t in markers.items() if f"/{slug}/" in key]
        figures = _run_figures(run_id, runs.get(run_id, {}), tis.get(run_id, {}), tap, ws_id, run_markers)
        per_run.append({**figures, "report": reports.get(run_id)})
    return {
        "config": asdict(cfg),
        "timed_out": timed_out,
        "per_run": per_run,
        "slots": _slot_figures(sampler.samples, per_run),
        "api": _api_figures(tap, cfg, snapshot),
        "leaked_resources": [f"{r['kind']} {r['name']}" for r in leaked],
        "samples": sampler.samples,
        "sampler_errors": sampler.errors,
        "servers_reniced": len(sampler.reniced),
        "scenario_s": round(time.time() - started, 1),
        "warmup": warmup,
    }


def _warm_up(af: AirflowCluster, cfg: ScenarioConfig, conf: dict[str, Any], log: Any) -> dict[str, Any]:
    """Run the DAG once with two epochs and wait for it; its wall time shows the cold start."""
    run_id = f"bench-{cfg.mode}-warmup"
    af.trigger(DAG_ID, conf={**conf, "epochs": 2}, run_id=run_id)
    deadline = time.time() + cfg.timeout_s
    run: dict[str, Any] = {}
    while time.time() < deadline:
        af.check_alive()
        run = next((r for r in af.dag_runs(DAG_ID) if r["dag_run_id"] == run_id), {})
        if run.get("state") in TERMINAL_RUN_STATES:
            break
        time.sleep(2.0)
    start, end = ts(run.get("start_date")), ts(run.get("end_date"))
    log(f"[{cfg.mode}] warm-up run {run.get('state')} in {(end or 0) - (start or 0):.0f} s")
    return {"state": run.get("state"), "wall_s": end - start if start and end else None}


def _run_report(af: AirflowCluster, run_id: str) -> Any:
    """The run's report as the ``report`` task returned it (its XCom), or None."""
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/report/xcomEntries/return_value"
    try:
        return af.api("GET", path, params={"deserialize": "true"}).get("value")
    except Exception:  # a run whose report task failed has none: the figures say why
        return None


def _run_figures(
    run_id: str,
    run: dict[str, Any],
    tis: dict[str, dict[str, Any]],
    tap: SchematicsTap,
    ws_id: str | None,
    markers: list[float],
) -> dict[str, Any]:
    start, end = ts(run.get("start_date")), ts(run.get("end_date"))
    jobs: dict[str, dict[str, Any]] = {}  # kind -> first submission, last end, count
    intervals: list[tuple[float, float]] = []
    for act in tap.activities(ws_id) if ws_id else []:
        submitted = ts(act.get("performed_at"))
        ended = max((ts(t.get("end_time")) or 0.0 for t in act.get("templates", [])), default=0.0) or None
        job = jobs.setdefault(str(act.get("name", "")).lower(), {"submitted": submitted, "jobs": 0})
        job.update(ended=ended, status=act.get("status"), jobs=job["jobs"] + 1)
        if submitted and ended:
            intervals.append((submitted, ended))
    success_at = max(markers) if markers else None
    apply_job = jobs.get("apply", {})
    if success_at and apply_job.get("submitted"):
        intervals.append((apply_job["submitted"], success_at))  # the servers train from apply on
    cloud_s = _union_length(intervals) if intervals else None
    wall_s = end - start if start and end else None
    destroy_submitted = jobs.get("destroy", {}).get("submitted")

    def ti_time(task_id: str, key: str) -> float | None:
        return ts((tis.get(task_id) or {}).get(key))

    def minus(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    wait_end = ti_time(WAIT_TASK, "end_date")
    return {
        "run_id": run_id,
        "state": run.get("state"),
        "tasks": {k: v.get("state") for k, v in tis.items()},
        # each task's queued/start/end, in seconds after the run started: where the overhead goes
        "task_times_s": {
            task_id: {
                key: None
                if minus(ti_time(task_id, key), start) is None
                else round(minus(ti_time(task_id, key), start), 2)
                for key in ("queued_when", "start_date", "end_date")
            }
            for task_id in tis
        },
        "wall_s": wall_s,
        "cloud_s": cloud_s,
        "overhead_s": minus(wall_s, cloud_s),
        "teardown_latency_s": minus(destroy_submitted, success_at),
        # where the teardown latency goes: the sensor noticing, then the scheduler reaching destroy
        "sensor_detect_s": minus(wait_end, success_at),
        "sensor_to_destroy_submit_s": minus(destroy_submitted, wait_end),
        "success_written_at": success_at,
        "jobs": {
            name: {
                "submitted": j["submitted"],
                "jobs": j["jobs"],
                "status": j.get("status"),
                "took_s": minus(j.get("ended"), j["submitted"]),
                # the task noticed the job's end this much later (polling + resuming the task)
                "noticed_after_s": minus(ti_time(name, "end_date"), j.get("ended")),
            }
            for name, j in jobs.items()
        },
        "train_s": minus(success_at, apply_job.get("ended")),
        "schematics_calls": sum(1 for _, _, w, _ in tap.requests if w is not None and w == ws_id),
    }


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, cur_start, cur_end = 0.0, None, None
    for begin, finish in sorted(intervals):
        if cur_end is None or begin > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = begin, finish
        else:
            cur_end = max(cur_end, finish)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def _slot_figures(samples: list[dict[str, Any]], per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """Worker slots held by sensors while their run's workload still trains (no ``_SUCCESS`` yet).

    ``strict`` counts every running sensor before its marker exists, including the deferrable
    sensor's first check (it pokes once in a worker, then defers; about a second). ``held`` leaves
    out sensors that have been running for less than ``GRACE_S``: a slot *held* while waiting.
    """
    if not samples:
        return {"samples": 0}
    success = {r["run_id"]: r["success_written_at"] for r in per_run}
    period = (
        statistics.median(b["t"] - a["t"] for a, b in itertools.pairwise(samples))
        if len(samples) > 1
        else 0.0
    )
    strict, held = [], []
    for sample in samples:
        waiting = [
            started
            for run_id, started in sample.get("wait_tis", [])
            if success.get(run_id) is None or sample["t"] < success[run_id]
        ]
        strict.append(len(waiting))
        held.append(sum(1 for started in waiting if started is None or sample["t"] - started > GRACE_S))
    return {
        "samples": len(samples),
        "sample_period_s": period,
        "grace_s": GRACE_S,
        "max_held_by_waiting_sensors": max(held),
        "max_running_waiting_sensors_strict": max(strict),
        "slot_seconds_waiting": sum(strict) * period,
        "slot_seconds_all_running_sensors": sum(s["running_wait"] for s in samples) * period,
        "max_running_all_tasks": max(s["running"] for s in samples),
        "max_deferred": max(s["deferred"] for s in samples),
    }


def _api_figures(tap: SchematicsTap, cfg: ScenarioConfig, snapshot: dict[str, Any]) -> dict[str, Any]:
    times = sorted(t for t, _, _, _ in tap.requests)
    statuses = Counter(s for _, s, _, _ in tap.requests)
    peak, j = 0, 0
    for i, t in enumerate(times):  # sliding 60 s window, as the limiter counts
        while times[j] <= t - 60.0:
            j += 1
        peak = max(peak, i - j + 1)
    accepted = sorted(t for t, s, _, _ in tap.requests if s != 429)
    peak_accepted, j = 0, 0
    for i, t in enumerate(accepted):
        while accepted[j] <= t - 60.0:
            j += 1
        peak_accepted = max(peak_accepted, i - j + 1)
    per_minute = (snapshot.get("requests", {}).get("per_minute", {}) or {}).get("schematics", {})
    return {
        "total": len(times),
        "per_run": len(times) / cfg.runs if cfg.runs else None,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "http_429": statuses.get(429, 0),
        "peak_per_60s_window": peak,
        "peak_accepted_per_60s_window": peak_accepted,
        "peak_per_calendar_minute": max(per_minute.values(), default=0),
        "inventory_total": sum(
            n
            for k, n in (snapshot.get("requests", {}).get("by_endpoint", {}) or {}).items()
            if k.startswith("schematics ")
        ),
        "limit_per_min": cfg.rate_limit_per_min,
        "by_route": dict(Counter(_ID.sub("<id>", r) for _, _, _, r in tap.requests).most_common()),
    }


def median_of(values: list[float | None]) -> dict[str, Any] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


__all__ = ["REPO", "ScenarioConfig", "median_of", "run_scenario"]

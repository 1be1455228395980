"""A real, local Airflow 3 deployment: api-server, scheduler (LocalExecutor), dag-processor and
triggerer as subprocesses against a fresh ``AIRFLOW_HOME``.

One launcher for everything that needs a running Airflow: ``make airflow`` (scripts/airflow_ui.py),
the browser tests (tests/ui), the benchmarks (bench/concurrent.py) and the end-to-end scheduler test.
A multi-process variant (e.g. Celery workers) passes its own ``executor``, ``components`` and
``extra_env``. The caller's Airflow settings (``AIRFLOW__*``) and OpenLineage variables
(``OPENLINEAGE_*``) reach every component, except those the launcher owns (home, database, folders,
executor, login, ports and URLs, ``extra_env``); ``default_env`` holds settings they may override.

SQLite is enough here: in Airflow 3 workers and triggers talk to the api-server (execution API), not
to the DB, and Airflow 3.3 accepts the LocalExecutor on SQLite (``airflow standalone`` does the
same). Every component runs in its own process group and writes to ``<home>/logs/<component>.log``;
leaving the context manager stops them all (SIGTERM to the group, SIGKILL after a grace period), so
no LocalExecutor worker or task process outlives the benchmark.

    with AirflowCluster(home, dags_folder=..., extra_env={...}) as af:
        af.wait_for_dag("ibm_gpu_workload")
        run_id = af.trigger("ibm_gpu_workload", conf={...})

Authentication is Airflow's SimpleAuthManager: by default every visitor is an admin with no login
(tests, benchmarks); with ``login=(user, password)`` the UI asks for that user's password.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.local_run import REPO, airflow_env, prepare_home

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = ("success", "failed")


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on loopback, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ClusterError("no free port on 127.0.0.1")


class ClusterError(RuntimeError):
    pass


class AirflowCluster:
    """Start/stop the Airflow components and talk to the REST API (token from SimpleAuthManager)."""

    #: name the caller's settings that reach the components (a subclass that owns more names its own)
    announce_settings = True

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path = REPO / "dags",
        connections: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        default_env: dict[str, str] | None = None,
        parallelism: int = 16,
        api_workers: int = 2,
        start_timeout_s: float = 180.0,
        port: int | None = None,
        login: tuple[str, str] | None = None,
        executor: str = "LocalExecutor",
        components: tuple[str, ...] = COMPONENTS,
    ) -> None:
        self.home = home
        self.port = free_port(port)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.login = login
        self.components = components
        # What this deployment decides itself: which code, which executor, its login, and how its
        # processes find each other (ports, URLs, secrets). The caller's other AIRFLOW__* settings
        # and OPENLINEAGE_* variables override the defaults below (scripts/local_run.airflow_env).
        self.owned = {
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(login is None),
            # SimpleAuthManager users are "name:role"; their passwords come from this file.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{login[0]}:admin" if login else "",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **(extra_env or {}),
        }
        defaults = {
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__WORKERS": str(api_workers),
            # Find the DAG file soon after start; re-parse it rarely (it does not change).
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
            **(default_env or {}),
        }
        # Connections go into the metadata DB at start (Admin > Connections lists them, the UI can
        # edit them); as environment variables they would be invisible there and shadow any edit.
        self.connections = dict(connections or {})
        self.env = airflow_env(home, {}, defaults=defaults, owned=self.owned, announce=self.announce_settings)
        self.procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None
        self._http = httpx.Client(base_url=self.base_url, timeout=30.0)

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> AirflowCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log_dir(self) -> Path:
        return self.home / "component-logs"

    def start(self) -> None:
        prepare_home(self.home)
        if self.login:
            user, password = self.login
            (self.home / "passwords.json").write_text(json.dumps({user: password}))
        store_connections(sys.executable, self.env, self.connections, self.home)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for component in self.components:
            args = [component] if component != "api-server" else [component, "--port", str(self.port)]
            with (self.log_dir / f"{component}.log").open("wb") as log:
                self.procs[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    cwd=REPO,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() kills workers and tasks too
                )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if self._http.get("/api/v2/monitor/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise ClusterError(f"api-server not healthy after {self.start_timeout_s:.0f} s; see {self.log_dir}")

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise ClusterError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self, grace_s: float = 15.0) -> None:
        self._http.close()
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # whatever is left in the group (workers, tasks)
            _kill_session(proc.pid)  # task processes put themselves in groups of their own
            if proc.poll() is None:
                proc.wait(timeout=10)

    # -- REST API ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self._token is None:
            if self.login:
                user, password = self.login
                response = self._http.post("/auth/token", json={"username": user, "password": password})
            else:
                # SIMPLE_AUTH_MANAGER_ALL_ADMINS: GET /auth/token hands out an admin token, no password.
                response = self._http.get("/auth/token")
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, "/api/v2" + path, headers=self._headers(), **kwargs)
        if response.status_code == 401:  # token expired: get a new one once
            self._token = None
            response = self._http.request(method, "/api/v2" + path, headers=self._headers(), **kwargs)
        if response.status_code >= 400:
            raise ClusterError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialised ``dag_id``; fail fast on an import error."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                return self.api("GET", f"/dags/{dag_id}")
            except ClusterError:
                pass
            errors = self.api("GET", "/importErrors").get("import_errors") or []
            if errors:
                raise ClusterError(f"DAG import errors: {[e.get('stack_trace', '')[-1500:] for e in errors]}")
            time.sleep(1.0)
        raise ClusterError(f"DAG {dag_id} not parsed after {timeout_s:.0f} s; see {self.log_dir}")

    def trigger(self, dag_id: str, *, conf: dict[str, Any], run_id: str) -> dict[str, Any]:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).get("dag_runs") or []

    def task_instances(self, dag_id: str, states: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        params: list[tuple[str, Any]] = [("limit", 1000)] + [("state", s) for s in states]
        data = self.api("GET", f"/dags/{dag_id}/dagRuns/~/taskInstances", params=params)
        return data.get("task_instances") or []


def store_connections(python: str, env: dict[str, str], connections: dict[str, str], home: Path) -> list[str]:
    """Put ``connections`` (``AIRFLOW_CONN_<ID>``: JSON or a URI) into the metadata DB of ``env``.

    ``airflow connections import --overwrite``, as an operator would: the same connections again
    at each start. The file it reads is the owner's alone and removed at once; no value is printed.
    Returns the connection ids.
    """
    entries: dict[str, Any] = {}
    for name, value in connections.items():
        conn: Any = json.loads(value) if value.lstrip().startswith("{") else value
        if isinstance(conn, dict) and isinstance(conn.get("extra"), dict):
            conn = {**conn, "extra": json.dumps(conn["extra"])}
        entries[name.removeprefix("AIRFLOW_CONN_").lower()] = conn
    if not entries:
        return []
    path = home / "connections.json"
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        json.dump(entries, file)
    try:
        result = subprocess.run(
            [python, "-m", "airflow", "connections", "import", "--overwrite", str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    if result.returncode != 0:
        said = result.stderr[-1500:]
        for secret in _secret_values(entries.values()):
            said = said.replace(secret, "***")
        raise ClusterError(f"storing the connections {sorted(entries)} failed ({result.returncode}): {said}")
    return sorted(entries)


def _secret_values(connections: Any) -> list[str]:
    """Whatever of the connections an error message must not show: logins, passwords, URIs."""
    values: list[str] = []
    for conn in connections:
        if isinstance(conn, str):
            values.append(conn)
        else:
            values.extend(str(conn[k]) for k in ("login", "password") if conn.get(k))
    return values


def _kill_session(sid: int) -> None:
    """SIGKILL every process left in session ``sid`` (the component's, from start_new_session)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session ...
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group id is the child's pid (start_new_session=True)

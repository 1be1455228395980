"""``make cluster``: Airflow as ``docker-compose.yaml`` runs it, on loopback, without Docker.

CeleryExecutor on PostgreSQL and Redis, with one api-server, two schedulers, one dag-processor, two
triggerers and two Celery workers, next to the local IBM Cloud sandbox. The Airflow configuration is
the compose file's ``AIRFLOW__*`` environment, read from that file (so the two cannot drift); only
the hosts and ports of the database, the broker and the execution API differ, plus the local paths
and per-process ports that several components on one host need.

PostgreSQL and Redis are Debian's servers (``make cluster-deps`` installs them), each started in a
temporary data directory on 127.0.0.1. PostgreSQL refuses to run as root, so as root it runs as the
``postgres`` user that Debian's package creates.

    make cluster          # prints the UI's URL and login; Ctrl-C stops every process it started
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from scripts.local_airflow import AirflowCluster, ClusterError, _kill_session, _signal_group, free_port
from scripts.local_run import (
    DAG_ID,
    DEMO_BUCKET,
    REPO,
    announce_passed_through,
    home_settings,
    passed_through,
)

COMPOSE_FILE = REPO / "docker-compose.yaml"
# The compose settings that name the other containers: here they point at the local servers.
HOST_SETTINGS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)
ADMIN_USER = "admin"
RUNTIME_PYTHON = REPO / ".venv-cluster" / "bin" / "python"


def compose_airflow_settings(compose_file: Path = COMPOSE_FILE) -> dict[str, str]:
    """The ``AIRFLOW__*`` settings every Airflow container of the compose file gets."""
    compose = yaml.safe_load(compose_file.read_text())
    env = compose["x-airflow-common"]["environment"]
    return {key: str(value) for key, value in env.items() if key.startswith("AIRFLOW__")}


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(cmd[:3])}... failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


class Postgres:
    """A throw-away PostgreSQL server on 127.0.0.1 with one database and user, ``airflow``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        # PostgreSQL refuses root: run it as the unprivileged user Debian's package creates.
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def bindir(self) -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            raise ClusterError("PostgreSQL server binaries not found; run `make cluster-deps`")
        return Path(found[-1]).parent

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow:{self.password}@127.0.0.1:{self.port}/airflow"

    def version(self) -> str:
        out = _run([str(self.bindir / "postgres"), "--version"]).stdout  # "postgres (PostgreSQL) 15.18 (...)"
        return "postgresql " + out.split()[2]

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data, pwfile = self.root / "data", self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        _run(
            self._as_server_user(
                [str(self.bindir / "initdb"), "-D", str(data), "-U", "airflow", f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]
            )
        )  # fmt: skip
        pwfile.unlink()
        with (self.root / "postgres.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self._as_server_user(
                    [str(self.bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                     "-p", str(self.port), "-c", f"unix_socket_directories={self.root}",
                     "-c", "max_connections=300", "-c", "fsync=off"]
                ),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password}
        deadline = time.monotonic() + 60
        while subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
        ).returncode:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"PostgreSQL did not start; see {self.root / 'postgres.log'}")
            time.sleep(0.3)
        _run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow",
              "airflow"], env=env)  # fmt: skip

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGINT)  # "fast" shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
            _signal_group(self.proc, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A throw-away Redis on 127.0.0.1 (no persistence): the Celery broker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        out = _run(["redis-server", "--version"]).stdout  # "Redis server v=7.0.15 sha=..."
        return "redis " + next(w[2:] for w in out.split() if w.startswith("v="))

    def start(self) -> None:
        server = shutil.which("redis-server")
        if not server:
            raise ClusterError("redis-server not found; run `make cluster-deps`")
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "redis.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                 "--dir", str(self.root)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:  # RESP's inline PING: the test harness needs no Redis client library
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"Redis did not start; see {self.root / 'redis.log'}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            _signal_group(self.proc, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


class CeleryCluster(AirflowCluster):
    """The compose layout as local processes; components can be killed and restarted by name."""

    announce_settings = False  # it holds back more of them than the base: it names its own

    def __init__(
        self,
        home: Path,
        *,
        connections: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        schedulers: int = 2,
        triggerers: int = 2,
        workers: int = 2,
        worker_concurrency: int = 4,
        start_timeout_s: float = 240.0,
        python: Path = RUNTIME_PYTHON,
    ) -> None:
        super().__init__(home, connections=connections, start_timeout_s=start_timeout_s)
        # Airflow runs from the runtime environment alone (requirements.txt and
        # requirements-cluster.txt, as in the image); the sandbox and this harness run beside it.
        self.python = str(python)
        self._http.timeout = httpx.Timeout(120.0)  # a loaded 2-core machine answers slowly
        self.services = Path(tempfile.mkdtemp(prefix="airflow-cluster-"))
        self.services.chmod(0o711)  # the postgres user must reach its data directory below
        self.postgres = Postgres(self.services / "postgres")
        self.redis = Redis(self.services / "redis")
        self.admin_password = secrets.token_urlsafe(12)
        self.login = (ADMIN_USER, self.admin_password)
        # Start from the LocalExecutor environment of the benchmark (home, folders, connections,
        # API host and port), drop what compose decides, then take every compose setting, then the
        # caller's AIRFLOW__* and OPENLINEAGE_* settings but those the cluster owns.
        compose = compose_airflow_settings()
        owned = {
            "AIRFLOW__CORE__EXECUTOR": compose["AIRFLOW__CORE__EXECUTOR"],
            "AIRFLOW__CORE__AUTH_MANAGER": compose["AIRFLOW__CORE__AUTH_MANAGER"],
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "IBM_CLOUD_AIRFLOW_BUDGET_DIR": str(home / "budget"),
            "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]),
            # as the compose file's .env gives them: AIRFLOW_CONN_* variables
            **(connections or {}),
            **(extra_env or {}),
        }
        env = {k: v for k, v in self.env.items() if not k.startswith("AIRFLOW__CORE__SIMPLE_AUTH")}
        env.update(compose)
        # Every component shares one host's CPUs here: give the execution API longer than the 5 s
        # default to answer a task before it counts as a failure.
        env["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"] = "30"
        callers = passed_through({*home_settings(home), *self.owned, *owned})
        announce_passed_through(callers)
        env.update(callers)
        env.update(owned)
        self.env = env
        # name -> (airflow arguments, the environment that is the component's own)
        self.specs: dict[str, tuple[list[str], dict[str, str]]] = {"api-server": (
            ["api-server", "--port", str(self.port)], {})}  # fmt: skip
        for i in range(1, schedulers + 1):  # each answers its own health check
            self.specs[f"scheduler-{i}"] = (
                ["scheduler"],
                {"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port())},
            )
        self.specs["dag-processor"] = (["dag-processor"], {})
        for i in range(1, triggerers + 1):
            self.specs[f"triggerer-{i}"] = (
                ["triggerer"],
                {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())},
            )
        for i in range(1, workers + 1):
            self.specs[f"worker-{i}"] = (
                ["celery", "worker", "--concurrency", str(worker_concurrency),
                 "--celery-hostname", f"worker-{i}@%h"],
                {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
            )  # fmt: skip

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.redis.start()
        if not Path(self.python).exists():
            raise ClusterError(f"{self.python} not found; run `make cluster-deps`")
        airflow = [self.python, "-m", "airflow"]
        _run([*airflow, "db", "migrate"], cwd=REPO, env=self.env)
        _run(
            [*airflow, "users", "create", "--username", ADMIN_USER, "--password", self.admin_password,
             "--firstname", "Airflow", "--lastname", "Admin", "--role", "Admin",
             "--email", "admin@localhost"],
            cwd=REPO, env=self.env,
        )  # fmt: skip
        for name in self.specs:
            self.start_component(name)
        self._wait_healthy()

    def start_component(self, name: str) -> None:
        args, env = self.specs[name]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [self.python, "-m", "airflow", *args],
                cwd=REPO,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session: a kill takes its workers and tasks along
            )

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything it started, as when its container or node dies."""
        proc = self.procs.pop(name)
        _signal_group(proc, signal.SIGKILL)
        _kill_session(proc.pid)
        proc.wait(timeout=10)

    def stop(self, grace_s: float = 15.0) -> None:
        try:
            super().stop(grace_s)
        finally:
            self.redis.stop()
            self.postgres.stop()
            shutil.rmtree(self.services, ignore_errors=True)

    def _headers(self) -> dict[str, str]:
        if self._token is None:  # FAB: a JWT for the admin's user name and password
            response = self._http.post(
                "/auth/token", json={"username": ADMIN_USER, "password": self.admin_password}
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def airflow_cli(self, *args: str) -> str:
        """Run ``airflow <args>`` against the cluster's database, as an operator would."""
        return _run([self.python, "-m", "airflow", *args], cwd=REPO, env=self.env).stdout

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """The REST API; reads are retried while the api-server is too busy to answer."""
        deadline = time.monotonic() + (300 if method == "GET" else 0)
        while True:
            try:
                return super().api(method, path, **kwargs)
            except (httpx.TransportError, ClusterError) as err:
                busy = isinstance(err, httpx.TransportError) or " HTTP 5" in str(err)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def main() -> int:
    from sandbox import Sandbox

    home = REPO / ".airflow" / "cluster"
    shutil.rmtree(home, ignore_errors=True)
    with Sandbox(state_dir=REPO / ".sandbox") as box:
        box.ensure_bucket(DEMO_BUCKET)
        env = {"AIRFLOW__IBM_CLOUD__SCHEMATICS_POLL_INTERVAL": "10"}
        with CeleryCluster(home, connections=box.airflow_connections(), extra_env=env) as cluster:
            cluster.wait_for_dag(DAG_ID)
            user, password = cluster.login
            quick = json.dumps({"epochs": 3, "max_runtime_minutes": 15})
            print(
                f"Airflow (CeleryExecutor, PostgreSQL, Redis; {len(cluster.components)} processes) is up:\n"
                f"  UI:    {cluster.base_url}\n  login: {user} / {password}\n"
                f"  The DAG '{DAG_ID}' starts paused, as in docker compose: unpause it, then Trigger\n"
                f"  (conf {quick} makes a quick run on the sandbox).\n"
                f"  logs:  {cluster.log_dir}\nCtrl-C stops every process.",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    cluster.check_alive()
                    time.sleep(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parse-time benchmark: the DAG file against a minimal one-task DAG, parsed the same way.

Airflow 3.3's dag-processor parses each file in a child that it *forks* from a parent that has
already imported Airflow (``airflow.dag_processing.processor``) and pre-imported the ``airflow.*``
modules the file names (``[dag_processor] parsing_pre_import_modules``). The child builds a DagBag
for the one file, so the DAG's own modules (``gpu_pipeline``, ``ibm_cloud_airflow``) are imported
afresh at every parse. This benchmark does the same:

* **cold**: one fresh interpreter (the "fork server") imports Airflow like the dag-processor, then
  forks one child per parse; each child times only ``DagBag(dag_folder=<file>)``.
* **warm**: afterwards, the fork server parses the file again and again in-process (its modules
  are cached; only the DAG file itself is executed again), as a long-lived process that re-parses
  would.

The DAG file and the baseline file are parsed alternately in the same process, so drift on a
shared machine hits both alike.
"""

from __future__ import annotations

import compileall
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAG_FILE = REPO / "dags" / "ibm_gpu_workload.py"

BASELINE_DAG = '''"""A minimal one-task DAG: the parse-time baseline."""
from airflow.sdk import DAG, task

with DAG(dag_id="bench_baseline", schedule=None, catchup=False):

    @task
    def hello() -> str:
        return "hello"

    hello()
'''


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": [round(v, 6) for v in values],
    }


# -- the fork server (runs in a fresh interpreter with the benchmark's Airflow environment) -------
def _parse_once(path: str) -> tuple[float, dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    modules = len(sys.modules)
    started = time.perf_counter()
    bag = DagBag(dag_folder=path, load_op_links=False)
    elapsed = time.perf_counter() - started
    return elapsed, {
        "dags": len(bag.dag_ids),
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "modules_imported": len(sys.modules) - modules,
    }


def _breakdown_once(path: str) -> tuple[float, dict[str, Any]]:
    """Where a cold parse goes: importing the modules the file names, then building the DagBag."""
    import importlib

    started = time.perf_counter()
    for module in _file_imports(path):
        name, _, attr = module.partition(":")
        loaded = importlib.import_module(name)
        if attr:
            getattr(loaded, attr)
    imports_s = time.perf_counter() - started
    elapsed, info = _parse_once(path)
    return imports_s + elapsed, {**info, "imports_s": imports_s, "dag_construction_s": elapsed}


def _file_imports(path: str) -> list[str]:
    """Modules the file imports at top level (``airflow.sdk`` names resolved to their modules)."""
    import ast

    modules: list[str] = []
    for node in ast.parse(Path(path).read_text()).body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            if node.module == "airflow.sdk":  # lazy attributes: DAG, task, ... load on access
                modules += [f"airflow.sdk:{alias.name}" for alias in node.names]
    return [m for m in modules if m != "__future__"]


def _parse_in_child(path: str, parse: Any = None) -> tuple[float, dict[str, Any]]:
    """Fork, parse in the child, send the timing back through a pipe (as the dag-processor does)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            elapsed, info = (parse or _parse_once)(path)
            payload = json.dumps({"elapsed": elapsed, **info}).encode()
        except BaseException as exc:  # report, never raise out of a forked child
            payload = json.dumps({"elapsed": None, "error": repr(exc)}).encode()
            code = 1
        with os.fdopen(write_fd, "wb") as out:
            out.write(payload)
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as src:
        data = json.loads(src.read() or b"{}")
    os.waitpid(pid, 0)
    if data.get("elapsed") is None:
        raise RuntimeError(f"parse of {path} failed in the child: {data.get('error')}")
    return data["elapsed"], data


def fork_server(files: dict[str, str], count: int) -> dict[str, Any]:
    """Entry point of the child interpreter: cold (forked) then warm (in-process) parses."""
    import importlib

    started = time.perf_counter()
    import airflow

    # What the dag-processor has loaded before it forks
    import airflow.dag_processing.manager
    import airflow.dag_processing.processor  # noqa: F401
    from airflow.utils.file import iter_airflow_imports

    for path in files.values():
        for module in iter_airflow_imports(path):
            importlib.import_module(module)
    airflow_import_s = time.perf_counter() - started
    # The dag-processor's manager freezes its objects before it starts forking parsers
    # (DagFileProcessorManager.before_run: "To prevent COW in forked process parsing dag file").
    # Without it a full collection in a child walks, and copies, every object Airflow's import
    # left behind: 200-300 ms that a parse in a real dag-processor never pays.
    gc.freeze()

    cold: dict[str, list[float]] = {name: [] for name in files}
    info: dict[str, Any] = {}
    for _ in range(count):
        for name, path in files.items():
            elapsed, details = _parse_in_child(path)
            cold[name].append(elapsed)
            info[name] = {k: details.get(k) for k in ("dags", "import_errors", "modules_imported")}
    breakdown: dict[str, list[dict[str, float]]] = {name: [] for name in files}
    for _ in range(max(3, count // 4)):
        for name, path in files.items():
            _, details = _parse_in_child(path, _breakdown_once)
            breakdown[name].append({k: details[k] for k in ("imports_s", "dag_construction_s")})
    warm: dict[str, list[float]] = {name: [] for name in files}
    for path in files.values():
        _parse_once(path)  # first in-process parse imports the DAG's modules: not "warm"
    for _ in range(count):
        for name, path in files.items():
            warm[name].append(_parse_once(path)[0])
    return {
        "airflow_import_s": airflow_import_s,
        "cold": cold,
        "warm": warm,
        "breakdown": breakdown,
        "info": info,
    }


# -- the benchmark, run from the bench process ------------------------------------------------------
def airflow_parse_env(home: Path) -> dict[str, str]:
    """Environment of a throwaway Airflow (no DB needed to parse) with the repo's plugins folder."""
    from scripts.local_run import airflow_env

    env = airflow_env(home, {})
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    return env


def run(count: int = 20, dag_file: Path = DAG_FILE, timeout_s: float = 600) -> dict[str, Any]:
    """Parse ``dag_file`` and the baseline ``count`` times each, cold and warm; seconds."""
    # A dag-processor finds plugins/ byte-compiled, as Python caches every module at its first
    # import; where PYTHONDONTWRITEBYTECODE is set (as on the development VMs) nothing would be
    # cached, and each parse would compile the package's sources again.
    compileall.compile_dir(REPO / "plugins", quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        tmp_path = Path(tmp)
        baseline = tmp_path / "baseline_dag" / "bench_baseline.py"
        baseline.parent.mkdir()
        baseline.write_text(BASELINE_DAG)
        home = tmp_path / "home"
        home.mkdir()
        request = {"files": {"dag": str(dag_file), "baseline": str(baseline)}, "count": count}
        proc = subprocess.run(
            [sys.executable, "-m", "bench.parse"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            cwd=REPO,
            env=airflow_parse_env(home),
            timeout=timeout_s,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"parse benchmark failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, details in raw["info"].items():
        if details.get("import_errors") or not details.get("dags"):
            raise RuntimeError(f"{name} did not parse cleanly: {details}")
    result: dict[str, Any] = {
        "count": count,
        "airflow_import_s": raw["airflow_import_s"],
        "modules_imported_per_cold_parse": {k: v.get("modules_imported") for k, v in raw["info"].items()},
    }
    result["cold_breakdown_median_s"] = {
        name: {p: statistics.median(b[p] for b in parts) for p in ("imports_s", "dag_construction_s")}
        for name, parts in raw["breakdown"].items()
    }
    for kind in ("cold", "warm"):
        dag, base = _summary(raw[kind]["dag"]), _summary(raw[kind]["baseline"])
        result[kind] = {"dag": dag, "baseline": base, "ratio": dag["median"] / base["median"]}
    return result


def main() -> int:
    request = json.loads(sys.stdin.read())
    result = fork_server(request["files"], int(request["count"]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: every benchmark against a baseline measured in the same run.

    python -m bench                      # parse + all four cluster scenarios (about 30 minutes)
    python -m bench --only parse         # parse time only (about 20 s)
    python -m bench --runs 4 --poll-seconds 5

Sizes come from flags or environment variables (flag wins): ``BENCH_PARSES`` (20), ``BENCH_RUNS``
(10), ``BENCH_POLL_SECONDS`` (10: Schematics job polling in both scenarios), ``BENCH_POKE_SECONDS``
(60: the poke-mode baseline's poke interval, Airflow's default), ``BENCH_SENSOR_SECONDS`` (1: the
deferrable sensor's poll interval, the DAG's default), ``BENCH_SCENARIO_TIMEOUT`` (1200 s per
scenario), ``BENCH_EPOCHS`` (150: training epochs per run, so that the trainings outlast the
orchestration, as real ones do, and the sensors really wait),
``BENCH_RATE_LIMIT`` (50: the sandbox's Schematics requests per minute; 0 turns the limit off),
``BENCH_NICE_SERVERS`` (1: the simulated GPU servers run at nice 19, as they would not share the
Airflow machine's CPUs in the cloud).
Prints a table and writes ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(REPO), str(REPO / "plugins")) if p not in sys.path]

from bench import parse  # noqa: E402
from bench.concurrent import ScenarioConfig, median_of, run_scenario  # noqa: E402

RESULTS = REPO / "bench" / "results.json"


def _env_num(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def machine_info() -> dict[str, Any]:
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    from importlib.metadata import version

    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_avg_at_start": load,
        "airflow": version("apache-airflow"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
    }


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None:
        return None
    if baseline == 0:
        return 0.0 if value == 0 else None
    return value / baseline


def figure(
    name: str,
    unit: str,
    value: Any,
    baseline: Any,
    target: str,
    met: bool | None,
    note: str = "",
) -> dict[str, Any]:
    """One row: ``value``/``baseline`` are numbers or ``{"median","min","max","n"}`` summaries."""
    v = value.get("median") if isinstance(value, dict) else value
    b = baseline.get("median") if isinstance(baseline, dict) else baseline
    return {
        "figure": name,
        "unit": unit,
        "value": value,
        "baseline": baseline,
        "ratio": _ratio(v, b),
        "target": target,
        "met": met,
        "note": note,
    }


def parse_figures(result: dict[str, Any]) -> list[dict[str, Any]]:
    cold, warm = result["cold"], result["warm"]
    ms = {
        k: {**v[side], **{m: v[side][m] * 1000 for m in ("median", "min", "max")}}
        for k, v in (("cold", cold), ("warm", warm))
        for side in ("dag",)
    }
    base = {
        k: {**v["baseline"], **{m: v["baseline"][m] * 1000 for m in ("median", "min", "max")}}
        for k, v in (("cold", cold), ("warm", warm))
    }
    for summary in (*ms.values(), *base.values()):
        summary.pop("values", None)
    rows = []
    for kind in ("cold", "warm"):
        ratio = result[kind]["ratio"]
        rows.append(
            figure(
                f"parse time, {kind} ({'fresh forked process' if kind == 'cold' else 'in-process re-parse'})",
                "ms",
                ms[kind],
                base[kind],
                "< 50 ms and <= 2x baseline",
                ms[kind]["median"] < 50 and ratio <= 2.0,
                f"baseline: one-task DAG; {result['count']} parses each",
            )
        )
    return rows


def med(scenario: dict[str, Any], key: str) -> dict[str, Any] | None:
    """Median (with min, max, n) of one per-run figure of a scenario."""
    return median_of([r.get(key) for r in scenario["per_run"]])


def cluster_figures(main: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    def ok_runs(scenario: dict[str, Any]) -> int:
        return sum(1 for r in scenario["per_run"] if r.get("state") == "success")

    teardown, teardown_b = med(main, "teardown_latency_s"), med(base, "teardown_latency_s")
    overhead, overhead_b = med(main, "overhead_s"), med(base, "overhead_s")
    slots, slots_b = main["slots"], base["slots"]
    api, api_b = main["api"], base["api"]
    poke = base["config"]["sensor_poke_s"]
    return [
        figure(
            "runs succeeded",
            "runs",
            ok_runs(main),
            ok_runs(base),
            f"{main['config']['runs']}",
            ok_runs(main) == main["config"]["runs"],
            "deferrable vs poke-mode baseline",
        ),
        figure(
            "teardown latency (_SUCCESS written -> destroy submitted)",
            "s",
            teardown,
            teardown_b,
            "< 5 s median",
            bool(teardown and teardown["median"] < 5),
            f"baseline: poke mode, poke_interval {poke:g} s",
        ),
        figure(
            "worker slots held by sensors waiting > 5 s (max)",
            "slots",
            slots.get("max_held_by_waiting_sensors"),
            slots_b.get("max_held_by_waiting_sensors"),
            "0",
            slots.get("max_held_by_waiting_sensors") == 0,
            f"sampled every {main['config']['sample_s']:g} s; waiting = before the run's _SUCCESS",
        ),
        figure(
            "sensors running before their _SUCCESS, incl. first check (max)",
            "slots",
            slots.get("max_running_waiting_sensors_strict"),
            slots_b.get("max_running_waiting_sensors_strict"),
            "",
            None,
            "the deferrable sensor starts in the triggerer (start_from_trigger)",
        ),
        figure(
            "worker slot-seconds spent waiting (all runs)",
            "slot-s",
            slots.get("slot_seconds_waiting"),
            slots_b.get("slot_seconds_waiting"),
            "~0",
            None,
            "sum over samples of sensors running before their _SUCCESS x sample period",
        ),
        figure(
            "orchestration overhead per run (wall - cloud time)",
            "s",
            overhead,
            overhead_b,
            "< 15 s median",
            bool(overhead and overhead["median"] < 15),
            "cloud = union of Schematics jobs and training (apply submitted -> _SUCCESS)",
        ),
        figure(
            "Schematics API calls per run",
            "calls",
            api["per_run"],
            api_b["per_run"],
            "",
            None,
            f"Schematics job polling every {main['config']['schematics_poll_s']:g} s",
        ),
        figure(
            f"peak Schematics calls per 60 s ({main['config']['runs']} concurrent runs)",
            "calls",
            api["peak_per_60s_window"],
            api_b["peak_per_60s_window"],
            f"<= {api['limit_per_min'] or 50} (limit)",
            api["peak_per_60s_window"] <= (api["limit_per_min"] or 50),
            "sliding window, as the sandbox's limiter counts; 429s included",
        ),
        figure(
            "HTTP 429 answers from Schematics",
            "responses",
            api["http_429"],
            api_b["http_429"],
            "0",
            api["http_429"] == 0,
            "",
        ),
    ]


def single_run_figures(main: dict[str, Any], base: dict[str, Any]) -> list[dict[str, Any]]:
    """One run alone: the orchestration's own cost, without ten runs sharing the request budget."""

    overhead, teardown = med(main, "overhead_s"), med(main, "teardown_latency_s")
    return [
        figure(
            "orchestration overhead, one run alone (wall - cloud time)",
            "s",
            overhead,
            med(base, "overhead_s"),
            "< 15 s median",
            bool(overhead and overhead["median"] < 15),
            "baseline: the same run with the poke-mode sensor",
        ),
        figure(
            "teardown latency, one run alone",
            "s",
            teardown,
            med(base, "teardown_latency_s"),
            "< 5 s median",
            bool(teardown and teardown["median"] < 5),
            "baseline: the same run with the poke-mode sensor",
        ),
    ]


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, dict):
        return f"{_fmt(value['median'], unit)} [{_fmt(value['min'], unit)}-{_fmt(value['max'], unit)}]"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> str:
    header = ("figure", "unit", "value (median [min-max])", "baseline", "ratio", "target", "met")
    lines = [header] + [
        (
            r["figure"],
            r["unit"],
            _fmt(r["value"], r["unit"]),
            _fmt(r["baseline"], r["unit"]),
            "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["target"] or "-",
            {True: "yes", False: "NO", None: "-"}[r["met"]],
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(out)
    print(text)
    return text


def _write(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=("all", "parse", "cluster", "single"),
        default=os.environ.get("BENCH_ONLY", "all"),
    )
    parser.add_argument("--parses", type=int, default=int(_env_num("BENCH_PARSES", 20)))
    parser.add_argument("--runs", type=int, default=int(_env_num("BENCH_RUNS", 10)))
    parser.add_argument("--poll-seconds", type=float, default=_env_num("BENCH_POLL_SECONDS", 10))
    parser.add_argument("--poke-seconds", type=float, default=_env_num("BENCH_POKE_SECONDS", 60))
    parser.add_argument("--sensor-seconds", type=float, default=_env_num("BENCH_SENSOR_SECONDS", 1))
    parser.add_argument("--scenario-timeout", type=float, default=_env_num("BENCH_SCENARIO_TIMEOUT", 1200))
    parser.add_argument("--epochs", type=int, default=int(_env_num("BENCH_EPOCHS", 150)))
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=int(_env_num("BENCH_RATE_LIMIT", 50)),
        help="the sandbox's Schematics requests/minute (0: no limit, to see the pipeline's own latency)",
    )
    parser.add_argument("--dags-folder", default=str(REPO / "dags"), help="(development) another DAG folder")
    parser.add_argument(
        "--nice-servers",
        type=int,
        choices=(0, 1),
        default=int(_env_num("BENCH_NICE_SERVERS", 1)),
        help="run the sandbox's simulated GPU servers at nice 19 (1, default) or not (0)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the scenarios' Airflow homes and logs")
    args = parser.parse_args(argv)
    # Stop cleanly on Ctrl-C and on SIGTERM (also when started in the background, where SIGINT is
    # ignored): the scenarios' context managers then stop Airflow and the sandbox's servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.time()
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "figures": [],
    }
    rows: list[dict[str, Any]] = []
    if args.only in ("all", "parse"):
        print(
            f"parse: {args.parses} cold + {args.parses} warm parses of the DAG and of the baseline ...",
            flush=True,
        )
        results["parse"] = parse.run(count=args.parses)
        rows += parse_figures(results["parse"])
    if args.only in ("all", "cluster", "single"):
        # Long enough that sensors really wait (training outlasts the poke interval), and a stall
        # timeout that survives 10 TensorFlow imports at once on 2 cores.
        conf = {"epochs": args.epochs, "progress_stall_minutes": 5}
        common = {
            "runs": args.runs,
            "schematics_poll_s": args.poll_seconds,
            "rate_limit_per_min": args.rate_limit,
            "nice_servers": args.nice_servers,
            "timeout_s": args.scenario_timeout,
            "conf": conf,
            "dags_folder": args.dags_folder,
        }
        scenarios = {}
        if args.only != "single":
            scenarios["deferrable"] = ScenarioConfig(
                mode="deferrable", sensor_poke_s=args.sensor_seconds, **common
            )
            scenarios["poke_baseline"] = ScenarioConfig(
                mode="poke", sensor_poke_s=args.poke_seconds, **common
            )
        # The same pipeline with one run alone: what orchestration costs without the shared budget.
        single = {**common, "runs": 1}
        scenarios["single"] = ScenarioConfig(mode="deferrable", sensor_poke_s=args.sensor_seconds, **single)
        scenarios["single_poke"] = ScenarioConfig(mode="poke", sensor_poke_s=args.poke_seconds, **single)
        root = Path(
            tempfile.mkdtemp(prefix="bench-", dir=REPO / ".airflow" if (REPO / ".airflow").is_dir() else None)
        )
        results["work_dir"] = str(root)
        for name, cfg in scenarios.items():
            print(f"cluster: {name}: {cfg.runs} concurrent runs ...", flush=True)
            results[name] = run_scenario(cfg, root / name, log=lambda m: print(m, flush=True))
            _write(args.output, results)  # partial results survive an interrupted run
        if "deferrable" in results:
            rows += cluster_figures(results["deferrable"], results["poke_baseline"])
        rows += single_run_figures(results["single"], results["single_poke"])
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    results["figures"] = rows
    results["duration_s"] = round(time.time() - started, 1)
    print()
    results["table"] = print_table(rows)
    _write(args.output, results)
    print(f"\nwrote {args.output} in {results['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Keeps the benchmark code honest: the parse benchmark, small (the cluster scenarios are not run)."""

from __future__ import annotations

import json

from bench import parse
from bench.__main__ import parse_figures, print_table


def test_parse_benchmark_smoke(capsys) -> None:
    result = parse.run(count=3, timeout_s=120)

    for kind in ("cold", "warm"):
        for side in ("dag", "baseline"):
            summary = result[kind][side]
            assert summary["n"] == 3
            assert 0 < summary["min"] <= summary["median"] <= summary["max"] < 30
        assert result[kind]["ratio"] > 0
    # The DAG pulls in its own modules at every cold parse, as the dag-processor's forked child does.
    assert result["modules_imported_per_cold_parse"]["dag"] > 0

    rows = parse_figures(result)
    assert [r["unit"] for r in rows] == ["ms", "ms"]
    table = print_table(rows)
    assert "parse time, cold" in table and "parse time, warm" in table
    json.dumps(rows)  # results.json must be able to hold the rows

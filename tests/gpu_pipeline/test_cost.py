"""The cost model: a price for every offered profile, the worst case that gates validate, the run's cost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from gpu_pipeline.cost import budget_problem, hourly_rate, price_table, profile_price, run_cost, worst_case
from gpu_pipeline.params import GPU_PROFILES, PARAMS


def defaults(**overrides):
    params = {name: param.value for name, param in PARAMS.items()}
    params.update(overrides)
    return params


def test_every_offered_gpu_profile_has_a_dated_sourced_price():
    table = price_table()
    datetime.strptime(table["as_of"], "%Y-%m-%d")
    for profile in GPU_PROFILES:
        entry = table["gpu_profiles"][profile]
        assert entry["usd_per_hour"] > 0 and entry["source"], profile
    # The trigger form shows each profile's price next to it.
    labels = PARAMS["gpu_profile"].schema["values_display"]
    assert f"{profile_price('gx2-8x64x1v100'):.2f} USD/h" in labels["gx2-8x64x1v100"]


def test_worst_case_is_servers_times_price_times_ttl_plus_the_rest():
    # TTL 90 min, then a failed run's hold: 10 minutes to decide, 20 minutes kept.
    params = defaults(
        gpu_profile="gx2-8x64x1v100",
        vm_count=2,
        max_runtime_minutes=90,
        keep_on_failure_minutes=20,
        hold_decision_minutes=10,
    )
    worst = worst_case(params)
    rate = hourly_rate("gx2-8x64x1v100", 2)
    assert worst.hours == 2.0
    # Without a hold nobody is asked: no time to decide is counted.
    assert worst_case({**params, "keep_on_failure_minutes": 0}).hours == 1.5
    assert rate.servers == pytest.approx(2 * 2.497)
    assert worst.usd == pytest.approx(round(rate.total * 2.0, 2))
    assert rate.total > rate.servers  # boot volumes and the gateway are billed too
    assert hourly_rate("gx2-8x64x1v100", 2, debug_mode=True).floating_ips > 0


def test_the_default_run_is_within_the_default_budget():
    assert budget_problem(defaults()) is None


def test_an_over_budget_run_gets_one_line_with_the_numbers_and_the_fix():
    # The example: a typo of 8 H100 servers for a day.
    params = defaults(gpu_profile="gx3d-160x1792x8h100", vm_count=8, max_runtime_minutes=1440)
    problem = budget_problem(params)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("max_cost_usd: the worst case is ")
    assert f"{worst_case(params).usd:.2f} USD" in problem
    assert "8 x gx3d-160x1792x8h100" in problem and "24 h" in problem
    assert "Raise max_cost_usd" in problem


def test_run_cost_prices_the_servers_lifetime_and_the_teardown_share():
    cost = run_cost(
        profile="gx2-8x64x1v100",
        vm_count=1,
        debug_mode=False,
        servers_up="2026-12-02T10:00:00Z",
        work_ended="2026-12-02T10:45:00Z",
        servers_down="2026-12-02T11:00:00+00:00",
    )
    rate = hourly_rate("gx2-8x64x1v100", 1).total
    assert cost.lifetime_s == 3600 and cost.teardown_s == 900
    assert cost.usd == pytest.approx(rate, abs=1e-4)
    assert cost.teardown_share == 0.25
    assert cost.teardown_usd == pytest.approx(rate / 4, abs=1e-4)
    assert "no discounts" in cost.basis
    # Servers that never came up cost nothing that can be measured.
    assert (
        run_cost(
            profile="gx2-8x64x1v100",
            vm_count=1,
            debug_mode=False,
            servers_up=None,
            work_ended=None,
            servers_down=datetime.now(UTC).isoformat(),
        )
        is None
    )


def test_a_stopped_server_bills_its_boot_volume_and_network_not_its_profile():
    """suspend-billing.md: vCPU, RAM, GPU, instance storage stop; volumes and floating IPs go on."""
    rate = hourly_rate("gx3d-160x1792x8h100", 1, debug_mode=True)
    assert rate.stopped == pytest.approx(rate.boot_volumes + rate.public_gateway + rate.floating_ips)
    assert 0 < rate.stopped < rate.total - rate.servers + 1e-9
    cost = run_cost(
        profile="gx3d-160x1792x8h100",
        vm_count=1,
        debug_mode=True,
        servers_up="2026-12-02T10:00:00Z",
        work_ended="2026-12-02T10:30:00Z",
        servers_stopped="2026-12-02T10:30:00Z",  # powered off at the end of its work
        servers_down="2026-12-02T11:00:00Z",
    )
    assert cost.usd == pytest.approx(rate.total / 2 + rate.stopped / 2, abs=1e-4)
    assert cost.teardown_usd == pytest.approx(rate.stopped / 2, abs=1e-4)
    # the budget gate stays conservative: every server runs for the whole TTL
    worst = worst_case(defaults(gpu_profile="gx3d-160x1792x8h100", max_runtime_minutes=60))
    assert worst.rate.total == pytest.approx(hourly_rate("gx3d-160x1792x8h100", 1).total)

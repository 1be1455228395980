"""What a run costs: the worst case before anything exists, and an estimate of the actual cost after.

Prices come from ``prices.py`` next to this module (one dated, editable table). The model is
deliberately simple and says so in every result: list prices, no discounts, no taxes, no data
transfer or COS charges; a server bills from when it exists until it is deleted.

A *stopped* server is cheaper, not free (ibm-cloud-docs/vpc ``suspend-billing.md``, lastupdated
2026-03-18, "Billing details"): vCPU, RAM, GPU and instance storage stop billing; floating IPs and
VPC storage (the boot volume) keep billing. The page says so for an instance stopped "by using the
IBM Cloud console, CLI, or API"; it does not say whether a server that powers itself off from its
operating system (what ``workload/bootstrap.sh`` does at the deadline) counts, and its 2020 version
said that one does not. So the worst case (the budget gate) prices every server running for the
whole TTL, and :func:`run_cost` prices a stop only when it is given one (``servers_stopped``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gpu_pipeline import prices

PRICES_FILE = "plugins/gpu_pipeline/prices.py"
BASIS = "list prices, no discounts, no taxes, no data transfer or COS charges"


def price_table() -> dict[str, Any]:
    return {"as_of": prices.AS_OF, "gpu_profiles": prices.GPU_PROFILES, "other": prices.OTHER}


def profile_price(profile: str) -> float:
    """USD per hour of one server of ``profile``; KeyError names the file to edit."""
    try:
        return float(price_table()["gpu_profiles"][profile]["usd_per_hour"])
    except KeyError:
        raise KeyError(f"no price for GPU profile {profile!r} in {PRICES_FILE}; add one") from None


def _other(name: str) -> float:
    return float(price_table()["other"][name]["value"])


@dataclass(frozen=True)
class HourlyRate:
    """USD per hour of one run while its servers exist, by part."""

    servers: float
    boot_volumes: float
    public_gateway: float
    floating_ips: float

    @property
    def total(self) -> float:
        return self.servers + self.boot_volumes + self.public_gateway + self.floating_ips

    @property
    def stopped(self) -> float:
        """USD per hour while the servers are stopped: the profile's price (vCPU, RAM, GPU, instance
        storage) stops, boot volumes, floating IPs and the gateway go on (suspend-billing.md)."""
        return self.boot_volumes + self.public_gateway + self.floating_ips


def hourly_rate(profile: str, vm_count: int, *, debug_mode: bool = False) -> HourlyRate:
    """What the run's Terraform creates, priced per hour (one gateway; a floating IP per server in debug)."""
    return HourlyRate(
        servers=vm_count * profile_price(profile),
        boot_volumes=vm_count * _other("boot_volume_gb") * _other("boot_volume_usd_per_gb_hour"),
        public_gateway=_other("public_gateway_usd_per_hour"),
        floating_ips=vm_count * _other("floating_ip_usd_per_hour") if debug_mode else 0.0,
    )


@dataclass(frozen=True)
class WorstCase:
    usd: float
    hours: float
    rate: HourlyRate
    profile: str
    vm_count: int

    def explain(self) -> str:
        """The numbers in one line, e.g. for validate's error."""
        r = self.rate
        return (
            f"{self.vm_count} x {self.profile} at {profile_price(self.profile):.2f} USD/h "
            f"+ boot volumes, gateway{' and floating IPs' if r.floating_ips else ''} "
            f"({r.total - r.servers:.2f} USD/h) = {r.total:.2f} USD/h x {self.hours:g} h "
            f"= {self.usd:.2f} USD"
        )


def worst_case(params: dict[str, Any]) -> WorstCase:
    """The most a run can cost: every server up for the whole TTL plus the hold after a failure
    (the time to decide in the UI, then the minutes kept)."""
    keep = params.get("keep_on_failure_minutes", 0)
    decide = params.get("hold_decision_minutes", 0) if keep else 0
    hours = (params["max_runtime_minutes"] + decide + keep) / 60
    rate = hourly_rate(params["gpu_profile"], params["vm_count"], debug_mode=bool(params.get("debug_mode")))
    return WorstCase(
        usd=round(rate.total * hours, 2),
        hours=round(hours, 3),
        rate=rate,
        profile=params["gpu_profile"],
        vm_count=params["vm_count"],
    )


def budget_problem(params: dict[str, Any]) -> str | None:
    """One line for validate when the worst case is over ``max_cost_usd``; None when within it."""
    budget = params.get("max_cost_usd")
    if budget is None:
        return None
    worst = worst_case(params)
    if worst.usd <= budget:
        return None
    return (
        f"max_cost_usd: the worst case is {worst.usd:.2f} USD, over the budget of {budget:g} USD "
        f"({worst.explain()}). Raise max_cost_usd, or lower vm_count or max_runtime_minutes, "
        f"or pick a cheaper gpu_profile (prices: {PRICES_FILE}, as of {prices.AS_OF})."
    )


def _parse(ts: Any) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class RunCost:
    usd: float
    hourly_usd: float
    lifetime_s: float
    teardown_s: float
    teardown_usd: float
    teardown_share: float
    servers_up: str | None
    servers_down: str | None
    prices_as_of: str
    basis: str = BASIS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_cost(
    *,
    profile: str,
    vm_count: int,
    debug_mode: bool,
    servers_up: Any,
    work_ended: Any,
    servers_down: Any,
    servers_stopped: Any = None,
) -> RunCost | None:
    """The estimated actual cost: servers' lifetime (end of apply to end of destroy) x hourly rate.

    ``work_ended`` (the last marker the servers wrote, or the destroy's start) splits the lifetime:
    what follows it is teardown latency. ``servers_stopped`` (when the VPC API showed every server
    stopped, if it did) prices the rest of the lifetime at the stopped rate (:attr:`HourlyRate.stopped`).
    None when the servers never came up or never went down.
    """
    up, down = _parse(servers_up), _parse(servers_down)
    if up is None or down is None or down < up:
        return None
    end_of_work = _parse(work_ended) or down
    end_of_work = min(max(end_of_work, up), down)
    stopped = _parse(servers_stopped)
    stopped = down if stopped is None else min(max(stopped, up), down)
    hourly = hourly_rate(profile, vm_count, debug_mode=debug_mode)
    rate = hourly.total
    lifetime = (down - up).total_seconds()
    teardown = (down - end_of_work).total_seconds()

    def cost(start: datetime, end: datetime) -> float:
        """USD between ``start`` and ``end``: running until ``stopped``, the stopped rate after."""
        running = max(0.0, (min(end, stopped) - start).total_seconds())
        idle = max(0.0, (end - max(start, stopped)).total_seconds())
        return (rate * running + hourly.stopped * idle) / 3600

    usd = cost(up, down)
    return RunCost(
        usd=round(usd, 4),
        hourly_usd=round(rate, 4),
        lifetime_s=round(lifetime, 1),
        teardown_s=round(teardown, 1),
        teardown_usd=round(cost(end_of_work, down), 4),
        teardown_share=round(teardown / lifetime, 3) if lifetime > 0 else 0.0,
        servers_up=up.isoformat(),
        servers_down=down.isoformat(),
        prices_as_of=price_table()["as_of"],
    )

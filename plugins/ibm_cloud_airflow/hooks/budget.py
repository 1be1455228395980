"""A shared budget of Schematics requests per API key, so that concurrent runs never meet a 429.

Schematics limits each user to a number of requests per minute, counted across every run, task
and trigger that uses the API key. Reacting to 429s (``Retry-After``) makes every caller wait a
whole window, and each rejected request is itself counted. So every Schematics request first
takes a slot from a sliding-window budget kept in SQLite files (``pyrate-limiter``) under a
directory shared by all processes on the machine: the workers' task processes and the triggerer.

The budget has nested tiers, so that waiting never delays cleanup: polls (job status, logs,
readiness) may use at most ``POLL_SHARE`` of it, polls and other work together at most
``WORK_SHARE``, and teardown requests (submitting a destroy, stopping a job) all of it: the
servers bill until their destroy starts, while deleting the emptied workspace can wait. A
request takes a slot of its own tier and of every wider one.

The triggerer waits for a slot on its event loop (``acquire_async``) and hands it to the thread
that sends the request through ``SchematicsHook.with_prepaid_slot()``.

Processes on other machines (Celery or Kubernetes workers) keep their own budget: give each
machine its share through the connection's ``rate_limit_per_minute`` (see docs/provider.md).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

# Operators name their tier at DAG-parse time: this module imports nothing heavy at the top.
POLL = "poll"
WORK = "work"
TEARDOWN = "teardown"
POLL_SHARE = 0.6
WORK_SHARE = 0.8
DEFAULT_DIR_NAME = "ibm-cloud-airflow-budget"  # under the temporary directory
BUDGET_DIR_ENV = "IBM_CLOUD_AIRFLOW_BUDGET_DIR"  # a deployment-wide default for extra budget_dir
MARGIN_S = 1.0


@dataclass(frozen=True)
class BudgetSpec:
    """``requests`` per ``window_s`` seconds for the key ``key`` (a digest, never the API key)."""

    key: str
    requests: int
    window_s: float
    state_dir: Path

    @classmethod
    def for_api_key(
        cls, api_key: str, endpoint: str, requests: int, window_s: float, state_dir: Path | None
    ) -> BudgetSpec:
        import hashlib
        import tempfile

        digest = hashlib.sha256(f"{endpoint}\n{api_key}".encode()).hexdigest()[:16]
        if state_dir is None:
            shared = os.environ.get(BUDGET_DIR_ENV)
            state_dir = Path(shared) if shared else Path(tempfile.gettempdir()) / DEFAULT_DIR_NAME
        return cls(digest, requests, window_s, state_dir)

    def tier_limit(self, tier: str) -> int:
        share = {POLL: POLL_SHARE, WORK: WORK_SHARE, TEARDOWN: 1.0}[tier]
        return max(1, math.floor(self.requests * share))


class RequestBudget:
    """Blocks (or awaits) until a request of a tier fits in the budget; see the module docstring."""

    def __init__(self, spec: BudgetSpec, max_wait_s: float = 600.0) -> None:
        from pyrate_limiter import Limiter, Rate, SQLiteBucket

        self.spec = spec
        self.max_wait_s = max_wait_s
        spec.state_dir.mkdir(parents=True, exist_ok=True)
        # A slot is taken before the request is sent (an IAM token may be fetched in between):
        # the window is a little longer than Schematics' so that arrivals stay within its limit.
        window_ms = int((spec.window_s + MARGIN_S) * 1000)

        def limiter(name: str, limit: int) -> Limiter:
            # One file per limit: every process that opens it shares the same sliding window.
            path = spec.state_dir / f"{spec.key}-{name}-{limit}-per-{window_ms}ms.sqlite"
            bucket = SQLiteBucket.init_from_file(
                [Rate(limit, window_ms)], table="requests", db_path=str(path), use_file_lock=True
            )
            return Limiter(bucket)

        self._all = limiter("all", spec.requests)
        # A tier whose share rounds up to the whole budget needs no limit of its own.
        shares = {tier: spec.tier_limit(tier) for tier in (POLL, WORK)}
        self._tiers = {tier: limiter(tier, n) for tier, n in shares.items() if n < spec.requests}

    def _limiters(self, tier: str) -> list:
        wider = {POLL: (POLL, WORK), WORK: (WORK,), TEARDOWN: ()}[tier]
        return [self._tiers[t] for t in wider if t in self._tiers] + [self._all]

    def acquire(self, tier: str) -> None:
        for limiter in self._limiters(tier):
            if not limiter.try_acquire(tier, blocking=True, timeout=self.max_wait_s):
                raise self._exhausted(tier)

    async def acquire_async(self, tier: str) -> None:
        for limiter in self._limiters(tier):
            if not await limiter.try_acquire_async(tier, blocking=True, timeout=self.max_wait_s):
                raise self._exhausted(tier)

    def _exhausted(self, tier: str) -> Exception:
        from ibm_cloud_airflow.exceptions import IbmCloudApiError

        return IbmCloudApiError(
            f"No Schematics request budget for a {tier} request within {self.max_wait_s:.0f} s "
            f"({self.spec.requests} requests per {self.spec.window_s:.0f} s); too many concurrent runs "
            "share this API key"
        )


_budgets: dict[BudgetSpec, RequestBudget] = {}
_budgets_lock = threading.Lock()


def request_budget(spec: BudgetSpec) -> RequestBudget:
    """One budget object per process and spec: the triggerer's many triggers share it."""
    with _budgets_lock:
        budget = _budgets.get(spec)
        if budget is None:
            budget = _budgets[spec] = RequestBudget(spec)
        return budget

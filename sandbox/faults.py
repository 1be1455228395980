"""Named faults the sandbox can inject, chosen at start or at run time.

A fault is a name plus options. Components ask ``faults.active(name)`` for faults that last
(``rate_limited``) and ``faults.take(name)`` for faults that fire a limited number of times
(``destroy_fails_once``): ``take`` returns True and counts down until the fault is spent.
"""

from __future__ import annotations

import threading
from typing import Any

FAULT_NAMES = (
    "plan_fails",
    "apply_fails_midway",
    "no_capacity",
    "destroy_fails_once",
    "api_errors",
    "rate_limited",
    "workspace_locked",
    "workload_fails",
    "workload_hangs",
    "short_tokens",
    "worker_dies",
    "api_key_missing_policy",
    "slow_jobs",
    "profile_not_offered",
    # the first server dies after its first checkpoint: {"as": "deleted" | "stopped" | "restarted"}
    "server_lost",
)


class UnknownFaultError(ValueError):
    pass


class FaultSet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Any]] = {}

    def set(self, faults: dict[str, dict[str, Any]] | list[str]) -> None:
        """Replace the active faults. ``faults`` is a list of names or ``{name: options}``."""
        parsed = {name: {} for name in faults} if isinstance(faults, list) else dict(faults)
        unknown = sorted(set(parsed) - set(FAULT_NAMES))
        if unknown:
            raise UnknownFaultError(f"unknown fault(s) {unknown}; known: {', '.join(FAULT_NAMES)}")
        with self._lock:
            self._faults = {name: dict(opts or {}) for name, opts in parsed.items()}

    def active(self, name: str) -> bool:
        with self._lock:
            return name in self._faults

    def options(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._faults.get(name, {}))

    def take(self, name: str, default_times: int = 1) -> bool:
        """True if the fault fires now; each firing uses one of its ``times`` (default 1)."""
        with self._lock:
            opts = self._faults.get(name)
            if opts is None:
                return False
            remaining = opts.get("times", default_times)
            if remaining <= 0:
                return False
            opts["times"] = remaining - 1
            return True

    def describe(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._faults.items()}


def parse_fault_spec(text: str) -> dict[str, dict[str, Any]] | list[str]:
    """Parse ``SANDBOX_FAULTS``/``--faults`` text: a JSON list of names, a JSON ``{name: options}``
    object, or (for the shell) plain comma-separated names such as ``api_errors,short_tokens``."""
    text = text.strip()
    if not text:
        return []
    if text[0] in "[{":
        import json

        spec = json.loads(text)
        if not isinstance(spec, list | dict):
            raise ValueError("a fault spec is a JSON list of names or an object {name: options}")
        return spec
    return [name.strip() for name in text.split(",") if name.strip()]

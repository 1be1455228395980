"""The sandbox's record of live simulated cloud resources and of the API requests it served.

Every emulated service reads and writes this one store: the Terraform engine adds resources on
apply and removes them on destroy, the VPC API and the leak checks list them, and the inventory
endpoint shows them. It is thread-safe because each service runs its own server thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Inventory:
    """Live resources plus request counters (per endpoint and per minute)."""

    def __init__(self, region: str = "us-south", account_id: str = "sandbox0account") -> None:
        self.region = region
        self.account_id = account_id
        self._lock = threading.RLock()
        self._resources: dict[str, dict[str, Any]] = {}
        self._requests: Counter[str] = Counter()
        self._per_minute: dict[str, Counter[int]] = defaultdict(Counter)
        self._events: list[dict[str, Any]] = []
        self._jobs: list[dict[str, Any]] = []

    # -- resources -------------------------------------------------------------------------
    def add(
        self,
        kind: str,
        name: str,
        *,
        tags: list[str] | None = None,
        workspace_id: str | None = None,
        attrs: dict[str, Any] | None = None,
        resource_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a resource record and return a copy of it.

        ``kind`` is the Terraform resource type (``ibm_is_instance``) or a provider-made kind
        (``boot_volume``); ``attrs`` holds whatever the emulated APIs need to answer about it.
        """
        rid = resource_id or f"r006-{uuid.uuid4()}"
        record = {
            "id": rid,
            "crn": f"crn:v1:bluemix:public:is:{self.region}:a/{self.account_id}::{kind}:{rid}",
            "kind": kind,
            "name": name,
            "tags": list(tags or []),
            "workspace_id": workspace_id,
            "created_at": _now_iso(),
            "attrs": dict(attrs or {}),
        }
        with self._lock:
            self._resources[rid] = record
            self._events.append({"event": "created", "id": rid, "kind": kind, "time": time.time()})
        return dict(record)

    def remove(self, resource_id: str) -> bool:
        """Delete a resource; False when it was not there (deleting twice is not an error)."""
        with self._lock:
            record = self._resources.pop(resource_id, None)
            if record is not None:
                self._events.append(
                    {"event": "deleted", "id": resource_id, "kind": record["kind"], "time": time.time()}
                )
            return record is not None

    def get(self, resource_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._resources.get(resource_id)
            return dict(record) if record else None

    def update_attrs(self, resource_id: str, **attrs: Any) -> None:
        with self._lock:
            if resource_id in self._resources:
                self._resources[resource_id]["attrs"].update(attrs)

    def list(self, kind: str | None = None, workspace_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(r)
                for r in self._resources.values()
                if (kind is None or r["kind"] == kind)
                and (workspace_id is None or r["workspace_id"] == workspace_id)
            ]

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    # -- Schematics jobs ever submitted (workspaces are deleted at the end of a run; this stays) --
    def record_job(self, *, workspace_id: str, workspace_name: str, action: str, activity_id: str) -> None:
        with self._lock:
            self._jobs.append(
                {
                    "workspace_id": workspace_id,
                    "workspace_name": workspace_name,
                    "action": action,
                    "activity_id": activity_id,
                    "submitted_at": _now_iso(),
                }
            )

    # -- request accounting ----------------------------------------------------------------
    def count_request(self, service: str, method: str, route: str) -> None:
        """Count one served request as ``"<service> <METHOD> <route template>"``."""
        key = f"{service} {method} {route}"
        minute = int(time.time() // 60)
        with self._lock:
            self._requests[key] += 1
            self._per_minute[service][minute] += 1

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests)

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /sandbox/inventory`` returns."""
        with self._lock:
            return {
                "resources": [
                    {k: r[k] for k in ("id", "kind", "name", "tags", "workspace_id", "created_at")}
                    for r in self._resources.values()
                ],
                "jobs": [dict(j) for j in self._jobs],
                "requests": {
                    "by_endpoint": dict(self._requests),
                    "per_minute": {
                        service: {
                            datetime.fromtimestamp(m * 60, UTC).strftime("%Y-%m-%dT%H:%MZ"): n
                            for m, n in sorted(counter.items())
                        }
                        for service, counter in self._per_minute.items()
                    },
                },
            }

"""Where a run's servers go: an ordered list of placements (zone, GPU profile), tried in turn.

A GPU zone without capacity stays without it for hours, so retrying it rarely helps: when an apply
fails because the zone cannot start the servers, the run releases what the apply created and moves
to the next placement. The default list is the run's own zone first, then every other zone of the
region that offers the profile (IBM's table, :mod:`gpu_pipeline.gpu_profiles`), in name order. A
run may give its own list (``placements``), with other profiles too. Every server of a run is in
the placement's one zone (the VPC's subnet is zonal): two of four servers is a failed placement.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpu_pipeline.gpu_profiles import placement_problems, zones_offering

#: What the VPC API and the IBM provider report when a zone cannot start a server of a profile:
#: the instance status reasons of ibm-cloud-docs/vpc ``instance-status-messages.md`` (codes from the
#: SDK's ``InstanceStatusReason.CodeEnum``), and the create call's refusal of a profile that the
#: zone does not offer. Anything else (quota, IAM, a bad image, a bug) is not failed over.
CAPACITY_CODES = (
    "cannot_start_capacity",
    "cannot_start_placement_group",
    "cannot_start_reservation_capacity",
    "instance_profile_not_available",
)
_CAPACITY = re.compile("|".join(CAPACITY_CODES))


@dataclass(frozen=True)
class Placement:
    zone: str
    gpu_profile: str

    def __str__(self) -> str:
        return f"{self.zone} ({self.gpu_profile})"


def default_placements(region: str, zone: str, gpu_profile: str) -> list[Placement]:
    """The run's zone, then the region's other zones that offer the profile, in name order."""
    others = sorted(z for z in zones_offering(gpu_profile) if z.startswith(f"{region}-") and z != zone)
    return [Placement(zone, gpu_profile), *(Placement(z, gpu_profile) for z in others)]


def run_placements(params: dict[str, Any]) -> tuple[list[Placement], list[str]]:
    """The run's placements (its ``placements`` or the default), and the problems with them."""
    given = params.get("placements")
    if not given:
        return default_placements(params["region"], params["zone"], params["gpu_profile"]), []
    placements = [
        Placement(p["zone"], p.get("gpu_profile") or params["gpu_profile"]) for p in given if p.get("zone")
    ]
    problems = []
    for p in placements:
        if not p.zone.startswith(f"{params['region']}-"):
            problems.append(f"placements: zone '{p.zone}' is not in region '{params['region']}'.")
        problems += [
            f"placements: {line}" for line in placement_problems(p.gpu_profile, params["region"], p.zone)
        ]
    if len(set(placements)) != len(placements):
        problems.append("placements: a placement is listed twice; each is tried once.")
    return placements, problems


def capacity_error(text: str) -> str | None:
    """The capacity code in an apply's error, or None when the failure is not about capacity."""
    found = _CAPACITY.search(text or "")
    return found.group(0) if found else None


def explain_capacity(code: str, text: str) -> str:
    """``<code>: <IBM's message>`` out of the provider's error (its status reasons are JSON)."""
    found = re.search(rf'"code":\s*"{code}",\s*"message":\s*"([^"]*)"', text or "")
    if found:
        return f"{code}: {found.group(1)}"
    line = next((ln for ln in (text or "").splitlines() if code in ln), text or "")
    return line.strip()[:300]


@dataclass
class Attempt:
    zone: str
    gpu_profile: str
    started_at: float
    ended_at: float | None = None
    outcome: str = "running"  # running, succeeded, no_capacity, failed
    error: str | None = None
    #: the partial apply's servers were up this long, at most (a failed start is not billed)
    seconds: float | None = None


@dataclass
class PlacementState:
    """Which placement a run is on, and what became of each one tried (kept in task_state_store)."""

    placements: list[Placement]
    index: int = 0
    deadline: float | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def current(self) -> Placement:
        return self.placements[self.index]

    @property
    def exhausted(self) -> bool:
        return self.index + 1 >= len(self.placements)

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def start(self) -> None:
        self.attempts.append(Attempt(self.current.zone, self.current.gpu_profile, started_at=time.time()))

    def end(self, outcome: str, error: str | None = None) -> None:
        attempt = self.attempts[-1]
        attempt.ended_at = time.time()
        attempt.seconds = round(attempt.ended_at - attempt.started_at, 1)
        attempt.outcome, attempt.error = outcome, error

    def to_dict(self) -> dict[str, Any]:
        return {
            "placements": [asdict(p) for p in self.placements],
            "index": self.index,
            "deadline": self.deadline,
            "attempts": [asdict(a) for a in self.attempts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlacementState:
        return cls(
            placements=[Placement(**p) for p in data["placements"]],
            index=data["index"],
            deadline=data.get("deadline"),
            attempts=[Attempt(**a) for a in data.get("attempts", [])],
        )

    def summary(self) -> dict[str, Any]:
        """The report's ``placement``: where the run is (or ended), and every attempt (UTC times)."""
        return {
            "zone": self.current.zone,
            "gpu_profile": self.current.gpu_profile,
            "attempts": [
                {**asdict(a), "started_at": _utc(a.started_at), "ended_at": _utc(a.ended_at)}
                for a in self.attempts
            ],
        }

    def why_exhausted(self) -> str:
        tried = "; ".join(f"{a.zone} ({a.gpu_profile}): {a.error}" for a in self.attempts)
        reason = (
            "placement_timeout_minutes passed"
            if self.timed_out and not self.exhausted
            else ("every placement was tried")
        )
        return f"No placement could start the servers ({reason}): {tried}"


def _utc(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""What a zone can start, and what a region's quotas allow: the two limits a GPU run meets most.

**Capacity** is per (zone, profile) and comes from the fault ``no_capacity``. Its options:

- ``zones``: the zones without capacity (default: the region's first zone, ``<region>-1``, the
  pipeline's default zone); ``"all"`` for every zone;
- ``profiles``: the profiles without capacity there (default: every profile);
- ``available``: how many instances of such a (zone, profile) still start, counting the live
  ones of every workspace (default 0); ``after`` is the older name of the same option;
- ``reason``: the status reason the instance fails with, one of :data:`CAPACITY_REASONS`
  (default ``cannot_start_capacity``).

The fault lasts until it is cleared: a zone without capacity stays without it across applies, as
a real zone's capacity comes back in hours, not between two tries. On IBM Cloud the create call is
accepted, then the instance goes ``failed`` with a status reason; the provider reports it and
taints the instance (``resource_ibm_is_instance.go``), and the next apply replaces it.

The fault ``profile_not_offered`` is a different refusal: the create call itself fails (options
``zones``, default the region's first zone, and ``profiles``, default every profile), as the VPC
API refuses a profile that a zone does not support (ibm-cloud-docs/vpc ``api-change-log.md``).

**Quotas** are per region, all instances of the account together: 200 vCPU, 5,600 GB of memory and
16 GPUs by default (ibm-cloud-docs/vpc ``quotas.md``); IBM support raises them per account. A
create past one fails with the VPC API's ``over_quota`` error, in the shape IBM documents for
other quotas ("Creating a new security group will put the user over quota. Allocated: 100,
Requested: 1, Quota: 100", ibm-cloud-docs/containers ``ts-sbd-cluster-create-quota.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.faults import FaultSet

MORE_INFO = "https://cloud.ibm.com/docs/vpc?topic=vpc-instance-status-messages"
QUOTAS_INFO = "https://cloud.ibm.com/docs/vpc?topic=vpc-quotas"

#: The instance status reasons that mean "this zone cannot start it now", with the message IBM
#: documents for each (ibm-cloud-docs/vpc ``instance-status-messages.md``; codes from the ibm-vpc
#: SDK's ``InstanceStatusReason.CodeEnum``). Each one's fix is another zone or a smaller profile.
CAPACITY_REASONS: dict[str, str] = {
    "cannot_start_capacity": "Can't start instance because resource capacity is unavailable.",
    "cannot_start_placement_group": "Can't start instance in the placement group",
    "cannot_start_reservation_capacity": "Failed to start because the reservation has insufficient capacity",
}
DEFAULT_REASON = "cannot_start_capacity"


def status_reason(code: str) -> dict[str, str]:
    """One ``status_reasons`` entry as the VPC API returns it (``code``, ``message``, ``more_info``)."""
    return {"code": code, "message": CAPACITY_REASONS[code], "more_info": MORE_INFO}


def _matches(options: dict[str, Any], zone: Any, profile: Any, region: str) -> bool:
    zones = options.get("zones", [f"{region}-1"])
    if zones != "all" and zone not in (zones if isinstance(zones, list) else [zones]):
        return False
    profiles = options.get("profiles")
    return profiles is None or profile in (profiles if isinstance(profiles, list) else [profiles])


def capacity_failure(
    faults: FaultSet, region: str, zone: Any, profile: Any, live_here: int
) -> dict[str, str] | None:
    """The status reason a new instance of ``profile`` in ``zone`` fails with, or None if it starts.

    ``live_here`` is how many instances of that profile already run in that zone (every workspace).
    """
    if not faults.active("no_capacity"):
        return None
    options = faults.options("no_capacity")
    if not _matches(options, zone, profile, region):
        return None
    available = int(options.get("available", options.get("after", 0)))
    if live_here < available:
        return None
    code = str(options.get("reason", DEFAULT_REASON))
    if code not in CAPACITY_REASONS:  # a typo must not pass as a real reason
        raise ValueError(f"no_capacity: unknown reason {code!r}; use one of {', '.join(CAPACITY_REASONS)}")
    return status_reason(code)


def profile_not_offered(faults: FaultSet, region: str, zone: Any, profile: Any) -> bool:
    """True when the fault ``profile_not_offered`` takes ``profile`` out of ``zone``."""
    if not faults.active("profile_not_offered"):
        return False
    return _matches(faults.options("profile_not_offered"), zone, profile, region)


@dataclass(frozen=True)
class Quotas:
    """A region's compute quotas, all instances of the account together (defaults:
    ``sandbox.ibm.vpc_rules.DEFAULT_QUOTAS``, IBM's)."""

    vcpu: int
    memory_gb: int
    gpus: int

    def over(self, used: dict[str, int], asked: dict[str, int]) -> list[tuple[str, str, int, int, int]]:
        """Each quota ``used + asked`` would pass: (quota resource name, label, used, asked, quota)."""
        out = []
        for key, name, label in (
            ("vcpu", "instance-vcpu", "vCPU"),
            ("memory_gb", "instance-memory", "memory (GB)"),
            ("gpus", "instance-gpu", "GPU"),
        ):
            limit = int(getattr(self, key))
            if asked.get(key, 0) and used.get(key, 0) + asked[key] > limit:
                out.append((name, label, used.get(key, 0), asked[key], limit))
        return out


def over_quota_message(name: str, used: int, asked: int, quota: int) -> str:
    """The VPC API's over-quota message (IBM's documented shape), naming the quota resource."""
    return (
        f"Creating a new instance will put the user over quota ({name}). "
        f"Allocated: {used}, Requested: {asked}, Quota: {quota} - {QUOTAS_INFO}"
    )

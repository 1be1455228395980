"""The VPC API's read-only catalogue for preflight checks: instance profiles and a region's zones.

``GET /v1/instance/profiles/{name}`` (404 ``instance_profile_not_found`` for a name the region does
not have) and ``GET /v1/regions/{region}/zones[/{zone}]``, shaped as ``ibm_vpc``'s ``InstanceProfile``
and ``Zone`` models (ibm-vpc 0.36). A zone carries ``universal_name``: the physical zone the account's
zone name maps to ("The universal name for this zone", the ``Zone`` model; IBM lists H100/H200
availability by universal zone, vsi-profile-details-accelerated.md). Each account has its own
mapping; the sandbox's account maps zone ``<region>-<n>`` as :data:`UNIVERSAL` says (a sandbox pick,
chosen so that the project's profile table holds for it: us-south-1 is dal10, where IBM lists H100).
"""

from __future__ import annotations

from typing import Any

from sandbox.vpc_rules import _OTHER_PROFILE, GPU_PROFILES, zones_of

#: region -> the data centres of its zones 1, 2, 3 in the sandbox account's mapping.
UNIVERSAL = {
    "us-south": ("dal10", "dal12", "dal13"),
    "us-east": ("wdc04", "wdc06", "wdc07"),
    "ca-tor": ("tor01", "tor04", "tor05"),
    "eu-de": ("fra02", "fra04", "fra05"),
    "eu-gb": ("lon04", "lon05", "lon06"),
}


def universal_name(zone: str) -> str:
    region, _, index = zone.rpartition("-")
    city = UNIVERSAL.get(region)
    data_center = city[int(index) - 1] if city else f"{region.split('-')[-1][:3]}0{index}"
    return f"{region}-{data_center}-a"


def render_zone(base: str, region: str, zone: str) -> dict[str, Any]:
    return {
        "data_center": universal_name(zone).split("-")[2],
        "href": f"{base}/regions/{region}/zones/{zone}",
        "name": zone,
        "region": {"href": f"{base}/regions/{region}", "name": region},
        "status": "available",
        "universal_name": universal_name(zone),
    }


def zone_of(region: str, zone: str) -> bool:
    return zone in zones_of(region)


def render_profile(base: str, name: str) -> dict[str, Any] | None:
    """The profile ``name`` as the API lists it, or None when the region has no such profile."""
    spec = GPU_PROFILES.get(name)
    if spec is None and not _OTHER_PROFILE.match(name):
        return None
    body: dict[str, Any] = {"name": name, "href": f"{base}/instance/profiles/{name}"}
    if spec is not None:
        body.update(
            family="gpu",
            gpu_count={"type": "fixed", "value": spec["gpu_count"]},
            gpu_model={"type": "enum", "values": [spec["gpu"]]},
            gpu_manufacturer={"type": "enum", "values": ["nvidia"]},
            vcpu_count={"type": "fixed", "value": spec["vcpu"]},
            memory={"type": "fixed", "value": spec["memory_gib"]},
        )
    else:
        vcpu, memory = name.split("-")[1].split("x")[:2]
        body.update(
            family="balanced",
            vcpu_count={"type": "fixed", "value": int(vcpu)},
            memory={"type": "fixed", "value": int(memory)},
        )
    return body

"""The VPC API's read-only catalogue for preflight checks: instance profiles and a region's zones.

``GET /v1/instance/profiles/{name}`` (404 ``instance_profile_not_found`` for a name the region does
not have) and ``GET /v1/regions/{region}/zones[/{zone}]``, shaped as ``ibm_vpc``'s ``InstanceProfile``
and ``Zone`` models (ibm-vpc 0.36). A zone carries ``universal_name``: the physical zone the account's
zone name maps to ("The universal name for this zone", the ``Zone`` model; IBM lists H100/H200
availability by universal zone, vsi-profile-details-accelerated.md). Each account has its own
mapping; the sandbox's account maps zone ``<region>-<n>`` as :data:`UNIVERSAL` says (a sandbox pick,
chosen so that IBM's H100 table holds for it: us-south-1 is dal10, where IBM lists H100).

:data:`GPU_PROFILES` is IBM's table, the sandbox's own (the sandbox holds the project to IBM's rules,
so it reads nothing of the project): ibm-cloud-docs/vpc at commit 3fdff6f647da156dc034f2e2b0d11c61f1c86f3d,
``vsi_is_profiles.md`` (lastupdated 2026-08-14; section GPU: the profiles, and the exact zones of
H100/H200) and ``vsi-profile-details-accelerated.md`` (lastupdated 2026-07-01; Availability: the
regions of the generally available families, every zone of each here). V100 is not in IBM's docs:
its profiles and regions are what IBM's API listed to skypilot-org/skypilot-catalog
(``catalogs/v7/ibm/vms.csv``). Other profile names (``bx2-2x8``, ``cx3d-4x10``, ...) are accepted in
every zone, sized by their name (IBM's ``<family>-<vCPU>x<GB>``).
"""

from __future__ import annotations

import re
from typing import Any

#: Non-GPU profile names (bx2-2x8, cx3d-4x10, bxf-2x8, mx2-16x128, ...): accepted in every zone.
OTHER_PROFILE = re.compile(r"^(?!gx)[a-z]{2}[0-9f][a-z]*-[0-9]+x[0-9]+$")


def zones_of(region: str) -> tuple[str, ...]:
    return tuple(f"{region}-{i}" for i in (1, 2, 3))


#: region -> (the GPU models every zone of it offers, {zone number: models only that zone offers}),
#: the shape of IBM's availability tables (regions for the generally available models, exact zones
#: for H100/H200 and L4 in Chennai).
_REGIONS: dict[str, tuple[str, dict[int, str]]] = {
    "us-south": ("L4 L40S V100", {1: "H100"}),
    "us-east": ("L4 L40S V100 A100", {2: "H100 H200", 3: "H100 H200"}),
    "ca-tor": ("L4 L40S V100", {3: "H100 H200"}),
    "br-sao": ("L4 L40S V100", {1: "H100"}),
    "eu-de": ("L4 L40S V100 A100", {2: "H100 H200"}),
    "eu-gb": ("L4 L40S V100 A100", {2: "H100 H200"}),
    "eu-es": ("L40S", {3: "H100"}),
    "au-syd": ("L4 L40S V100", {2: "H100", 3: "H200"}),
    "jp-tok": ("L4 L40S V100 A100", {3: "H100"}),
    "jp-osa": ("V100", {}),
    "in-che": ("", {1: "L4 H200"}),
}
#: profile -> (GPU model, GPUs, vCPUs, memory in GiB)
_SIZES = {
    "gx3-16x80x1l4": ("L4", 1, 16, 80),
    "gx3-32x160x2l4": ("L4", 2, 32, 160),
    "gx3-64x320x4l4": ("L4", 4, 64, 320),
    "gx3-24x120x1l40s": ("L40S", 1, 24, 120),
    "gx3-48x240x2l40s": ("L40S", 2, 48, 240),
    "gx2-8x64x1v100": ("V100", 1, 8, 64),
    "gx2-16x128x1v100": ("V100", 1, 16, 128),
    "gx2-16x128x2v100": ("V100", 2, 16, 128),
    "gx2-32x256x2v100": ("V100", 2, 32, 256),
    "gx3d-24x120x1a100p": ("A100", 1, 24, 120),
    "gx3d-48x240x2a100p": ("A100", 2, 48, 240),
    "gx3d-160x1792x8h100": ("H100", 8, 160, 1792),
    "gx3d-160x1792x8h200": ("H200", 8, 160, 1792),
}


def _offering(model: str) -> list[str]:
    return sorted(
        f"{region}-{i}"
        for region, (every, some) in _REGIONS.items()
        for i in (1, 2, 3)
        if model in every.split() or model in some.get(i, "").split()
    )


#: IBM's VPC GPU profiles: model, GPUs, vCPUs, memory (GiB) and the zones that offer each.
GPU_PROFILES: dict[str, dict[str, Any]] = {
    name: {"gpu": model, "gpu_count": n, "vcpu": vcpu, "memory_gib": gib, "zones": _offering(model)}
    for name, (model, n, vcpu, gib) in _SIZES.items()
}

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
    if spec is None and not OTHER_PROFILE.match(name):
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

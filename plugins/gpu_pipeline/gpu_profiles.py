"""IBM Cloud VPC GPU profiles and the zones that offer them: one dated table for the whole project.

The DAG's ``gpu_profile`` parameter, the ``validate`` task and the sandbox's VPC API read
:data:`PROFILES`. Terraform cannot read Python, so ``terraform/gpu_profiles.json`` is this table
written as JSON (``python plugins/gpu_pipeline/gpu_profiles.py`` rewrites it; a test fails when it
differs). It is Python, not a data file, because DAG parsing must not open files. Other
per-profile data (prices, say) should live in its own module keyed by the same profile names. No
Airflow import here: the sandbox loads this file on its own.

Zones are the account's zone names. IBM lists only regions for the generally available families
(every zone of the region here) and exact zones for H100/H200; select-availability profiles also
need IBM's approval. Check the current state before relying on it: ``ibmcloud is instance-profiles``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

AS_OF = "2026-08-21"
_DOCS = "https://github.com/ibm-cloud-docs/vpc/blob/3fdff6f647da156dc034f2e2b0d11c61f1c86f3d/"
SOURCES = {
    "profiles": f"{_DOCS}vsi_is_profiles.md (lastupdated 2026-08-14), section GPU: profiles, H100/H200 zones",
    "regions": f"{_DOCS}vsi-profile-details-accelerated.md (lastupdated 2026-07-01), Availability: regions",
    "v100": "not in IBM's docs: skypilot-org/skypilot-catalog catalogs/v7/ibm/vms.csv (IBM's API listed)",
    "gpu_quota": f"{_DOCS}quotas.md: GPU, 16 per region",
}
#: IBM's default compute quotas per region, all instances of the account together
#: (``quotas.md``: vCPU 200, RAM 5600 GB, GPU 16 per region); IBM support raises them per account.
GPU_QUOTA_PER_REGION = 16
VCPU_QUOTA_PER_REGION = 200
MEMORY_GB_QUOTA_PER_REGION = 5600


def _zones(*regions: str) -> tuple[str, ...]:
    return tuple(f"{region}-{i}" for region in regions for i in (1, 2, 3))


_L4 = (*_zones("us-south", "us-east", "ca-tor", "br-sao", "eu-de", "eu-gb", "au-syd", "jp-tok"), "in-che-1")
_L40S = _zones("us-south", "us-east", "ca-tor", "br-sao", "eu-de", "eu-gb", "eu-es", "au-syd", "jp-tok")
_V100 = _zones("us-south", "us-east", "ca-tor", "br-sao", "eu-de", "eu-gb", "au-syd", "jp-tok", "jp-osa")
_A100 = _zones("us-east", "eu-de", "eu-gb", "jp-tok")
_H100 = ("us-south-1", "us-east-2", "us-east-3", "ca-tor-3", "br-sao-1")
_H100 += ("eu-de-2", "eu-gb-2", "eu-es-3", "au-syd-2", "jp-tok-3")
_H200 = ("us-east-2", "us-east-3", "ca-tor-3", "eu-de-2", "eu-gb-2", "au-syd-3", "in-che-1")


def _profile(gpu: str, count: int, vcpu: int, memory_gib: int, zones: tuple[str, ...], **extra: str) -> dict:
    spec = {"gpu": gpu, "gpu_count": count, "vcpu": vcpu, "memory_gib": memory_gib}
    # 8-GPU HGX boards (H100, H200): the GPUs talk over NVSwitch, so NVIDIA Fabric Manager must run
    # (vsi-profile-details-accelerated.md: "NVLink: Yes"; workload/bootstrap.sh installs it).
    spec["nvswitch"] = gpu in ("H100", "H200") and count == 8
    spec["availability"] = extra.get("availability", "generally_available")
    spec["zones_source"] = extra.get("source", "regions")
    spec["zones"] = sorted(zones)
    return spec


_SELECT = "select_availability"

#: profile name -> gpu, gpu_count, vcpu, memory_gib, availability, zones_source (a SOURCES key), zones.
#: The first one is the DAG's default: the cheapest sensible GPU.
PROFILES: dict[str, dict[str, Any]] = {
    "gx3-16x80x1l4": _profile("L4", 1, 16, 80, _L4),
    "gx3-32x160x2l4": _profile("L4", 2, 32, 160, _L4),
    "gx3-64x320x4l4": _profile("L4", 4, 64, 320, _L4),
    "gx3-24x120x1l40s": _profile("L40S", 1, 24, 120, _L40S),
    "gx3-48x240x2l40s": _profile("L40S", 2, 48, 240, _L40S),
    "gx2-8x64x1v100": _profile("V100", 1, 8, 64, _V100, source="v100"),
    "gx2-16x128x1v100": _profile("V100", 1, 16, 128, _V100, source="v100"),
    "gx2-16x128x2v100": _profile("V100", 2, 16, 128, _V100, source="v100"),
    "gx2-32x256x2v100": _profile("V100", 2, 32, 256, _V100, source="v100"),
    "gx3d-24x120x1a100p": _profile("A100", 1, 24, 120, _A100, availability=_SELECT),
    "gx3d-48x240x2a100p": _profile("A100", 2, 48, 240, _A100, availability=_SELECT),
    "gx3d-160x1792x8h100": _profile("H100", 8, 160, 1792, _H100, availability=_SELECT, source="profiles"),
    "gx3d-160x1792x8h200": _profile("H200", 8, 160, 1792, _H200, availability=_SELECT, source="profiles"),
}

TERRAFORM_COPY = Path(__file__).resolve().parents[2] / "terraform" / "gpu_profiles.json"


def profile_names() -> tuple[str, ...]:
    return tuple(PROFILES)


def zones_offering(profile: str) -> tuple[str, ...]:
    spec = PROFILES.get(profile)
    return tuple(spec["zones"]) if spec else ()


def gpu_count(profile: str) -> int:
    spec = PROFILES.get(profile)
    return int(spec["gpu_count"]) if spec else 0


#: IBM's zones for the 8-GPU profiles are *universal* (physical) zone names; each account maps its own
#: zone names (us-south-1, ...) onto them differently (vsi-profile-details-accelerated.md,
#: "Availability"). The VPC API gives an account's mapping: ``GET /regions/{region}/zones/{zone}``
#: returns the zone's ``universal_name`` (``scripts/preflight.py`` asks it).
UNIVERSAL_ZONES: dict[str, tuple[str, ...]] = {
    "gx3d-160x1792x8h100": (
        "us-south-dal10-a", "us-east-wdc06-a", "us-east-wdc07-a", "ca-tor-tor05-a", "br-sao-sao01-a",
        "eu-de-fra04-a", "eu-gb-lon05-a", "eu-es-mad05-a", "au-syd-syd04-a", "jp-tok-tok05-a",
    ),
    "gx3d-160x1792x8h200": (
        "us-east-wdc06-a", "us-east-wdc07-a", "ca-tor-tor05-a", "eu-de-fra04-a", "eu-gb-lon05-a",
        "au-syd-syd05-a", "in-che-che02-a",
    ),
}  # fmt: skip


def _regions(zones: tuple[str, ...]) -> list[str]:
    return sorted({z.rsplit("-", 1)[0] for z in zones})


def placement_problems(profile: str, region: str, zone: str) -> list[str]:
    """Why ``profile`` cannot be created in ``zone`` of ``region``; each line says what to fix.

    Only what IBM publishes for every account is refused: an unknown profile, or a region that
    offers the profile in none of its zones. Which *zone* of the region offers it depends on the
    account (see :func:`placement_warnings`).
    """
    if profile not in PROFILES:
        return [f"gpu_profile: '{profile}' is not a VPC GPU profile; use one of {', '.join(PROFILES)}."]
    zones = zones_offering(profile)
    if zone in zones or any(z.startswith(f"{region}-") for z in zones):
        return []
    here = [p for p in PROFILES if zone in zones_offering(p)]
    alternatives = f"; zone '{zone}' offers {', '.join(here)}" if here else ""
    return [
        f"gpu_profile: '{profile}' is not offered in zone '{zone}' (IBM's profile table as of "
        f"{AS_OF}): it is offered in region(s) {', '.join(_regions(zones))} only{alternatives}."
    ]


def placement_warnings(profile: str, region: str, zone: str) -> list[str]:
    """Doubts about ``zone`` that IBM's tables cannot settle for every account; each names its source."""
    spec = PROFILES.get(profile)
    zones = zones_offering(profile)
    same_region = [z for z in zones if z.startswith(f"{region}-")]
    if spec is None or zone in zones or not same_region:
        return []
    if profile in UNIVERSAL_ZONES:
        universal = ", ".join(z for z in UNIVERSAL_ZONES[profile] if z.startswith(f"{region}-"))
        source = (
            f"IBM lists it by universal zone ({universal}; {SOURCES['regions'].split(' ')[0]}), and "
            "each account maps its zone names onto those differently"
        )
    elif spec["zones_source"] == "v100":
        source = f"IBM publishes no zone list for V100 profiles (the table's zones: {SOURCES['v100']})"
    else:
        source = f"IBM lists regions only ({SOURCES['regions']})"
    return [
        f"gpu_profile: '{profile}' may not be offered in zone '{zone}': the project's table (as of "
        f"{AS_OF}) lists {', '.join(same_region)} in {region}, but {source}. Confirm with "
        "'make preflight' (it asks the VPC API for the zone's universal name) or the zone mapping on "
        "the console's VPC Infrastructure Overview page; a zone that does not offer the profile fails "
        "the apply before any server exists."
    ]


def terraform_json() -> str:
    """The table as ``terraform/gpu_profiles.json`` holds it (read by terraform/variables.tf)."""
    doc = {"as_of": AS_OF, "generated_from": "plugins/gpu_pipeline/gpu_profiles.py", "sources": SOURCES}
    doc["gpu_quota_per_region"] = GPU_QUOTA_PER_REGION
    doc["profiles"] = PROFILES
    return json.dumps(doc, indent=2) + "\n"


if __name__ == "__main__":
    TERRAFORM_COPY.write_text(terraform_json())
    print(f"wrote {TERRAFORM_COPY}")

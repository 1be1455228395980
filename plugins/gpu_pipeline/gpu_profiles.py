"""IBM Cloud VPC GPU profiles and the zones that offer them: one dated table for the whole project.

The table is ``gpu_profiles.json`` next to this module (its ``as_of`` date and ``sources`` say where
each fact comes from). The DAG's ``gpu_profile`` parameter, the ``validate`` task, the Terraform
variable validation (``terraform/gpu_profiles.json`` is a link to the same file) and the sandbox's
VPC API all read it. Other per-profile data (prices, say) should live in its own file keyed by the
same profile names. No Airflow import here: the sandbox and the tests load it as plain Python.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("gpu_profiles.json")


@cache
def table() -> dict[str, Any]:
    return json.loads(TABLE_PATH.read_text())


def profile_names() -> tuple[str, ...]:
    """Every GPU profile in the table, the default (cheapest sensible) first."""
    return tuple(table()["profiles"])


def as_of() -> str:
    return table()["as_of"]


def zones_offering(profile: str) -> tuple[str, ...]:
    spec = table()["profiles"].get(profile)
    return tuple(spec["zones"]) if spec else ()


def gpu_count(profile: str) -> int:
    spec = table()["profiles"].get(profile)
    return int(spec["gpu_count"]) if spec else 0


def placement_problems(profile: str, region: str, zone: str) -> list[str]:
    """Why ``profile`` cannot be created in ``zone`` of ``region``; each line says what to fix."""
    if profile not in table()["profiles"]:
        known = ", ".join(profile_names())
        return [f"gpu_profile: '{profile}' is not a VPC GPU profile; use one of {known}."]
    zones = zones_offering(profile)
    if zone in zones:
        return []
    same_region = [z for z in zones if z.startswith(f"{region}-")]
    here = [p for p in profile_names() if zone in zones_offering(p)]
    if same_region:
        hint = f"use zone {' or '.join(same_region)}"
    else:
        regions = sorted({z.rsplit("-", 1)[0] for z in zones})
        hint = f"it is offered in region(s) {', '.join(regions)} only"
    alternatives = f"; zone '{zone}' offers {', '.join(here)}" if here else ""
    return [
        f"gpu_profile: '{profile}' is not offered in zone '{zone}' (IBM's profile table as of "
        f"{as_of()}): {hint}{alternatives}."
    ]

"""The region's compute quotas, checked by ``validate`` before anything exists.

IBM Cloud limits every region of an account to 200 vCPU, 5,600 GB of memory and 16 GPUs by
default, all virtual servers together (ibm-cloud-docs/vpc ``quotas.md``), and refuses a server that
would pass one at apply, after the network already exists. IBM support raises them per account, so
a deployment states its own in Airflow's configuration (``docs/deployment.md``, "Quotas")::

    [ibm_cloud]
    quota_vcpu = 400                       # every region
    quota_gpus = us-south=32,eu-de=24      # per region; the others keep IBM's default
    quota_memory_gb = 11200

(or ``AIRFLOW__IBM_CLOUD__QUOTA_VCPU=400``, ...). :func:`placement_quota_problem` checks one
placement (region, profile, number of servers): failover checks each placement it may try.
What other runs already use is not counted: a run alone over a quota can never succeed, which
is what validate refuses; runs that only together pass it meet IBM's ``over_quota`` at apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_pipeline.gpu_profiles import (
    GPU_QUOTA_PER_REGION,
    MEMORY_GB_QUOTA_PER_REGION,
    PROFILES,
    VCPU_QUOTA_PER_REGION,
)

SECTION = "ibm_cloud"
QUOTAS_DOCS = "https://cloud.ibm.com/docs/vpc?topic=vpc-quotas"
SUPPORT_CASE = "https://cloud.ibm.com/unifiedsupport/cases/form"

#: quota key -> (Airflow option, IBM's default, unit in messages, the profile table's field)
_QUOTAS = {
    "vcpu": ("quota_vcpu", VCPU_QUOTA_PER_REGION, "vCPU", "vcpu"),
    "memory_gb": ("quota_memory_gb", MEMORY_GB_QUOTA_PER_REGION, "GB of memory", "memory_gib"),
    "gpus": ("quota_gpus", GPU_QUOTA_PER_REGION, "GPUs", "gpu_count"),
}


class QuotaConfigError(ValueError):
    """An ``[ibm_cloud] quota_*`` option that is neither a number nor ``region=number,...``."""


@dataclass(frozen=True)
class RegionQuotas:
    """One region's quotas, and where each came from (``IBM's default`` or the option's name)."""

    region: str
    vcpu: int
    memory_gb: int
    gpus: int
    sources: dict[str, str]


def _parse(option: str, text: str, region: str) -> int | None:
    """``"400"`` (every region) or ``"us-south=400,eu-de=300"``: the value for ``region``, or None."""
    text = text.strip()
    if not text:
        return None
    try:
        if "=" not in text:
            return int(text)
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, value = (p.strip() for p in item.split("=", 1))
            if name == region:
                return int(value)
        return None
    except ValueError:
        raise QuotaConfigError(
            f"[{SECTION}] {option} = {text!r}: use a number (every region) or region=number pairs, "
            "e.g. 'us-south=400,eu-de=300'."
        ) from None


def region_quotas(region: str, config: Any = None) -> RegionQuotas:
    """The quotas of ``region``: IBM's defaults, or the deployment's ``[ibm_cloud] quota_*`` options.

    ``config`` is Airflow's configuration (``airflow.sdk.conf``, read at run time) or anything with
    ``get(section, key, fallback=...)`` (tests).
    """
    if config is None:
        from airflow.sdk import conf as config
    values: dict[str, int] = {}
    sources: dict[str, str] = {}
    for key, (option, default, _, _) in _QUOTAS.items():
        given = _parse(option, str(config.get(SECTION, option, fallback="") or ""), region)
        values[key] = default if given is None else given
        sources[key] = "IBM's default" if given is None else f"[{SECTION}] {option}"
    return RegionQuotas(region=region, sources=sources, **values)


def placement_quota_problem(
    region: str, profile: str, vm_count: int, quotas: RegionQuotas | None = None
) -> str | None:
    """One line when ``vm_count`` servers of ``profile`` would pass a quota of ``region``; else None.

    The line names each quota passed, what the run asks for and its parts (servers x the profile's
    share), the quota and where it comes from, and how to raise it.
    """
    spec = PROFILES.get(profile)
    if spec is None:
        return None  # an unknown profile is refused by the parameter checks
    quotas = quotas or region_quotas(region)
    over, options = [], []
    for key, (option, _, unit, field) in _QUOTAS.items():
        each = int(spec[field])
        asked, limit = vm_count * each, int(getattr(quotas, key))
        if asked > limit:
            over.append(
                f"{asked} {unit} ({vm_count} x {each}), over the quota of {limit} ({quotas.sources[key]})"
            )
            options.append(f"[{SECTION}] {option}")
    if not over:
        return None
    return (
        f"quota: {vm_count} x {profile} in region {region} asks for {'; '.join(over)}. Lower vm_count "
        f"or pick a smaller gpu_profile, or ask IBM to raise the quota (a support case: {SUPPORT_CASE}; "
        f"quotas: {QUOTAS_DOCS}), then set {' and '.join(options)} in Airflow's configuration."
    )


def quota_problems(params: dict[str, Any], config: Any = None) -> list[str]:
    """The run's quota problem, as validate lists problems (empty when within the quotas)."""
    try:
        quotas = region_quotas(params["region"], config)
    except QuotaConfigError as err:
        return [str(err)]
    region, profile, count = params["region"], params["gpu_profile"], int(params["vm_count"])
    problem = placement_quota_problem(region, profile, count, quotas)
    return [problem] if problem else []

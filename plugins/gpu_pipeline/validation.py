"""The checks at both ends of a run: before anything exists, and after everything should be gone."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from gpu_pipeline.cost import budget_problem, profile_price
from gpu_pipeline.gpu_profiles import placement_warnings
from gpu_pipeline.placement import run_placements
from gpu_pipeline.quotas import quota_problems
from gpu_pipeline.run_plan import InvalidRunParameters, RunPlan, build_run_plan, secure_variable_refs

log = logging.getLogger(__name__)


def plan_run(
    params: dict[str, Any],
    *,
    dag_run: Any,
    ibm_conn_id: str,
    cos_conn_id: str,
    known_params: Iterable[str] | None = None,
) -> RunPlan:
    """Validate parameters and connections, and return the run plan (one read: the image's status).

    ``known_params``: the parameter names a run's conf may set (default: those the running task's
    DAG and the task declare). Airflow takes any conf key as a parameter; a run that names an
    unknown one (a typo such as ``epoch``) is refused here, before anything exists.
    """
    from ibm_cloud_airflow.exceptions import IbmCloudConfigError
    from ibm_cloud_airflow.hooks.base import CosConnectionConfig, IbmCloudConnectionConfig
    from ibm_cloud_airflow.utils.secrets import get_connection

    problems: list[str] = []
    run_conf = getattr(dag_run, "conf", None) or {}
    if run_conf:
        known = declared_params() if known_params is None else known_params
        problems.extend(unknown_conf_problems(run_conf, known))
    try:
        cloud = IbmCloudConnectionConfig.from_connection(get_connection(ibm_conn_id))
    except IbmCloudConfigError as err:
        problems.append(str(err))
        cloud = None
    try:
        cos = CosConnectionConfig.from_connection(get_connection(cos_conn_id))
    except IbmCloudConfigError as err:
        problems.append(str(err))
        cos = None
    if cos is not None:
        if params["cos_auth_mode"] == "trusted_profile" and not cos.instance_crn:
            problems.append(
                f"Connection '{cos_conn_id}': extra 'instance_crn' is missing; keyless COS access "
                "scopes the servers' trusted profile to that COS instance (crn:v1:bluemix:public:"
                "cloud-object-storage:global:a/<account>:<instance-guid>::)."
            )
        if params["cos_auth_mode"] == "hmac" and cos.auth_type != "hmac":
            problems.append(
                f"Connection '{cos_conn_id}': cos_auth_mode 'hmac' needs HMAC keys as the "
                "connection's login (access key id) and password (secret access key)."
            )
    if cloud is not None and cloud.region != params["region"]:
        problems.append(
            f"region: parameter '{params['region']}' differs from connection '{ibm_conn_id}' "
            f"region '{cloud.region}'; use one region for both."
        )
    try:
        plan = build_run_plan(
            params,
            dag_id=dag_run.dag_id,
            run_id=dag_run.run_id,
            now=datetime.now(UTC),
            cos_endpoint=(cos.vm_endpoint_url if cos else ""),
            cos_instance_crn=(cos.instance_crn or "") if cos else "",
            resource_group_id=(cloud.resource_group or "") if cloud else "",
        )
    except InvalidRunParameters as err:
        problems.extend(str(err).splitlines())
        plan = None
    placements, bad_placements = run_placements(params)
    problems.extend(bad_placements)
    # Zones only the account's own zone mapping can settle: warn, name the source and how to confirm.
    for p in placements:
        for warning in placement_warnings(p.gpu_profile, params["region"], p.zone):
            log.warning("%s", warning)
    # The region's quotas, for every profile the run may use: a run over one can never be created,
    # whatever it may cost (quotas.py).
    for profile in dict.fromkeys(p.gpu_profile for p in placements):
        problems.extend(q for q in quota_problems({**params, "gpu_profile": profile}) if q not in problems)
    # The budget gate, at the most expensive placement the run may move to (gpu_pipeline/cost.py).
    priciest = max((p.gpu_profile for p in placements), key=profile_price, default=params["gpu_profile"])
    over_budget = budget_problem({**params, "gpu_profile": priciest})
    if over_budget:
        problems.append(over_budget)
    if not problems:
        problems.extend(image_problems(params["image"], params["region"], ibm_conn_id=ibm_conn_id))
    if problems:
        # The first problem is on the first line: it is what a one-line summary shows.
        raise AirflowFailException(
            f"Invalid run, nothing was created. Fix: {problems[0]}"
            + "".join(f"\n- {p}" for p in problems[1:])
        )
    plan["secure_variable_refs"] = secure_variable_refs(params["cos_auth_mode"], cos_conn_id)
    plan["placements"] = [asdict(p) for p in placements]
    plan["placement_timeout_minutes"] = params.get("placement_timeout_minutes", 0)
    return plan


def declared_params() -> set[str]:
    """The parameters that the running task's DAG and the task itself declare."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    return set(context["dag"].params) | set(context["task"].params or {})


def unknown_conf_problems(run_conf: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """One problem per run conf key that is no declared parameter, naming the closest known one."""
    names = sorted(known)
    problems = []
    for key in sorted(set(run_conf) - set(names)):
        close = difflib.get_close_matches(key, names, n=1)
        hint = f": did you mean {close[0]!r}?" if close else f"; the parameters are {', '.join(names)}."
        problems.append(f"unknown parameter {key!r}{hint}")
    return problems


def image_problems(name: str, region: str, *, ibm_conn_id: str) -> list[str]:
    """Refuse an image the VPC API would refuse at apply (missing or obsolete); warn if deprecated."""
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    try:
        image = VpcHook(ibm_conn_id=ibm_conn_id).find_image(name)
    except Exception as err:  # a read that fails must not stop the run: the apply still refuses
        log.warning("Could not look up image %r (%s); the apply will check it.", name, err)
        return []
    if image is None:
        return [
            f"image: '{name}' does not exist in region '{region}'; list the current ones with "
            "'ibmcloud is images --visibility public --status available'."
        ]
    if image["status"] == "obsolete":
        return [
            f"image: '{name}' is obsolete and can no longer create servers; use the newest available "
            "image of its family ('ibmcloud is images --visibility public --status available')."
        ]
    if image["status"] == "deprecated":
        log.warning("Image %r is deprecated and will soon be obsolete; move to a newer one.", name)
    return []


def find_leaks(plan: dict[str, Any], *, ibm_conn_id: str) -> list[dict[str, Any]]:
    """What the VPC API still lists for this run (every resource is named after its slug)."""
    from gpu_pipeline.naming import belongs_to_run
    from ibm_cloud_airflow.hooks.vpc import VpcHook

    slug = plan["slug"]
    return VpcHook(ibm_conn_id=ibm_conn_id).find_resources(lambda name: belongs_to_run(name, slug))


def leak_error(plan: dict[str, Any], live: list[dict[str, Any]]) -> AirflowException:
    """The error a run with leftovers fails with: what is live, and how to remove it."""
    listing = ", ".join(f"{r['kind']} {r['name']} ({r['id']})" for r in live)
    return AirflowException(
        f"{len(live)} resource(s) of run {plan['slug']} are still live: {listing}. "
        "Re-run the destroy task, or destroy the workspace in the IBM Cloud console."
    )

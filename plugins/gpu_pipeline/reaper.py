"""The third teardown layer: find what lost or broken runs left behind, decide what is an orphan, remove it.

What belongs to the pipeline (nothing else is ever touched):

The names and tags are those of :mod:`gpu_pipeline.naming`, which the run plan writes with:

* a Schematics workspace named ``airflow-<slug>`` that carries the tag ``airflow-run:<slug>`` (the
  same slug), and no ``airflow-lease:`` tag (a workspace adopted through ``existing_workspace_id``
  is never touched, nor are the resources of the runs that lease it);
* a VPC resource (instance, volume, floating IP, public gateway, subnet, security group, SSH key,
  VPC) whose user tag ``airflow-run:<slug>`` (Global Tagging API) names the slug its name starts
  with (``<slug>-...``);
* a trusted profile named ``<slug>-vm-profile`` whose description names ``Airflow run <slug>``
  (IAM trusted profiles take no user tags; the Terraform writes that description).

What counts as an orphan, per run (slug): the run is not live in Airflow (looked up by the
``dag_id``/``run_id`` that the workspace description names, through the Task SDK), and either its
Airflow run no longer exists, or it ended more than ``grace`` ago, or (no workspace names the run)
its ``ttl:`` deadline has passed. A live run is never an orphan, whatever its TTL says.

The Schematics destroy of orphan workspaces is done by the DAG with the provider's
``SchematicsDestroyOperator``; :func:`reap_leftovers` then deletes directly, in dependency order,
whatever is still listed, retrying IBM's dependency errors (409), and verifies by listing again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gpu_pipeline.naming import (
    CANDIDATE_NAME_RE,
    RUN_TAG,
    TTL_TAG,
    lease_holder_slug,
    parse_ttl,
    profile_names_run,
    slug_of_trusted_profile,
    slug_of_workspace,
    tag_value,
)
from ibm_cloud_airflow.utils.leases import LEASE_TAG_PREFIX
from ibm_cloud_airflow.utils.run_identity import SLUG_RE, parse_run_description

LIVE_STATES = ("queued", "running")
log = logging.getLogger(__name__)
# Direct deletes, in dependency order: what uses a resource goes before it.
DELETE_ORDER = (
    "instance",
    "floating_ip",
    "volume",
    "subnet",
    "public_gateway",
    "security_group",
    "key",
    "vpc",
    "trusted_profile",
)


@dataclass
class Resource:
    kind: str
    id: str
    name: str
    slug: str
    ttl: str | None = None


@dataclass
class RunVerdict:
    slug: str
    orphan: bool
    reason: str
    ttl: str | None = None
    outlived_ttl_s: float | None = None
    dag_id: str | None = None
    run_id: str | None = None
    run_state: str | None = None
    workspace_id: str | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Discovery:
    """Lists everything of the pipeline through the real APIs (Schematics, VPC, Tagging, IAM Identity)."""

    def __init__(self, ibm_conn_id: str) -> None:
        from ibm_cloud_airflow.hooks.iam_identity import GlobalTaggingHook, IamIdentityHook
        from ibm_cloud_airflow.hooks.schematics import SchematicsHook
        from ibm_cloud_airflow.hooks.vpc import VpcHook

        self.schematics = SchematicsHook(ibm_conn_id=ibm_conn_id)
        self.vpc = VpcHook(ibm_conn_id=ibm_conn_id)
        self.tagging = GlobalTaggingHook(ibm_conn_id=ibm_conn_id)
        self.identity = IamIdentityHook(ibm_conn_id=ibm_conn_id)

    def workspaces(self) -> tuple[list[dict[str, Any]], set[str]]:
        """The pipeline's workspaces, and the slugs that hold a lease on an adopted workspace."""
        ours, leased = [], set()
        for ws in self.schematics.list_workspaces():
            tags = [str(t) for t in ws.get("tags") or []]
            leased |= {slug for slug in map(lease_holder_slug, tags) if slug}
            slug = slug_of_workspace(str(ws.get("name") or ""))
            if slug is None or tag_value(tags, RUN_TAG) != slug:
                continue  # not named and tagged for a run of this pipeline
            if any(t.startswith(LEASE_TAG_PREFIX) for t in tags):
                continue  # adopted through existing_workspace_id: never ours to destroy
            ours.append({**ws, "slug": slug, "ttl": tag_value(tags, TTL_TAG)})
        return ours, leased

    def resources(self, only_slugs: set[str] | None = None) -> list[Resource]:
        """VPC resources and trusted profiles named and tagged for a run."""
        from ibm_cloud_airflow.hooks.vpc import RESOURCE_LISTS

        found: list[Resource] = []
        for kind in RESOURCE_LISTS:
            for item in self.vpc.list_all(kind):
                name = str(item.get("name") or "")
                if not CANDIDATE_NAME_RE.match(name):
                    continue
                if only_slugs is not None and not any(name.startswith(s + "-") for s in only_slugs):
                    continue
                tags = self.tagging.user_tags(item["crn"]) if item.get("crn") else []
                slug = tag_value(tags, RUN_TAG)
                if not slug or not SLUG_RE.match(slug) or not name.startswith(slug + "-"):
                    continue  # the name prefix and the run tag must agree
                found.append(Resource(kind, item["id"], name, slug, tag_value(tags, TTL_TAG)))
        for profile in self.identity.list_trusted_profiles():
            name = str(profile.get("name") or "")
            slug = slug_of_trusted_profile(name)
            if slug is None or not profile_names_run(profile.get("description"), slug):
                continue
            if only_slugs is not None and slug not in only_slugs:
                continue
            found.append(Resource("trusted_profile", profile["id"], name, slug))
        return found


def airflow_run(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The run's state and end, asked of Airflow through the Task SDK (the execution API); None if gone.

    Tasks in Airflow 3 cannot reach the metadata DB:
    :func:`ibm_cloud_airflow.utils.airflow_compat.dag_run_details` asks the execution API.
    """
    from ibm_cloud_airflow.utils.airflow_compat import dag_run_details

    return dag_run_details(dag_id, run_id)


def decide(
    workspaces: list[dict[str, Any]],
    resources: list[Resource],
    leased: set[str],
    *,
    now: datetime,
    grace: timedelta,
    lookup_run: Callable[[str, str], dict[str, Any] | None],
) -> list[RunVerdict]:
    """One verdict per run slug found: orphan or not, and why."""
    slugs = sorted({w["slug"] for w in workspaces} | {r.slug for r in resources})
    verdicts = []
    for slug in slugs:
        ws = next((w for w in workspaces if w["slug"] == slug), None)
        own = [r for r in resources if r.slug == slug]
        ttls = [t for t in [ws and ws.get("ttl"), *(r.ttl for r in own)] if t]
        ttl = min(ttls) if ttls else None
        deadline = parse_ttl(ttl)
        outlived = (now - deadline).total_seconds() if deadline and now > deadline else None
        verdict = RunVerdict(
            slug=slug,
            orphan=False,
            reason="",
            ttl=deadline.isoformat() if deadline else None,
            outlived_ttl_s=round(outlived, 1) if outlived is not None else None,
            workspace_id=ws["id"] if ws else None,
            resources=[asdict(r) for r in own],
        )
        ref = parse_run_description(ws.get("description")) if ws else None
        if ref:
            verdict.dag_id, verdict.run_id = ref
        if slug in leased:
            verdict.reason = "its run holds a lease on an adopted workspace (existing_workspace_id)"
        elif ref:
            run = lookup_run(*ref)
            verdict.run_state = run["state"] if run else "gone"
            if run is None:
                verdict.orphan, verdict.reason = True, f"its Airflow run {ref[1]} no longer exists"
            elif run["state"] in LIVE_STATES or run.get("end_date") is None:
                verdict.reason = f"its Airflow run is live ({run['state']})"
            elif now - run["end_date"] > grace:
                ended = (now - run["end_date"]).total_seconds() / 60
                verdict.orphan = True
                verdict.reason = f"its Airflow run ended ({run['state']}) {ended:.0f} min ago"
            else:
                verdict.reason = f"its Airflow run ended less than {grace} ago; its own cleanup may still act"
        elif outlived is not None:
            verdict.orphan, verdict.reason = True, f"its ttl passed {outlived / 60:.0f} min ago"
        else:
            verdict.reason = "no workspace names its run and its ttl has not passed"
        verdicts.append(verdict)
    return verdicts


def find_orphans(
    *,
    ibm_conn_id: str,
    grace: timedelta,
    lookup_run: Callable[[str, str], dict[str, Any] | None] = airflow_run,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Everything of the pipeline, with a verdict per run (dicts, for XCom)."""
    discovery = Discovery(ibm_conn_id)
    workspaces, leased = discovery.workspaces()
    resources = discovery.resources()
    verdicts = decide(
        workspaces, resources, leased, now=now or datetime.now(UTC), grace=grace, lookup_run=lookup_run
    )
    return [v.to_dict() for v in verdicts]


def _delete(discovery: Discovery, resource: Resource) -> bool:
    from ibm_cloud_airflow.hooks.vpc import delete_resource

    if resource.kind == "trusted_profile":
        return discovery.identity.delete_trusted_profile(resource.id)
    return delete_resource(discovery.vpc, resource.kind, resource.id)


def reap_leftovers(
    verdicts: list[dict[str, Any]],
    *,
    ibm_conn_id: str,
    dry_run: bool,
    max_passes: int = 30,
    pass_wait_s: float = 10.0,
) -> dict[str, Any]:
    """Delete what the orphans still have, in dependency order, retrying 409s; then verify.

    Returns ``{"removed": [...], "left": [...], "errors": [...]}``; ``left`` is the verification
    listing (with why each resource is there: not an orphan, dry run, or still failing).
    """
    from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError, VpcResourceInUseError

    orphans = {v["slug"] for v in verdicts if v["orphan"]}
    discovery = Discovery(ibm_conn_id)
    errors: list[str] = []
    removed: list[dict[str, Any]] = []
    if orphans and not dry_run:
        pending = sorted(discovery.resources(orphans), key=lambda r: DELETE_ORDER.index(r.kind))
        for attempt in range(max_passes):
            waiting = []
            for resource in pending:
                try:
                    _delete(discovery, resource)
                    removed.append(asdict(resource))
                    log.info("Deleted %s %s (%s)", resource.kind, resource.name, resource.id)
                except VpcResourceInUseError as err:
                    waiting.append(resource)  # IBM's dependency error: what uses it is still going
                    if attempt == max_passes - 1:
                        errors.append(str(err))
            pending = waiting
            if not pending:
                break
            log.info("%d resource(s) still in use; retrying in %.0f s", len(pending), pass_wait_s)
            time.sleep(pass_wait_s)
        # The workspaces go last, once nothing of their run is listed (their state is then empty).
        left_slugs = {r.slug for r in discovery.resources(orphans)}
        for v in verdicts:
            if v["orphan"] and v.get("workspace_id") and v["slug"] not in left_slugs:
                try:
                    if discovery.schematics.delete_workspace(v["workspace_id"]):
                        removed.append({"kind": "workspace", "id": v["workspace_id"], "slug": v["slug"]})
                except IbmCloudNotFoundError:
                    pass
                except Exception as err:  # keep going: the report says what is left and why
                    errors.append(f"delete workspace {v['workspace_id']}: {err}")
    # Verify by listing again.
    workspaces, _ = discovery.workspaces()
    still = [asdict(r) for r in discovery.resources()] + [
        {"kind": "workspace", "id": w["id"], "name": w["name"], "slug": w["slug"]} for w in workspaces
    ]
    by_slug = {v["slug"]: v for v in verdicts}
    left = []
    for item in still:
        verdict = by_slug.get(item["slug"])
        if verdict is None:
            why = "appeared after the reaper looked"
        elif not verdict["orphan"]:
            why = f"not an orphan: {verdict['reason']}"
        elif dry_run:
            why = "dry run"
        else:
            why = "could not be deleted; see errors"
        left.append({**item, "why": why})
    return {"removed": removed, "left": left, "errors": errors}


def build_report(
    verdicts: list[dict[str, Any]], outcome: dict[str, Any], *, dry_run: bool, started_at: str
) -> dict[str, Any]:
    """The reaper's report: found, removed, left (and why), and how long each orphan outlived its TTL."""
    left_ids = {r["id"] for r in outcome.get("left", [])}
    orphans = [v for v in verdicts if v["orphan"]]
    # An orphan's resource is reaped when the listing after no longer shows it (destroyed through its
    # workspace or deleted directly).
    reaped = [r for v in orphans for r in v["resources"] if r["id"] not in left_ids]
    return {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "started_at": started_at,
        "dry_run": dry_run,
        "runs": verdicts,
        "found": sum(len(v["resources"]) + (1 if v.get("workspace_id") else 0) for v in verdicts),
        "orphan_runs": [
            {"slug": v["slug"], "reason": v["reason"], "outlived_ttl_s": v["outlived_ttl_s"]} for v in orphans
        ],
        "removed": outcome.get("removed", []),
        "reaped_resources": 0 if dry_run else len(reaped),
        "left": outcome.get("left", []),
        "errors": outcome.get("errors", []),
    }

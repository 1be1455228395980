"""``make preflight``: check an IBM Cloud account before the first paid run, as a checklist.

Uses the DAG's own connections (``ibm_cloud_default`` and ``ibm_cos_default``: Airflow's
metastore, or ``AIRFLOW_CONN_*`` environment variables) and run parameters (the DAG's defaults,
``--conf JSON`` merged over them, as ``make demo`` takes them). Everything it does is read-only,
except one Schematics workspace that it creates, plans (``plan_only``: nothing is applied) and
deletes. Nothing it does is billed: workspaces and plans are free (sc-general-faq.md, "What am I
charged for").

One line per check, ``[ok]``, ``[warn]`` or ``[FAIL]``; a failed line says what to fix. The last
line is one JSON object (``{"ok": ..., "checks": [...]}``): scripts read the last JSON line.
``--sandbox`` runs it against a local sandbox instead (``make preflight SANDBOX=1``).

    python -m scripts.preflight [--conf '{"gpu_profile": "gx3d-160x1792x8h100", "zone": "us-east-2"}']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "plugins"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

#: The account's default quotas per region (ibm-cloud-docs/vpc quotas.md); IBM support raises them per
#: account, and no API reads an account's quota, so ``--quota-*`` sets the account's own numbers.
DEFAULT_QUOTAS = {"vcpu": 200, "memory_gb": 5600, "gpus": 16}

#: What docs/terraform.md ("IAM permissions of the API key that runs the pipeline") says the API
#: key needs: service -> (its name in that table, alternatives: each a set of roles held together).
REQUIRED_ACCESS: dict[str, tuple[str, tuple[frozenset[str], ...]]] = {
    "schematics": ("Schematics", (frozenset({"Manager", "Editor"}),)),
    "is": ("VPC Infrastructure Services", (frozenset({"Editor"}), frozenset({"Administrator"}))),
    "iam-identity": (
        "IAM Identity Service",
        (frozenset({"Administrator"}), frozenset({"Operator", "Trusted Profile Creator"})),
    ),
    "cloud-object-storage": ("Cloud Object Storage (the COS instance)", (frozenset({"Administrator"}),)),
    "resource-group": (
        "Resource group",
        tuple(frozenset({r}) for r in ("Viewer", "Operator", "Editor", "Administrator")),
    ),
}
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}[self.status]
        text = f"{mark} {self.name}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if self.fix else "")


class Preflight:
    """The checks, in order; a check that cannot run because an earlier one failed is skipped."""

    def __init__(
        self,
        params: dict[str, Any],
        *,
        ibm_conn_id: str = "ibm_cloud_default",
        cos_conn_id: str = "ibm_cos_default",
        quotas: dict[str, int] | None = None,
        plan_timeout_s: float = 900.0,
    ) -> None:
        self.params = params
        self.ibm_conn_id = ibm_conn_id
        self.cos_conn_id = cos_conn_id
        self.quotas = {**DEFAULT_QUOTAS, **(quotas or {})}
        self.plan_timeout_s = plan_timeout_s
        self.checks: list[Check] = []
        self.claims: dict[str, Any] = {}
        self.cloud: Any = None
        self.cos: Any = None

    def run(self) -> list[Check]:
        steps: list[tuple[str, Callable[[], Check], bool]] = [
            ("API key", self.check_api_key, False),
            ("IAM policies", self.check_policies, True),
            ("COS bucket", self.check_bucket, False),
            ("image", self.check_image, True),
            ("profile in zone", self.check_profile, True),
            ("quotas", self.check_quotas, True),
            ("Schematics plan", self.check_plan, True),
        ]
        for name, step, needs_key in steps:
            if needs_key and not self.claims:
                self.checks.append(Check(name, "skip", "needs a working API key (above)"))
                continue
            try:
                self.checks.append(step())
            except Exception as err:  # a check that breaks says so and the others still run
                self.checks.append(
                    Check(name, "fail", f"{type(err).__name__}: {err}", "see the error; rerun make preflight")
                )
        return self.checks

    # -- 1. the API key ----------------------------------------------------------------------------
    def check_api_key(self) -> Check:
        import jwt

        from ibm_cloud_airflow.hooks.base import CosConnectionConfig, IbmCloudConnectionConfig
        from ibm_cloud_airflow.utils.secrets import get_connection

        self.cloud = IbmCloudConnectionConfig.from_connection(get_connection(self.ibm_conn_id))
        self.cos = CosConnectionConfig.from_connection(get_connection(self.cos_conn_id))
        try:
            token = self.cloud.authenticator().token_manager.get_token()
        except Exception as err:
            return Check(
                "API key",
                "fail",
                f"IAM refused the API key of connection '{self.ibm_conn_id}' ({err})",
                "create an API key (IBM Cloud console > Manage > Access (IAM) > API keys) and set it as "
                f"the password of connection '{self.ibm_conn_id}'",
            )
        self.claims = jwt.decode(token, options={"verify_signature": False})
        account = (self.claims.get("account") or {}).get("bss", "?")
        return Check("API key", "ok", f"works: {self.claims.get('iam_id')} in account {account}")

    # -- 2. IAM policies ---------------------------------------------------------------------------
    def check_policies(self) -> Check:
        from ibm_cloud_airflow.hooks.iam import IamPolicyHook

        hook = IamPolicyHook(self.ibm_conn_id)
        iam_id = str(self.claims.get("iam_id") or "")
        policies = hook._get("/v2/policies", account_id=hook.account_id(), iam_id=iam_id).get("policies", [])
        held: dict[str, set[str]] = {}
        for policy in policies:
            attrs = {
                a.get("key"): a.get("value") for a in (policy.get("resource") or {}).get("attributes", [])
            }
            service = attrs.get("serviceName") or (
                "resource-group" if attrs.get("resourceType") == "resource-group" else None
            )
            if not service:
                continue
            for grant in ((policy.get("control") or {}).get("grant") or {}).get("roles", []):
                role = str(grant.get("role_id", "")).rsplit(":", 1)[-1]
                held.setdefault(service, set()).add(_role_name(role))
        missing = []
        for service, (label, alternatives) in REQUIRED_ACCESS.items():
            roles = held.get(service, set())
            if not any(alt <= roles for alt in alternatives):
                need = " or ".join(" + ".join(sorted(alt)) for alt in alternatives)
                missing.append(f"{label} ({service}): {need}")
        if missing:
            return Check(
                "IAM policies",
                "fail",
                f"{iam_id} lacks {'; '.join(missing)}",
                "assign these roles (docs/terraform.md, 'IAM permissions of the API key'); IAM's "
                "policy list shows direct policies only: access through an access group shows as missing",
            )
        return Check("IAM policies", "ok", f"cover docs/terraform.md's list ({', '.join(sorted(held))})")

    # -- 3. the bucket -----------------------------------------------------------------------------
    def check_bucket(self) -> Check:
        from ibm_botocore.exceptions import ClientError

        from ibm_cloud_airflow.hooks.cos import CosHook

        bucket = self.params["bucket"]
        client = CosHook(self.cos_conn_id).client
        try:
            client.head_bucket(Bucket=bucket)
            location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            return Check(
                "COS bucket",
                "fail",
                f"bucket '{bucket}' at {self.cos.endpoint_url}: {code or err}",
                f"create a regional bucket '{bucket}' in {self.params['region']} (or set the 'bucket' "
                f"parameter), and give connection '{self.cos_conn_id}''s credential Writer on it",
            )
        problems = []
        if location and not location.startswith(self.params["region"]):
            problems.append(f"its location {location} is not in region {self.params['region']}")
        crn = self.cos.instance_crn or ""
        account = (self.claims.get("account") or {}).get("bss", "")
        crn_parts = crn.split(":")
        if self.params["cos_auth_mode"] == "trusted_profile":
            if len(crn_parts) < 8 or crn_parts[4] != "cloud-object-storage":
                problems.append(
                    f"connection '{self.cos_conn_id}' has no COS instance CRN (extra 'instance_crn')"
                )
            elif account and crn_parts[6] != f"a/{account}":
                problems.append(f"its instance CRN belongs to account {crn_parts[6][2:]}, not {account}")
        detail = f"'{bucket}' exists, location {location or '(not reported)'}, instance {crn or '(none)'}"
        if problems:
            return Check(
                "COS bucket",
                "fail",
                f"{detail}: {'; '.join(problems)}",
                "use a bucket of the run's region, and set the connection's 'instance_crn' to the CRN "
                "of the COS instance that holds it (IBM Cloud console > Resource list > the instance)",
            )
        return Check("COS bucket", "ok", detail)

    # -- 4. the image ------------------------------------------------------------------------------
    def check_image(self) -> Check:
        from ibm_cloud_airflow.hooks.vpc import VpcHook

        name = self.params["image"]
        image = VpcHook(self.ibm_conn_id).find_image(name)
        fix = (
            "set the 'image' parameter to a current image: "
            "'ibmcloud is images --visibility public --status available'"
        )
        if image is None:
            return Check("image", "fail", f"'{name}' does not exist in region {self.params['region']}", fix)
        if image["status"] == "obsolete":
            return Check("image", "fail", f"'{name}' is obsolete and cannot create servers", fix)
        if image["status"] == "deprecated":
            return Check("image", "warn", f"'{name}' is deprecated (soon obsolete)", fix)
        return Check("image", "ok", f"'{name}' is {image['status']}")

    # -- 5. the profile in the zone ----------------------------------------------------------------
    def check_profile(self) -> Check:
        from gpu_pipeline.gpu_profiles import UNIVERSAL_ZONES, placement_problems, placement_warnings

        from ibm_cloud_airflow.hooks.vpc import VpcHook

        profile, region, zone = self.params["gpu_profile"], self.params["region"], self.params["zone"]
        hook = VpcHook(self.ibm_conn_id)
        if hook.instance_profile(profile) is None:
            return Check(
                "profile in zone",
                "fail",
                f"region {region} has no instance profile '{profile}'",
                "pick a profile the region offers: 'ibmcloud is instance-profiles' (select-availability "
                "profiles need IBM's approval first)",
            )
        found = hook.zone(region, zone)
        if found is None:
            return Check(
                "profile in zone", "fail", f"zone '{zone}' is not a zone of {region}", "use e.g. {region}-1"
            )
        universal = found.get("universal_name") or ""
        if profile in UNIVERSAL_ZONES:
            where = UNIVERSAL_ZONES[profile]
            if universal in where:
                return Check("profile in zone", "ok", f"'{profile}' is offered in {zone} ({universal})")
            return Check(
                "profile in zone",
                "fail",
                f"'{profile}' is not offered in {zone}: this account maps it to {universal or '?'}, and "
                f"IBM offers the profile in {', '.join(where)} (vsi-profile-details-accelerated.md)",
                "use a zone of this account whose universal name is on IBM's list (the console's VPC "
                "Infrastructure Overview shows the zone mapping)",
            )
        refused = placement_problems(profile, region, zone)
        if refused:
            return Check("profile in zone", "fail", refused[0], "pick a region that offers the profile")
        warnings = placement_warnings(profile, region, zone)
        if warnings:
            return Check("profile in zone", "warn", warnings[0])
        return Check("profile in zone", "ok", f"'{profile}' exists in {region}; zone {zone} ({universal})")

    # -- 6. quotas ---------------------------------------------------------------------------------
    def check_quotas(self) -> Check:
        from ibm_cloud_airflow.hooks.vpc import VpcHook

        used = {"vcpu": 0, "memory_gb": 0, "gpus": 0}
        for instance in VpcHook(self.ibm_conn_id).list_all("instance"):
            size = _profile_size(str((instance.get("profile") or {}).get("name", "")))
            for key in used:
                used[key] += size[key]
        one = _profile_size(self.params["gpu_profile"])
        need = {key: one[key] * int(self.params["vm_count"]) for key in used}
        over = [
            f"{key} {used[key]} used + {need[key]} needed > {self.quotas[key]}"
            for key in used
            if used[key] + need[key] > self.quotas[key]
        ]
        detail = ", ".join(f"{k} {used[k]}+{need[k]}/{self.quotas[k]}" for k in used)
        if over:
            return Check(
                "quotas",
                "fail",
                f"the run does not fit the region's quotas: {'; '.join(over)}",
                "delete instances you no longer need, lower vm_count, or ask IBM support to raise the "
                "quota (then pass your quota: --quota-gpus N; ibm-cloud-docs/vpc quotas.md)",
            )
        return Check("quotas", "ok", f"room for the run (used+needed/quota: {detail})")

    # -- 7. Schematics accepts the template, and a plan succeeds -----------------------------------
    def check_plan(self) -> Check:
        from gpu_pipeline.run_plan import SECURE_VARIABLES_BY_MODE, build_run_plan

        from ibm_cloud_airflow.hooks.schematics import SchematicsHook

        now = datetime.now(UTC)
        plan = build_run_plan(
            self.params,
            dag_id="preflight",
            run_id=f"preflight__{now:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}",
            now=now,
            cos_endpoint=self.cos.vm_endpoint_url,
            cos_instance_crn=self.cos.instance_crn or "",
            resource_group_id=self.cloud.resource_group or "",
        )
        secure = dict.fromkeys(SECURE_VARIABLES_BY_MODE[self.params["cos_auth_mode"]], "")
        if self.params["cos_auth_mode"] == "hmac":
            secure = {
                "cos_hmac_access_key_id": self.cos.access_key_id or "",
                "cos_hmac_secret_access_key": self.cos.secret_access_key or "",
            }
        hook = SchematicsHook(self.ibm_conn_id)
        workspace_id = None
        try:
            workspace = hook.create_workspace(
                name=plan["workspace_name"],
                template_dir=REPO / "terraform",
                variables=plan["terraform_variables"],
                secure_variables=secure,
                tags=plan["tags"],
                description="make preflight: plan only, deleted right after",
                reuse_existing=False,
            )
            workspace_id = workspace["id"]
            activity_id = hook.plan(workspace_id)
            deadline = time.monotonic() + self.plan_timeout_s
            activity = hook.get_activity(workspace_id, activity_id)
            while activity.get("status") not in TERMINAL and time.monotonic() < deadline:
                time.sleep(2)
                activity = hook.get_activity(workspace_id, activity_id)
        finally:
            if workspace_id:
                hook.delete_workspace(workspace_id)
        status = activity.get("status")
        if status != "COMPLETED":
            error = ((activity.get("templates") or [{}])[0].get("log_summary") or {}).get("error", "")
            return Check(
                "Schematics plan",
                "fail",
                f"the plan ended {status or 'without a status'}: {error or 'see the workspace log'}",
                "fix what the plan's error names (a variable, a permission, the template), then rerun",
            )
        return Check(
            "Schematics plan",
            "ok",
            f"the template was accepted and planned (workspace {workspace_id}, deleted)",
        )


def _role_name(role: str) -> str:
    """``TrustedProfileCreator`` -> ``Trusted Profile Creator`` (role CRNs drop the spaces)."""
    out = ""
    for i, char in enumerate(role):
        out += (" " if i and char.isupper() and not role[i - 1].isupper() else "") + char
    return out


def _profile_size(profile: str) -> dict[str, int]:
    """vCPU, memory and GPUs of one instance of ``profile`` (the GPU table, else IBM's name: bx2-2x8)."""
    from gpu_pipeline.gpu_profiles import PROFILES

    spec = PROFILES.get(profile)
    if spec is not None:
        return {"vcpu": spec["vcpu"], "memory_gb": spec["memory_gib"], "gpus": spec["gpu_count"]}
    try:
        vcpu, memory = profile.split("-")[1].split("x")[:2]
        return {"vcpu": int(vcpu), "memory_gb": int(memory), "gpus": 0}
    except (IndexError, ValueError):
        return {"vcpu": 0, "memory_gb": 0, "gpus": 0}


def run_params(conf: dict[str, Any]) -> dict[str, Any]:
    from gpu_pipeline.params import PARAMS

    params = {name: param.value for name, param in PARAMS.items()}
    params.update(conf)
    return params


def report(checks: list[Check]) -> dict[str, Any]:
    ok = all(c.status in ("ok", "warn") for c in checks)
    for check in checks:
        print(check.line())
    failed = sum(c.status == "fail" for c in checks)
    print(f"preflight: {'all checks passed' if ok else f'{failed} check(s) failed'}")
    summary = {"ok": ok, "checks": [asdict(c) for c in checks]}
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", default="", help="run parameters as JSON, merged over the DAG's defaults")
    parser.add_argument("--ibm-conn-id", default="ibm_cloud_default")
    parser.add_argument("--cos-conn-id", default="ibm_cos_default")
    parser.add_argument("--sandbox", action="store_true", help="check a local sandbox instead of IBM Cloud")
    for key, value in DEFAULT_QUOTAS.items():
        parser.add_argument(f"--quota-{key.replace('_', '-')}", type=int, default=value, dest=f"quota_{key}")
    args = parser.parse_args(argv)
    conf = json.loads(args.conf) if args.conf.strip() else {}
    quotas = {key: getattr(args, f"quota_{key}") for key in DEFAULT_QUOTAS}
    if not args.sandbox:
        checks = Preflight(
            run_params(conf), ibm_conn_id=args.ibm_conn_id, cos_conn_id=args.cos_conn_id, quotas=quotas
        ).run()
        return 0 if report(checks)["ok"] else 1
    from sandbox import Sandbox
    from scripts.local_run import DEMO_BUCKET

    os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow" / "preflight"))
    with Sandbox(state_dir=REPO / ".sandbox" / "preflight") as box:
        box.ensure_bucket(DEMO_BUCKET)
        os.environ.update(box.airflow_connections())
        checks = Preflight(run_params({"bucket": DEMO_BUCKET, **conf}), quotas=quotas).run()
    return 0 if report(checks)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

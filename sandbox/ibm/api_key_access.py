"""The API key's own access: the policies its identity holds, and what creating each resource needs.

Schematics runs Terraform with the caller's IAM token, so every resource the apply creates is
created *as the API key's identity*. On IBM Cloud a missing policy fails that create with the
service's 403; the sandbox does the same, per resource type, in the Terraform engine.

What each create needs (the coarse, role-level view; see ``docs/terraform.md``, "IAM permissions
of the API key that runs the pipeline", and the sources cited in ``docs/sandbox.md``):

- ``ibm_is_*``: VPC Infrastructure Services (``is``), platform role Editor or Administrator;
- ``ibm_iam_trusted_profile``: IAM Identity Service (``iam-identity``), Administrator, or the
  Trusted Profile Creator service role;
- ``ibm_iam_trusted_profile_policy``: granting access to a service needs Administrator on that
  service (here ``cloud-object-storage``): only an administrator of a resource assigns access to it.

Error bodies: VPC answers ``403 {"errors": [{"code": "not_authorized", "message": "The request is
not authorized."}]}`` (as quoted in kubernetes-sigs/cluster-api-provider-ibmcloud#1610); IAM
answers with its ``BXNIM`` message codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.ibm.cos_access import SERVICE as COS_SERVICE


@dataclass(frozen=True)
class ServicePolicy:
    """A policy of the API key's identity: roles on one service (account-wide, as the docs advise)."""

    service: str
    roles: frozenset[str]


#: What docs/terraform.md says the pipeline's API key needs; the sandbox's default.
DEFAULT_API_KEY_POLICIES: tuple[ServicePolicy, ...] = (
    ServicePolicy("schematics", frozenset({"Manager", "Editor"})),
    ServicePolicy("is", frozenset({"Editor"})),
    ServicePolicy("iam-identity", frozenset({"Administrator"})),
    ServicePolicy(COS_SERVICE, frozenset({"Administrator", "Writer"})),
    ServicePolicy("resource-group", frozenset({"Viewer"})),
)


@dataclass(frozen=True)
class Requirement:
    service: str
    roles: frozenset[str]  # any one of them suffices
    action: str
    service_label: str


def requirement(resource_type: str) -> Requirement | None:
    """What creating a resource of ``resource_type`` needs, or None when nothing is checked."""
    if resource_type.startswith("ibm_is_"):
        kind = resource_type.removeprefix("ibm_is_")
        return Requirement(
            "is",
            frozenset({"Editor", "Administrator"}),
            f"is.{kind.split('_')[0]}.{kind.replace('_', '-')}.create",
            "VPC Infrastructure Services",
        )
    if resource_type == "ibm_iam_trusted_profile":
        return Requirement(
            "iam-identity",
            frozenset({"Administrator", "Trusted Profile Creator"}),
            "iam-identity.profile.create",
            "IAM Identity Service",
        )
    if resource_type == "ibm_iam_trusted_profile_policy":
        return Requirement(
            COS_SERVICE, frozenset({"Administrator"}), "iam.policy.create", "Cloud Object Storage"
        )
    return None


class ApiKeyAccess:
    """The policies of the sandbox's API-key identity; the ``api_key_missing_policy`` fault hides one."""

    def __init__(self, policies: tuple[ServicePolicy, ...] | list[ServicePolicy], faults: Any) -> None:
        self.policies = tuple(policies)
        self.faults = faults

    def current(self) -> list[ServicePolicy]:
        if self.faults is not None and self.faults.active("api_key_missing_policy"):
            missing = str(self.faults.options("api_key_missing_policy").get("service", "iam-identity"))
            return [p for p in self.policies if p.service != missing]
        return list(self.policies)

    def denied(self, resource_type: str) -> Requirement | None:
        """The unmet requirement for creating ``resource_type``, or None when it is allowed."""
        need = requirement(resource_type)
        if need is None:
            return None
        for policy in self.current():
            if policy.service == need.service and policy.roles & need.roles:
                return None
        return need


def forbidden_message(resource_type: str, need: Requirement, iam_id: str) -> str:
    """The error an apply shows for a create that IAM refuses (the service's 403, as the provider logs it)."""
    if need.service == "is":
        body = (
            '{"errors":[{"code":"not_authorized","message":"The request is not authorized.",'
            '"more_info":"https://cloud.ibm.com/docs/vpc?topic=vpc-rias-error-messages#not_authorized"}],'
            '"status_code":403}'
        )
    else:
        body = (
            '{"errors":[{"code":"insufficent_permissions","message_code":"BXNIM0513E",'
            '"message":"You are not authorized to use this API."}],"status_code":403}'
        )
    return (
        f"[ERROR] Error creating {resource_type}: Request failed with status code: 403, "
        f"ServerErrorResponse: {body} (the caller {iam_id} needs {need.action}: one of "
        f"{sorted(need.roles)} on {need.service_label})"
    )

"""IAM Policy Management, read side: ``GET /v2/policies`` and ``GET /v2/roles`` on the IAM host.

What a caller with access to the account's policies sees on IBM Cloud (the API documented at
https://cloud.ibm.com/apidocs/iam-policy-management: *List policies* v2 with ``account_id`` and
``iam_id``; *List roles* with ``service_name``, whose roles carry their ``actions``). The pipeline
uses it to explain a server that stopped without a marker: which COS actions its trusted profile
holds. Policies come from the same inventory records the COS authoriser enforces, roles from the
one role->action table (:mod:`sandbox.ibm.cos_access`).
"""

from __future__ import annotations

import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.ibm.cos_access import ACTION_ROLES, SERVICE, SERVICE_ROLES, policies_from_terraform
from sandbox.ibm.errors import json_response
from sandbox.ibm.iam import InvalidTokenError, TokenAuthority
from sandbox.ibm.wsgi import ApiError
from sandbox.inventory import Inventory

PLATFORM_ROLES = ("Viewer", "Operator", "Editor", "Administrator")


def role_crn(role: str, service: str = SERVICE) -> str:
    """IBM's role CRNs: platform roles (``role:``) and the generic service roles live under ``iam``,
    a service's own roles under the service (``crn:v1:bluemix:public:iam-identity::::serviceRole:...``)."""
    if role in PLATFORM_ROLES:
        return f"crn:v1:bluemix:public:iam::::role:{role}"
    if role in ("Reader", "Writer", "Manager"):
        return f"crn:v1:bluemix:public:iam::::serviceRole:{role}"
    return f"crn:v1:bluemix:public:{service}::::serviceRole:{role.replace(' ', '')}"


class PolicyApi:
    """The handler of ``/v2/policies`` and ``/v2/roles`` on :class:`sandbox.ibm.iam.IamApp`."""

    def __init__(self, authority: TokenAuthority, inventory: Inventory, api_key_access: Any = None) -> None:
        self.authority = authority
        self.inventory = inventory
        # the API key identity's own policies (sandbox/ibm/api_key_access.py), account-wide per service
        self.api_key_access = api_key_access

    def __call__(self, request: Request) -> Response:
        try:
            claims = self.authority.verify_header(request.headers.get("Authorization"))
        except InvalidTokenError as err:
            raise ApiError(401, f"Token is not valid: {err}", "BXNIM0308E") from err
        if request.method != "GET":
            raise ApiError(405, "Method not allowed.", "BXNIM0102E")
        if request.path == "/v2/roles":
            return self.roles(request)
        account = request.args.get("account_id", "")
        if not account:
            raise ApiError(400, "Property missing or empty.", "BXNIM0109E", details="account_id is missing")
        if account != (claims.get("account") or {}).get("bss"):
            raise ApiError(403, "You are not authorized to use this API.", "BXNIM0513E")
        return self.policies(account, request.args.get("iam_id", ""))

    def policies(self, account: str, iam_id: str) -> Response:
        records = self.inventory.list(kind="ibm_iam_trusted_profile_policy")
        out = []
        user = self.authority.user["iam_id"]
        if self.api_key_access is not None and iam_id in ("", user):
            for n, policy in enumerate(self.api_key_access.current()):
                out.append(
                    {
                        "id": f"sandbox-api-key-policy-{n}",
                        "type": "access",
                        "subject": {
                            "attributes": [{"key": "iam_id", "operator": "stringEquals", "value": user}]
                        },
                        "resource": {
                            "attributes": [
                                {"key": "accountId", "operator": "stringEquals", "value": account},
                                {"key": "serviceName", "operator": "stringEquals", "value": policy.service},
                            ]
                        },
                        "control": {
                            "grant": {
                                "roles": [
                                    {"role_id": role_crn(r, policy.service)} for r in sorted(policy.roles)
                                ]
                            }
                        },
                        "state": "active",
                    }
                )
        for record, policy in ((r, p) for r in records for p in policies_from_terraform([r])):
            if iam_id and policy.subject != iam_id:
                continue
            attrs = [("accountId", account), ("serviceName", SERVICE)]
            attrs += [("serviceInstance", policy.instance_guid)] if policy.instance_guid else []
            attrs += [("resourceType", "bucket"), ("resource", policy.bucket)] if policy.bucket else []
            body: dict[str, Any] = {
                "id": record["id"] or str(uuid.uuid4()),
                "type": "access",
                "subject": {
                    "attributes": [{"key": "iam_id", "operator": "stringEquals", "value": policy.subject}]
                },
                "resource": {
                    "attributes": [{"key": k, "operator": "stringEquals", "value": v} for k, v in attrs]
                },
                "control": {"grant": {"roles": [{"role_id": role_crn(r)} for r in sorted(policy.roles)]}},
                "state": "active",
            }
            if policy.rule is not None:
                body["rule"] = policy.rule
                body["pattern"] = (record.get("attrs") or {}).get("pattern")
            out.append(body)
        return json_response({"policies": out})

    def roles(self, request: Request) -> Response:
        if request.args.get("service_name") != SERVICE:
            return json_response({"custom_roles": [], "service_roles": [], "system_roles": []})
        service_roles = [
            {
                "display_name": role,
                "crn": role_crn(role),
                "actions": sorted(a for a, roles in ACTION_ROLES.items() if role in roles),
            }
            for role in sorted(SERVICE_ROLES)
        ]
        return json_response({"custom_roles": [], "service_roles": service_roles, "system_roles": []})

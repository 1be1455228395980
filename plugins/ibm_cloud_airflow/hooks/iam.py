"""Hook on IAM Policy Management (read only): what COS access a trusted profile really holds.

Used to explain a server that stopped without writing a marker: the pipeline cannot read the
server's log (it could not upload it), but it can read the profile's policies (``GET
/v2/policies?account_id=…&iam_id=…``) and what their roles include (``GET
/v2/roles?service_name=cloud-object-storage``, each role with its ``actions``), both documented at
https://cloud.ibm.com/apidocs/iam-policy-management. Reading policies needs the Viewer role on the
IAM Access Management service (or Administrator on the COS instance, which the pipeline's API key
holds anyway; see docs/terraform.md).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import jwt
import requests
from airflow.sdk import BaseHook

from ibm_cloud_airflow.hooks.base import IbmCloudConnectionConfig, get_connection

COS_SERVICE = "cloud-object-storage"
#: What the workload must be able to do on its own prefix (workload/bootstrap.sh, train.py).
WORKLOAD_COS_ACTIONS = (
    f"{COS_SERVICE}.object.put",
    f"{COS_SERVICE}.object.post_initiate_upload",
    f"{COS_SERVICE}.object.get",
    f"{COS_SERVICE}.object.head",
)


class IamPolicyHook(BaseHook):
    conn_name_attr = "ibm_conn_id"
    default_conn_name = "ibm_cloud_default"
    conn_type = "ibm_cloud"
    hook_name = "IBM Cloud IAM policies"

    def __init__(self, ibm_conn_id: str = default_conn_name, *, request_timeout: float = 30.0) -> None:
        super().__init__()
        self.ibm_conn_id = ibm_conn_id
        self.request_timeout = request_timeout

    @cached_property
    def config(self) -> IbmCloudConnectionConfig:
        return IbmCloudConnectionConfig.from_connection(get_connection(self.ibm_conn_id))

    @cached_property
    def _authenticator(self) -> Any:
        return self.config.authenticator()

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        token = self._authenticator.token_manager.get_token()
        response = requests.get(
            f"{self.config.iam_url.rstrip('/')}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=self.request_timeout,
        )
        response.raise_for_status()
        return response.json()

    def account_id(self) -> str:
        token = self._authenticator.token_manager.get_token()
        claims = jwt.decode(token, options={"verify_signature": False})
        return str((claims.get("account") or {}).get("bss") or "")

    def cos_roles(self) -> dict[str, tuple[str, set[str]]]:
        """Role CRN -> (display name, the COS actions it includes), service and system roles."""
        roles = self._get("/v2/roles", service_name=COS_SERVICE, account_id=self.account_id())
        return {
            role.get("crn", ""): (role.get("display_name", ""), set(role.get("actions") or []))
            for role in [*roles.get("service_roles", []), *roles.get("system_roles", [])]
        }

    def cos_grants(self, iam_id: str, bucket: str) -> dict[str, Any]:
        """The profile's COS policies on ``bucket``: their roles and the union of their actions."""
        policies = self._get("/v2/policies", account_id=self.account_id(), iam_id=iam_id).get("policies", [])
        known = self.cos_roles()
        roles: set[str] = set()
        actions: set[str] = set()
        for policy in policies:
            attrs = {
                a.get("key"): a.get("value") for a in (policy.get("resource") or {}).get("attributes", [])
            }
            if attrs.get("serviceName") != COS_SERVICE or attrs.get("resource") not in (None, bucket):
                continue
            for grant in ((policy.get("control") or {}).get("grant") or {}).get("roles", []):
                crn = grant.get("role_id", "")
                name, granted = known.get(crn, (crn.rsplit(":", 1)[-1], set()))
                roles.add(name)
                actions |= granted
        return {"roles": sorted(roles), "actions": actions}


def explain_stopped_servers(ibm_conn_id: str, trusted_profile_id: str, bucket: str) -> str:
    """One sentence on why servers that cannot report stopped, from the profile's real policies."""
    if not trusted_profile_id:
        return "the servers authenticate with HMAC keys: check the COS credential's role and the endpoint"
    iam_id = trusted_profile_id if trusted_profile_id.startswith("iam-") else f"iam-{trusted_profile_id}"
    try:
        grants = IamPolicyHook(ibm_conn_id).cos_grants(iam_id, bucket)
    except Exception as exc:  # the explanation is a bonus; the failure stands without it
        return f"could not read the trusted profile's IAM policies ({type(exc).__name__}: {exc})"
    missing = [a for a in WORKLOAD_COS_ACTIONS if a not in grants["actions"]]
    if missing:
        return (
            f"COS access denied: trusted profile {trusted_profile_id} holds {grants['roles'] or 'no roles'} "
            f"on bucket {bucket}, without {', '.join(missing)}"
        )
    return (
        f"trusted profile {trusted_profile_id} holds {grants['roles']} on bucket {bucket}, which include "
        "the workload's actions: check the policy's path condition, the COS endpoint and the server's network"
    )

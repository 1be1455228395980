"""Hook on IAM Policy Management (read only): which actions an IAM identity's policies grant.

Reads an identity's policies (``GET /v2/policies?account_id=…&iam_id=…``) and what their roles
include (``GET /v2/roles?service_name=…``, each role with its ``actions``), both documented at
https://cloud.ibm.com/apidocs/iam-policy-management. Reading policies needs the Viewer role on the
IAM Access Management service (or Administrator on the service the policies are about).

:meth:`IamPolicyHook.access` answers "which of these actions does this trusted profile lack on this
resource"; the caller words the explanation (``gpu_pipeline/access.py`` does for its servers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ibm_cloud_airflow.hooks.base import IbmCloudBaseHook


@dataclass(frozen=True)
class Access:
    """What an identity's policies grant on one resource of one service, against what it needs."""

    iam_id: str
    roles: list[str]  # display names of the granted roles
    actions: frozenset[str]  # every action those roles include
    missing: list[str]  # the required actions that none of them includes


class IamPolicyHook(IbmCloudBaseHook):
    hook_name = "IBM Cloud IAM policies"
    default_request_timeout = 30.0

    def get_conn(self) -> Any:
        return self.authenticator

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        """``GET <iam_url><path>`` with the API key's token, retried as every IBM request is."""
        import requests

        def get() -> dict[str, Any]:
            token = self.authenticator.token_manager.get_token()
            response = requests.get(
                f"{self.config.iam_url.rstrip('/')}{path}",
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=self.request_timeout,
            )
            response.raise_for_status()
            return response.json()

        return self._call(f"IAM GET {path}", get)

    def roles(self, service_name: str) -> dict[str, tuple[str, set[str]]]:
        """Role CRN -> (display name, the actions it includes), the service's and the system roles."""
        roles = self._get("/v2/roles", service_name=service_name, account_id=self.account_id())
        return {
            role.get("crn", ""): (role.get("display_name", ""), set(role.get("actions") or []))
            for role in [*roles.get("service_roles", []), *roles.get("system_roles", [])]
        }

    def access(
        self, iam_id: str, *, service_name: str, resource: str | None, required: tuple[str, ...] | list[str]
    ) -> Access:
        """The roles and actions ``iam_id``'s policies grant on ``service_name`` (``resource`` or all)."""
        policies = self._get("/v2/policies", account_id=self.account_id(), iam_id=iam_id).get("policies", [])
        known = self.roles(service_name)
        roles: set[str] = set()
        actions: set[str] = set()
        for policy in policies:
            attrs = {
                a.get("key"): a.get("value") for a in (policy.get("resource") or {}).get("attributes", [])
            }
            if attrs.get("serviceName") != service_name or attrs.get("resource") not in (None, resource):
                continue
            for grant in ((policy.get("control") or {}).get("grant") or {}).get("roles", []):
                crn = grant.get("role_id", "")
                name, granted = known.get(crn, (crn.rsplit(":", 1)[-1], set()))
                roles.add(name)
                actions |= granted
        return Access(
            iam_id=iam_id,
            roles=sorted(roles),
            actions=frozenset(actions),
            missing=[a for a in required if a not in actions],
        )


def profile_iam_id(trusted_profile_id: str) -> str:
    """The IAM id of a trusted profile (``iam-<profile id>``)."""
    return trusted_profile_id if trusted_profile_id.startswith("iam-") else f"iam-{trusted_profile_id}"

"""IAM Identity API, trusted profiles only: list, get and delete (``ibm_platform_services.IamIdentityV1``).

Profiles are the ``ibm_iam_trusted_profile`` records the Terraform engine creates. ``GET /v1/profiles``
needs ``account_id`` (400 without it) and pages with ``pagesize``/``pagetoken``; ``DELETE
/v1/profiles/{profile-id}`` answers 204, or 404 for an unknown id. Deleting a profile removes its
access policies (``ibm_iam_trusted_profile_policy`` records) with it. Errors are IAM-shaped
(``errorCode``/``errorMessage``). Source: IBM Cloud IAM Identity Services API, "Trusted profiles"
(https://cloud.ibm.com/apidocs/iam-identity-token-api#list-profiles, #delete-profile).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import json_response
from sandbox.ibm.iam import TokenAuthority
from sandbox.ibm.wsgi import ApiError, IamStyleApp, Rule
from sandbox.inventory import Inventory

PROFILE_KIND = "ibm_iam_trusted_profile"
POLICY_KIND = "ibm_iam_trusted_profile_policy"


class IamIdentityApp(IamStyleApp):
    service = "iam_identity"
    auth = True
    strict_slashes = False
    rules = [
        Rule("/v1/profiles", endpoint="list", methods=["GET"]),
        Rule("/v1/profiles/<profile_id>", endpoint="get", methods=["GET"]),
        Rule("/v1/profiles/<profile_id>", endpoint="delete", methods=["DELETE"]),
    ]

    def __init__(self, authority: TokenAuthority, inventory: Inventory) -> None:
        self.authority = authority
        self.inventory = inventory

    def _profile(self, profile_id: str) -> dict[str, Any]:
        record = self.inventory.get(profile_id)
        if record is None or record["kind"] != PROFILE_KIND:
            raise ApiError(404, f"Profile with id {profile_id} not found.", "BXNIM0513E")
        return record

    def ep_get(self, request: Request, claims: dict[str, Any], profile_id: str) -> Response:
        return json_response(self.render(self._profile(profile_id)))

    def ep_delete(self, request: Request, claims: dict[str, Any], profile_id: str) -> Response:
        record = self._profile(profile_id)
        # IBM deletes a profile's policies with it; Terraform names the profile by id or iam_id.
        iam_id = record["attrs"].get("iam_id")
        for policy in self.inventory.list(kind=POLICY_KIND):
            attrs = policy["attrs"]
            if attrs.get("profile_id") == record["id"] or (iam_id and attrs.get("iam_id") == iam_id):
                self.inventory.remove(policy["id"])
        self.inventory.remove(record["id"])
        return Response(status=204)

    def ep_list(self, request: Request, claims: dict[str, Any]) -> Response:
        account_id = request.args.get("account_id")
        if not account_id:
            raise ApiError(400, "Property missing or empty.", "BXNIM0109E", details="account_id is missing")
        if account_id != self.inventory.account_id:
            return json_response({"profiles": [], "limit": 20})
        try:
            limit = int(request.args.get("pagesize", 20))
            start = int(request.args.get("pagetoken", 0) or 0)
        except ValueError:
            raise ApiError(400, "pagesize and pagetoken must be integers.", "BXNIM0109E") from None
        name = request.args.get("name")
        records = sorted(self.inventory.list(kind=PROFILE_KIND), key=lambda r: r["created_at"])
        records = [r for r in records if name is None or r["name"] == name]
        body: dict[str, Any] = {
            "profiles": [self.render(r) for r in records[start : start + limit]],
            "limit": limit,
            "first": f"{request.base_url}?account_id={account_id}&pagesize={limit}",
        }
        if start + limit < len(records):
            body["next"] = f"{body['first']}&pagetoken={start + limit}"
        return json_response(body)

    def render(self, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        return {
            "id": record["id"],
            "entity_tag": "1-0",
            "crn": attrs.get("crn") or record["crn"],
            "name": record["name"],
            "description": attrs.get("description") or "",
            "created_at": record["created_at"],
            "modified_at": record["created_at"],
            "iam_id": attrs.get("iam_id") or f"iam-{record['id']}",
            "account_id": self.inventory.account_id,
        }

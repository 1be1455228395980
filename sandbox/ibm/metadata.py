"""VPC instance metadata service: instance identity tokens and their exchange for IAM tokens.

A real VM reaches its own metadata service at ``http://169.254.169.254``; locally every simulated
VM shares one host, so each instance gets a URL prefix: ``{metadata}/i/<instance_id>``. Under it:

- ``PUT /identity/v1/token?version=...`` (``Metadata-Flavor: ibm``, body ``{"expires_in": N}``)
  -> ``{"access_token": <instance identity JWT>, "created_at", "expires_at", "expires_in"}``;
- ``POST /identity/v1/iam_tokens?version=...`` (``Authorization: Bearer <identity token>``, optional
  ``{"trusted_profile": {"id"|"crn"|"name": ...}}``) -> an IAM token response for the trusted profile;
- the pre-2025-08-26 paths ``/instance_identity/v1/token`` and ``/instance_identity/v1/iam_token``.

The instance must be live in the inventory (kind ``ibm_is_instance``); its ``attrs`` name the
linked trusted profile (``trusted_profile_id``, optional ``trusted_profile_crn``/``_name``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import json_response
from sandbox.ibm.iam import METADATA_ISSUER, InvalidTokenError, TokenAuthority
from sandbox.ibm.wsgi import ApiError, Rule, VpcStyleApp
from sandbox.inventory import Inventory

ROUTES = [
    Rule("/i/<instance_id>/identity/v1/token", endpoint="token", methods=["PUT"]),
    Rule("/i/<instance_id>/instance_identity/v1/token", endpoint="token", methods=["PUT"]),
    Rule("/i/<instance_id>/identity/v1/iam_tokens", endpoint="iam_token", methods=["POST"]),
    Rule("/i/<instance_id>/instance_identity/v1/iam_token", endpoint="iam_token", methods=["POST"]),
    Rule("/i/<instance_id>/metadata/v1/instance", endpoint="instance", methods=["GET"]),
]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MetadataApp(VpcStyleApp):
    service = "metadata"
    rules = ROUTES
    invalid_json = ("bad_request", "The request body is not valid JSON.")

    def __init__(self, authority: TokenAuthority, inventory: Inventory) -> None:
        self.authority = authority
        self.inventory = inventory

    def route_error(self, request: Request, err: HTTPException) -> Response:
        return self.error(ApiError(err.code or 404, f"No such metadata path: {request.path}", "not_found"))

    def before(self, request: Request, endpoint: str, claims: dict[str, Any], args: dict[str, Any]) -> None:
        """``version`` is required; the instance must be live (its record replaces ``instance_id``)."""
        if not request.args.get("version"):
            raise ApiError(400, "The version query parameter is required.", "missing_version")
        instance_id = args.pop("instance_id")
        args["instance"] = self._instance(instance_id)
        if args["instance"] is None:
            raise ApiError(404, f"Instance {instance_id} does not exist.", "instance_not_found")

    def _instance(self, instance_id: str) -> dict[str, Any] | None:
        record = self.inventory.get(instance_id)
        if record is None or record["kind"] != "ibm_is_instance":
            return None
        return record

    def ep_token(self, request: Request, claims: dict[str, Any], instance: dict[str, Any]) -> Response:
        if request.headers.get("Metadata-Flavor") != "ibm":
            raise ApiError(400, "The header Metadata-Flavor: ibm is required.", "missing_metadata_flavor")
        body = self.json_body(request, {})
        expires_in = int(body.get("expires_in", 300) if isinstance(body, dict) else 300)
        if not 5 <= expires_in <= 3600:
            raise ApiError(400, "expires_in must be between 5 and 3600.", "invalid_expires_in")
        now = time.time()
        return json_response(
            {
                "access_token": self.authority.issue_identity_token(instance, expires_in),
                "created_at": _iso(now),
                "expires_at": _iso(now + expires_in),
                "expires_in": expires_in,
            }
        )

    def _identity(self, request: Request, instance: dict[str, Any]) -> None:
        """The request's instance identity token must be valid and this instance's (else 401)."""
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        try:
            claims = self.authority.verify(token, issuer=METADATA_ISSUER)
        except InvalidTokenError as err:
            raise ApiError(401, f"Instance identity token rejected: {err}", "not_authorized") from err
        if claims.get("instance_id") != instance["id"]:
            raise ApiError(401, "The identity token belongs to another instance.", "not_authorized")

    def ep_iam_token(self, request: Request, claims: dict[str, Any], instance: dict[str, Any]) -> Response:
        self._identity(request, instance)
        body = self.json_body(request, {}) or {}
        attrs = instance["attrs"]
        target = str(attrs.get("trusted_profile_id") or "")  # Terraform's default_trusted_profile_target
        if not target:
            raise ApiError(400, "No trusted profile is linked to this instance.", "no_trusted_profile")
        # the target may be the profile's id or its CRN (which ends in "profile:<id>")
        linked = target.rsplit("profile:", 1)[-1] if target.startswith("crn:") else target
        crn = (
            target
            if target.startswith("crn:")
            else (f"crn:v1:bluemix:public:iam-identity::a/{self.inventory.account_id}::profile:{linked}")
        )
        wanted = (body.get("trusted_profile") or {}) if isinstance(body, dict) else {}
        accepted = {
            "id": {linked},
            "crn": {crn, attrs.get("trusted_profile_crn")},
            "name": {attrs.get("trusted_profile_name")},
        }
        for key, value in wanted.items():
            if key not in accepted or value not in accepted[key]:
                raise ApiError(
                    400, f"Trusted profile {key}={value} is not linked.", "trusted_profile_not_linked"
                )
        body_out = self.authority.issue(
            self.authority.profile_identity(linked),
            client_id=None,
            grant_type="urn:ibm:params:oauth:grant-type:cr-token",
        )
        body_out.pop("refresh_token", None)
        return json_response(body_out)

    def ep_instance(self, request: Request, claims: dict[str, Any], instance: dict[str, Any]) -> Response:
        self._identity(request, instance)
        return json_response(
            {
                "id": instance["id"],
                "crn": instance["crn"],
                "name": instance["name"],
                "created_at": instance["created_at"],
            }
        )

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

import json
import time
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.errors import json_response, vpc_error
from sandbox.iam import METADATA_ISSUER, InvalidTokenError, TokenAuthority
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


class MetadataApp:
    url_map = Map(ROUTES)

    def __init__(self, authority: TokenAuthority, inventory: Inventory) -> None:
        self.authority = authority
        self.inventory = inventory

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except HTTPException as err:
            self.inventory.count_request("metadata", request.method, request.path)
            return vpc_error(err.code or 404, "not_found", f"No such metadata path: {request.path}")
        self.inventory.count_request("metadata", request.method, rule.rule)
        if not request.args.get("version"):
            return vpc_error(400, "missing_version", "The version query parameter is required.")
        instance = self._instance(args["instance_id"])
        if instance is None:
            return vpc_error(404, "instance_not_found", f"Instance {args['instance_id']} does not exist.")
        return getattr(self, "ep_" + rule.endpoint)(request, instance)

    def _instance(self, instance_id: str) -> dict[str, Any] | None:
        record = self.inventory.get(instance_id)
        if record is None or record["kind"] != "ibm_is_instance":
            return None
        return record

    def ep_token(self, request: Request, instance: dict[str, Any]) -> Response:
        if request.headers.get("Metadata-Flavor") != "ibm":
            return vpc_error(400, "missing_metadata_flavor", "The header Metadata-Flavor: ibm is required.")
        try:
            body = json.loads(request.get_data() or b"{}")
        except ValueError:
            return vpc_error(400, "bad_request", "The request body is not valid JSON.")
        expires_in = int(body.get("expires_in", 300) if isinstance(body, dict) else 300)
        if not 5 <= expires_in <= 3600:
            return vpc_error(400, "invalid_expires_in", "expires_in must be between 5 and 3600.")
        now = time.time()
        return json_response(
            {
                "access_token": self.authority.issue_identity_token(instance, expires_in),
                "created_at": _iso(now),
                "expires_at": _iso(now + expires_in),
                "expires_in": expires_in,
            }
        )

    def _identity(self, request: Request, instance: dict[str, Any]) -> Response | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        try:
            claims = self.authority.verify(token, issuer=METADATA_ISSUER)
        except InvalidTokenError as err:
            return vpc_error(401, "not_authorized", f"Instance identity token rejected: {err}")
        if claims.get("instance_id") != instance["id"]:
            return vpc_error(401, "not_authorized", "The identity token belongs to another instance.")
        return None

    def ep_iam_token(self, request: Request, instance: dict[str, Any]) -> Response:
        denied = self._identity(request, instance)
        if denied is not None:
            return denied
        try:
            body = json.loads(request.get_data() or b"{}") or {}
        except ValueError:
            return vpc_error(400, "bad_request", "The request body is not valid JSON.")
        attrs = instance["attrs"]
        target = str(attrs.get("trusted_profile_id") or "")  # Terraform's default_trusted_profile_target
        if not target:
            return vpc_error(400, "no_trusted_profile", "No trusted profile is linked to this instance.")
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
                return vpc_error(
                    400, "trusted_profile_not_linked", f"Trusted profile {key}={value} is not linked."
                )
        body_out = self.authority.issue(
            self.authority.profile_identity(linked),
            client_id=None,
            grant_type="urn:ibm:params:oauth:grant-type:cr-token",
        )
        body_out.pop("refresh_token", None)
        return json_response(body_out)

    def ep_instance(self, request: Request, instance: dict[str, Any]) -> Response:
        denied = self._identity(request, instance)
        if denied is not None:
            return denied
        return json_response(
            {
                "id": instance["id"],
                "crn": instance["crn"],
                "name": instance["name"],
                "created_at": instance["created_at"],
            }
        )

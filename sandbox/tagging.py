"""Global Tagging API, the read the reaper needs: ``GET /v3/tags?attached_to=<crn>``.

The VPC API does not return user tags (only volumes carry ``user_tags``); IBM keeps them in the
Global Search and Tagging service, which ``ibm_platform_services.GlobalTaggingV1.list_tags``
reads. Tags are the inventory records' ``tags`` (what Terraform's ``tags`` argument set); a CRN that
matches nothing has no tags (200, empty list, as on IBM Cloud). Only ``tag_type=user`` (the default)
is served. Source: IBM Cloud Global Tagging API, "Get all tags"
(https://cloud.ibm.com/apidocs/tagging#list-tags).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.errors import json_response, vpc_error
from sandbox.iam import InvalidTokenError, TokenAuthority
from sandbox.inventory import Inventory


class TaggingApp:
    def __init__(self, authority: TokenAuthority, inventory: Inventory) -> None:
        self.authority = authority
        self.inventory = inventory

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        self.inventory.count_request("tagging", request.method, request.path)
        if request.method != "GET" or request.path.rstrip("/") != "/v3/tags":
            return vpc_error(404, "not_found", "Only GET /v3/tags is served by the sandbox.")
        try:
            self.authority.verify_header(request.headers.get("Authorization"))
        except InvalidTokenError as err:
            return vpc_error(401, "not_authorized", f"Authorization failed: {err}")
        if request.args.get("tag_type", "user") != "user":
            return json_response({"total_count": 0, "offset": 0, "limit": 100, "items": []})
        crn = request.args.get("attached_to")
        records = self.inventory.list()
        tags: list[str] = []
        for record in records:
            if crn is None or record["crn"] == crn or record["attrs"].get("crn") == crn:
                tags.extend(t for t in record.get("tags") or [] if t not in tags)
        offset = int(request.args.get("offset", 0) or 0)
        limit = int(request.args.get("limit", 100) or 100)
        items = [{"name": t} for t in sorted(tags)[offset : offset + limit]]
        return json_response({"total_count": len(tags), "offset": offset, "limit": limit, "items": items})

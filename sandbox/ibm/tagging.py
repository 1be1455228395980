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

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import json_response
from sandbox.ibm.iam import TokenAuthority
from sandbox.ibm.wsgi import ApiError, Rule, VpcStyleApp
from sandbox.inventory import Inventory


class TaggingApp(VpcStyleApp):
    service = "tagging"
    count_raw_path = True
    auth = True
    strict_slashes = False
    rules = [Rule("/v3/tags", endpoint="tags", methods=["GET"])]

    def __init__(self, authority: TokenAuthority, inventory: Inventory) -> None:
        self.authority = authority
        self.inventory = inventory

    def route_error(self, request: Request, err: HTTPException) -> Response:
        return self.error(ApiError(404, "Only GET /v3/tags is served by the sandbox.", "not_found"))

    def ep_tags(self, request: Request, claims: dict[str, Any]) -> Response:
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

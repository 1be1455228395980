"""The sandbox's WSGI base class (sandbox/ibm/wsgi.py): routing, 404/405 answers, JSON bodies, auth hook."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import InvalidTokenError
from sandbox.ibm.wsgi import ApiError, IamStyleApp, Rule, ServiceApp, VpcStyleApp, json_response
from sandbox.inventory import Inventory

pytestmark = pytest.mark.sandbox


class FakeAuthority:
    def verify_header(self, header: str | None) -> dict[str, Any]:
        if header != "Bearer good":
            raise InvalidTokenError("no good")
        return {"iam_id": "me"}


class Echo(ServiceApp):
    service = "echo"
    auth = True
    strict_slashes = False
    rules = [
        Rule("/things", endpoint="list", methods=["GET"]),
        Rule("/things", endpoint="create", methods=["POST"]),
        Rule("/things/<tid>", endpoint="get", methods=["GET"]),
    ]

    def __init__(self) -> None:
        self.authority = FakeAuthority()
        self.inventory = Inventory()

    def error(self, err: ApiError) -> Response:
        return json_response(
            {"status": err.status, "message": err.message, "code": err.code}, err.status, err.headers
        )

    def route_error(self, request: Request, err: HTTPException) -> Response:
        allow = ", ".join(sorted(err.valid_methods or [])) if isinstance(err, MethodNotAllowed) else ""
        return self.error(
            ApiError(err.code or 404, request.path, headers={"Allow": allow} if allow else None)
        )

    def ep_list(self, request: Request, claims: dict[str, Any]) -> Response:
        return json_response({"who": claims["iam_id"]})

    def ep_create(self, request: Request, claims: dict[str, Any]) -> Response:
        return json_response(self.json_body(request, {}), 201)

    def ep_get(self, request: Request, claims: dict[str, Any], tid: str) -> Response:
        if tid == "missing":
            raise ApiError(404, "no such thing", "thing_not_found", headers={"X-Why": "gone"})
        return json_response({"id": tid})


AUTH = {"Authorization": "Bearer good"}


def test_routes_by_method_and_pattern_and_counts_the_rule():
    app = Echo()
    client = Client(app)
    assert client.get("/things", headers=AUTH).json == {"who": "me"}
    assert client.get("/things/", headers=AUTH).json == {"who": "me"}  # strict_slashes = False
    assert client.get("/things/t1", headers=AUTH).json == {"id": "t1"}
    assert client.post("/things", json={"a": 1}, headers=AUTH).status_code == 201
    counts = app.inventory.request_counts()
    assert counts["echo GET /things/<tid>"] == 1 and counts["echo POST /things"] == 1


def test_unknown_path_and_wrong_method_go_through_route_error():
    client = Client(Echo())
    missing = client.get("/nothing", headers=AUTH)
    assert missing.status_code == 404 and missing.json == {"status": 404, "message": "/nothing", "code": None}
    wrong = client.delete("/things", headers=AUTH)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET, HEAD, POST"
    assert wrong.json["status"] == 405


def test_auth_hook_refuses_before_the_handler_with_the_service_shape():
    response = Client(Echo()).get("/things/t1")
    assert response.status_code == 401
    assert response.json["message"] == "Authorization failed: no good"
    assert response.json["code"] == "not_authorized"


def test_api_error_and_invalid_json_use_the_error_hook():
    client = Client(Echo())
    gone = client.get("/things/missing", headers=AUTH)
    assert gone.status_code == 404 and gone.headers["X-Why"] == "gone"
    assert gone.json["code"] == "thing_not_found"
    bad = client.post("/things", data="{nope", headers=AUTH)
    assert bad.status_code == 400 and bad.json["message"].startswith("The request body is not JSON")
    assert client.post("/things", headers=AUTH).json == {}  # empty body -> the default


def test_every_service_keeps_its_own_error_shape():
    class Vpc(VpcStyleApp):
        rules = [Rule("/v1/x", endpoint="x", methods=["GET"])]

    class Iam(IamStyleApp):
        rules = [Rule("/v1/x", endpoint="x", methods=["GET"])]

    vpc = Client(Vpc()).post("/v1/x")
    assert vpc.status_code == 405 and vpc.headers["Content-Type"] == "application/json"
    assert set(vpc.json) == {"errors", "trace", "status_code"}
    assert vpc.json["errors"][0]["code"] == "method_not_allowed"
    assert Client(Vpc()).get("/v1/y").json["errors"][0]["code"] == "not_found"
    iam = Client(Iam()).get("/v1/y")
    assert iam.status_code == 404 and iam.json["errorCode"] == "BXNIM0102E"
    assert {"errorCode", "errorMessage", "context"} <= set(iam.json)


def test_all_emulated_services_are_service_apps():
    from sandbox.control import ControlApp
    from sandbox.ibm.cos import CosApp
    from sandbox.ibm.iam import IamApp
    from sandbox.ibm.iam_identity import IamIdentityApp
    from sandbox.ibm.metadata import MetadataApp
    from sandbox.ibm.schematics import SchematicsService
    from sandbox.ibm.tagging import TaggingApp
    from sandbox.ibm.vpc import VpcApp

    apps = (ControlApp, CosApp, IamApp, IamIdentityApp, MetadataApp, SchematicsService, TaggingApp, VpcApp)
    for app in apps:
        assert issubclass(app, ServiceApp), app
        assert "__call__" not in vars(app) and "dispatch" not in vars(app), app

"""``ServiceApp``: the one WSGI base class of the sandbox's emulated services.

A service declares its routes as werkzeug :class:`~werkzeug.routing.Rule` objects whose endpoint
names a handler ``ep_<endpoint>(request, claims, **url_args)``, and fills in a few hooks:

- :meth:`ServiceApp.error` renders an error in the real service's own shape (Schematics, IAM, VPC
  and S3 all differ; see :mod:`sandbox.ibm.errors`);
- :meth:`ServiceApp.route_error` answers a path no rule matches (404) or a wrong method (405);
- :meth:`ServiceApp.authenticate` checks the bearer token (``auth = True``) and returns its claims;
- :meth:`ServiceApp.before` runs after authentication, before the handler (rate limits, required
  query parameters, ...).

Handlers and hooks raise :class:`ApiError` for an error answer; :meth:`ServiceApp.json_body` reads
a JSON request body. Every request is counted in the inventory under ``service`` and the matched
rule (or the raw path when nothing matched). ``dispatch(request)`` is looked up on the instance
for every request, so a test or benchmark can wrap it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import InvalidTokenError, iam_error, json_response, vpc_error

__all__ = ["ApiError", "IamStyleApp", "Rule", "ServiceApp", "VpcStyleApp", "json_response"]

WsgiApp = Callable[[dict[str, Any], Any], Any]


class ApiError(Exception):
    """An error answer: ``status``, ``message`` and the service's own error ``code`` (optional)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers
        self.details = details


class ServiceApp:
    """Routing (werkzeug rules), JSON in/out, per-service error shapes and auth hooks."""

    service: ClassVar[str] = ""  # name in the inventory's request counters; "" = not counted
    rules: ClassVar[list[Rule]] = []
    strict_slashes: ClassVar[bool] = True
    merge_slashes: ClassVar[bool] = True
    count_raw_path: ClassVar[bool] = False  # count requests by their path instead of their rule
    auth: ClassVar[bool] = False  # require an IAM bearer token on every matched route
    unauthorized: ClassVar[tuple[str | None, str]] = ("not_authorized", "Authorization failed: {err}")
    invalid_json: ClassVar[tuple[str | None, str]] = ("bad_request", "The request body is not JSON: {err}")
    url_map: ClassVar[Map]

    authority: Any = None  # sandbox.ibm.iam.TokenAuthority, for ``auth``
    inventory: Any = None  # sandbox.inventory.Inventory, for request counting

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.url_map = Map(
            [rule.empty() for rule in cls.rules],
            strict_slashes=cls.strict_slashes,
            merge_slashes=cls.merge_slashes,
        )

    # -- WSGI -------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response | WsgiApp:
        try:
            endpoint, route, args = self.match(request)
        except HTTPException as err:
            self.count(request, request.path)
            return self.route_error(request, err)
        self.count(request, request.path if self.count_raw_path else route)
        try:
            claims = self.authenticate(request, endpoint)
            self.before(request, endpoint, claims, args)
            return getattr(self, "ep_" + endpoint)(request, claims, **args)
        except ApiError as err:
            return self.error(err)

    def match(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        """``(endpoint, route, url arguments)``; raises werkzeug's ``NotFound``/``MethodNotAllowed``."""
        rule, args = self.url_map.bind_to_environ(request.environ).match(return_rule=True)
        return str(rule.endpoint), rule.rule, args

    def count(self, request: Request, route: str) -> None:
        if self.service and self.inventory is not None:
            self.inventory.count_request(self.service, request.method, route)

    # -- hooks ------------------------------------------------------------------------------
    def error(self, err: ApiError) -> Response:
        """The service's error body. Default: ``{"error": message}``."""
        return json_response({"error": err.message}, err.status, err.headers)

    def route_error(self, request: Request, err: HTTPException) -> Response:
        """No rule matches (404), or not with this method (405, ``err.valid_methods``)."""
        return self.error(ApiError(err.code or 404, err.description or ""))

    def authenticate(self, request: Request, endpoint: str) -> dict[str, Any]:
        """Claims of the request's bearer token (``{}`` unless ``auth``); raises :class:`ApiError` 401."""
        if not self.auth:
            return {}
        try:
            return self.authority.verify_header(request.headers.get("Authorization"))
        except InvalidTokenError as err:
            code, message = self.unauthorized
            raise ApiError(401, message.format(err=err), code) from err

    def before(self, request: Request, endpoint: str, claims: dict[str, Any], args: dict[str, Any]) -> None:
        """Checks common to every route, after authentication (may raise :class:`ApiError`)."""

    # -- JSON in ----------------------------------------------------------------------------
    def json_body(self, request: Request, default: Any = None) -> Any:
        """The request body parsed as JSON, ``default`` when empty; 400 (``invalid_json``) if not JSON."""
        raw = request.get_data()
        if not raw:
            return default
        try:
            return json.loads(raw)
        except ValueError as err:
            code, message = self.invalid_json
            raise ApiError(400, message.format(err=err), code) from err


class IamStyleApp(ServiceApp):
    """IAM's error shape (``errorCode``/``errorMessage``/``context``): IAM, IAM Identity, policies."""

    unauthorized = ("BXNIM0308E", "Authorization failed: {err}")

    def error(self, err: ApiError) -> Response:
        return iam_error(err.status, err.code or "BXNIM0102E", err.message, err.details)

    def route_error(self, request: Request, err: HTTPException) -> Response:
        return self.error(ApiError(err.code or 404, "Unable to find the requested resource.", "BXNIM0102E"))


class VpcStyleApp(ServiceApp):
    """The VPC error shape (``errors[{code, message, more_info}]``, ``trace``, ``status_code``):
    the VPC API, the instance metadata service and Global Tagging."""

    def error(self, err: ApiError) -> Response:
        return vpc_error(err.status, err.code or "bad_request", err.message, err.headers)

    def route_error(self, request: Request, err: HTTPException) -> Response:
        code = err.code or 404
        return self.error(
            ApiError(code, err.description or "", "not_found" if code == 404 else "method_not_allowed")
        )

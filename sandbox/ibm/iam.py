"""IAM: ``POST /identity/token`` (API-key and refresh-token grants) and the tokens every service checks.

The SDKs decode the access token as a JWT (without checking its signature) to read ``iat``/``exp``,
so the sandbox mints real HS256 JWTs with a per-sandbox secret and verifies that signature and
``exp`` on every emulated service. A refresh token is only issued to the HTTP Basic client
``bx:bx`` (like real IAM, which otherwise answers ``"refresh_token": "not_supported"``).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from typing import Any

import jwt
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Request, Response

from sandbox.faults import FaultSet
from sandbox.ibm.errors import InvalidTokenError, json_response
from sandbox.ibm.wsgi import ApiError, IamStyleApp, Rule
from sandbox.inventory import Inventory

__all__ = ["IamApp", "InvalidTokenError", "TokenAuthority"]

IAM_ISSUER = "https://iam.cloud.ibm.com/identity"
METADATA_ISSUER = "https://api.metadata.cloud.ibm.com/identity"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
REFRESH_GRANT = "refresh_token"
SHORT_TOKEN_DEFAULT_TTL = 5


class TokenAuthority:
    """Mints and checks every token the sandbox uses: IAM access/refresh and instance identity."""

    def __init__(self, api_key: str, faults: FaultSet, token_ttl_s: int, account_id: str) -> None:
        self.api_key = api_key
        self.faults = faults
        self.token_ttl_s = token_ttl_s
        self.account_id = account_id
        self._secret = secrets.token_hex(32)
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, dict[str, Any]] = {}
        self.user = {
            "iam_id": "IBMid-sandbox0user",
            "sub": "sandbox-user@example.com",
            "email": "sandbox-user@example.com",
            "name": "Sandbox User",
        }

    # -- lifetimes --------------------------------------------------------------------------
    def access_ttl(self) -> int:
        """Token lifetime now: the ``short_tokens`` fault (option ``ttl``) overrides the setting."""
        if self.faults.active("short_tokens"):
            return int(self.faults.options("short_tokens").get("ttl", SHORT_TOKEN_DEFAULT_TTL))
        return self.token_ttl_s

    # -- IAM access tokens ------------------------------------------------------------------
    def issue(self, identity: dict[str, Any], *, client_id: str | None, grant_type: str) -> dict[str, Any]:
        """The JSON body of a successful IAM token response for ``identity``."""
        now = int(time.time())
        ttl = self.access_ttl()
        claims = {
            "iam_id": identity["iam_id"],
            "id": identity["iam_id"],
            "realmid": identity.get("realmid", "iam"),
            "jti": uuid.uuid4().hex,
            "identifier": identity.get("identifier", identity["iam_id"]),
            "name": identity.get("name", identity["sub"]),
            "sub": identity["sub"],
            "account": {"valid": True, "bss": self.account_id, "frozen": True},
            "iat": now,
            "exp": now + ttl,
            "iss": IAM_ISSUER,
            "grant_type": grant_type,
            "scope": "ibm openid",
            "client_id": client_id or "default",
            "acr": 1,
            "amr": ["pwd"],
        }
        for key in ("email", "sub_type"):
            if key in identity:
                claims[key] = identity[key]
        body: dict[str, Any] = {
            "access_token": jwt.encode(claims, self._secret, algorithm="HS256"),
            "refresh_token": "not_supported",
            "token_type": "Bearer",
            "expires_in": ttl,
            "expiration": now + ttl,
            "scope": "ibm openid",
        }
        if identity.get("sub_type") != "Profile":
            body["ims_user_id"] = 1000001
        if client_id == "bx":
            refresh = secrets.token_urlsafe(48)
            with self._lock:
                self._refresh_tokens[refresh] = dict(identity)
            body["refresh_token"] = refresh
        return body

    def verify(self, token: str | None, *, issuer: str = IAM_ISSUER) -> dict[str, Any]:
        """Claims of a valid, unexpired token from ``issuer``; raises :class:`InvalidTokenError`."""
        if not token:
            raise InvalidTokenError("no bearer token")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "iat", "iss"]}
            )
        except jwt.ExpiredSignatureError as err:
            raise InvalidTokenError("the token has expired") from err
        except jwt.InvalidTokenError as err:
            raise InvalidTokenError(f"the token is not valid: {err}") from err
        if claims.get("iss") != issuer:
            raise InvalidTokenError("the token was not issued by IAM")
        return claims

    def verify_header(self, authorization: str | None) -> dict[str, Any]:
        """Claims from an ``Authorization: Bearer <jwt>`` header."""
        if not authorization:
            raise InvalidTokenError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidTokenError("the Authorization header is not a Bearer token")
        return self.verify(token.strip())

    def refresh_identity(self, refresh_token: str | None) -> dict[str, Any] | None:
        """The identity a refresh token was issued to, or None when it is unknown."""
        if not refresh_token:
            return None
        with self._lock:
            identity = self._refresh_tokens.get(refresh_token)
        return dict(identity) if identity else None

    # -- instance identity tokens (metadata service) ---------------------------------------
    def issue_identity_token(self, instance: dict[str, Any], expires_in: int) -> str:
        now = int(time.time())
        claims = {
            "sub": instance["crn"],
            "instance_id": instance["id"],
            "account": {"bss": self.account_id},
            "iat": now,
            "exp": now + expires_in,
            "iss": METADATA_ISSUER,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def profile_identity(self, profile_id: str) -> dict[str, Any]:
        return {
            "iam_id": f"iam-{profile_id}",
            "sub": profile_id,
            "sub_type": "Profile",
            "realmid": "iam",
            "name": profile_id,
        }


def _basic_client(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except ValueError:
        return ("", "")
    user, _, password = decoded.partition(":")
    return user, password


class IamApp(IamStyleApp):
    """WSGI app for ``POST /identity/token`` and, on the same host, IAM Policy Management's reads
    (``policies``: a :class:`sandbox.ibm.iam_policies.PolicyApi`)."""

    service = "iam"
    rules = [
        Rule("/identity/token", endpoint="token", methods=["POST"]),
        # any method: the token is checked before the method (405), as IAM does
        Rule("/v2/policies", endpoint="policies"),
        Rule("/v2/roles", endpoint="policies"),
    ]

    def __init__(self, authority: TokenAuthority, inventory: Inventory, policies: Any = None) -> None:
        self.authority = authority
        self.inventory = inventory
        self.policies = policies

    def ep_policies(self, request: Request, claims: dict[str, Any]) -> Response:
        if self.policies is None:
            return self.route_error(request, NotFound())
        return self.policies(request)

    def ep_token(self, request: Request, claims: dict[str, Any]) -> Response:
        client = _basic_client(request)
        if client is not None and client != ("bx", "bx"):
            raise ApiError(400, "Client authentication failed.", "BXNIM0400E")
        client_id = "bx" if client else None
        grant = request.form.get("grant_type", "")
        if grant == APIKEY_GRANT:
            apikey = request.form.get("apikey", "")
            if not apikey:
                raise ApiError(400, "Property missing or empty.", "BXNIM0109E", details="apikey is missing")
            if apikey != self.authority.api_key:
                raise ApiError(400, "Provided API key could not be found.", "BXNIM0415E")
            body = self.authority.issue(self.authority.user, client_id=client_id, grant_type=APIKEY_GRANT)
            return json_response(body)
        if grant == REFRESH_GRANT:
            identity = self.authority.refresh_identity(request.form.get("refresh_token"))
            if identity is None:
                raise ApiError(400, "Provided refresh token is invalid.", "BXNIM0407E")
            return json_response(self.authority.issue(identity, client_id=client_id, grant_type=grant))
        if not grant:
            raise ApiError(400, "Property missing or empty.", "BXNIM0109E", details="grant_type is missing")
        raise ApiError(400, f"Unsupported grant type: {grant}", "BXNIM0103E")

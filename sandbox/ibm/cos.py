"""Cloud Object Storage: moto's S3 app behind an auth layer that speaks COS's two schemes.

COS accepts (a) AWS SigV4/SigV2 signed with HMAC keys and (b) ``Authorization: Bearer <IAM token>``
(what a VM with a trusted profile uses). moto does not know (b) and ignores signatures, so this
layer checks the credentials itself (unknown access key id -> S3's 403 ``InvalidAccessKeyId``; a
SigV4 signature made with another secret -> 403 ``SignatureDoesNotMatch``; a bad or expired
bearer token -> 403 ``AccessDenied``), then authorises it with IAM's semantics
(:mod:`sandbox.ibm.cos_access`: the request's action against the caller's policies; denied -> 403
``AccessDenied``), and then hands moto a request with a fixed
SigV4-looking header in region ``us-east-1`` (moto would otherwise reject a bucket created without
a LocationConstraint in another region; COS has no such rule).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from werkzeug.wrappers import Request, Response

from sandbox.ibm.cos_access import CosAuthorizer, classify
from sandbox.ibm.iam import InvalidTokenError, TokenAuthority
from sandbox.ibm.wsgi import ApiError, ServiceApp, WsgiApp
from sandbox.inventory import Inventory

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_MOTO_AUTH = (
    "AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=" + "0" * 64
)


def s3_error(status: int, code: str, message: str, resource: str = "") -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>{resource}</Resource>"
        f"<RequestId>{uuid.uuid4()}</RequestId><httpStatusCode>{status}</httpStatusCode></Error>"
    )
    return Response(body, status=status, content_type="application/xml")


def reset_moto_s3() -> None:
    """Forget every bucket: moto keeps S3 state per process, and each sandbox starts empty."""
    from moto.s3.models import s3_backends

    for account_backends in list(s3_backends.values()):
        account_backends.reset()
    getattr(s3_backends, "bucket_accounts", {}).clear()


_NO_KEY = "The AWS Access Key Id you provided does not exist in our records."


class CosApp(ServiceApp):
    """Every path goes to moto once the caller is authenticated and authorised; errors are S3's XML."""

    service = "cos"

    def __init__(
        self,
        authority: TokenAuthority,
        inventory: Inventory,
        access_key_id: str,
        secret_access_key: str,
        authorizer: CosAuthorizer | None = None,
    ) -> None:
        from moto.server import create_backend_app

        self.authorizer = authorizer
        self.authority = authority
        self.inventory = inventory
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.moto = create_backend_app("s3")

    def match(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        """No routing (S3 keys may hold any character): one endpoint, counted by path depth."""
        if request.path == "/":
            return "proxy", "/", {}
        return "proxy", "/<bucket>" if request.path.count("/") <= 1 else "/<bucket>/<key>", {}

    def error(self, err: ApiError) -> Response:
        return s3_error(err.status, err.code or "AccessDenied", err.message, err.details or "")

    def ep_proxy(self, request: Request, claims: dict[str, Any]) -> WsgiApp:
        if self.authorizer is not None:
            environ = request.environ
            asked = classify(request.method, request.path, environ.get("QUERY_STRING", ""), request.headers)
            if not self.authorizer.allows(claims["caller"], asked):
                raise ApiError(403, "Access Denied", "AccessDenied", details=request.path)
        return self.moto

    def authenticate(self, request: Request, endpoint: str) -> dict[str, Any]:
        """``{"caller": <iam_id or hmac:<key id>>}``; a refused credential is S3's 403."""
        environ = request.environ
        header = request.headers.get("Authorization", "")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        path = request.path
        if header.lower().startswith("bearer "):
            try:
                caller = str(self.authority.verify_header(header).get("iam_id", ""))
            except InvalidTokenError as err:
                raise ApiError(403, f"Access Denied: {err}", "AccessDenied", details=path) from err
        elif header.startswith("AWS4-HMAC-SHA256"):
            caller = f"hmac:{self.access_key_id}"
            match = _CREDENTIAL.search(header)
            if not match or match.group(1) != self.access_key_id:
                raise ApiError(403, _NO_KEY, "InvalidAccessKeyId", details=path)
            if not sigv4_matches(environ, header, self.secret_access_key):
                raise ApiError(
                    403,
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method.",
                    "SignatureDoesNotMatch",
                    details=path,
                )
        elif header.startswith("AWS "):
            caller = f"hmac:{self.access_key_id}"
            if header[4:].partition(":")[0] != self.access_key_id:
                raise ApiError(403, _NO_KEY, "InvalidAccessKeyId", details=path)
        elif "X-Amz-Credential" in query or "AWSAccessKeyId" in query:
            cred = (query.get("X-Amz-Credential") or query.get("AWSAccessKeyId") or [""])[0]
            if cred.split("/")[0] != self.access_key_id:
                raise ApiError(403, _NO_KEY, "InvalidAccessKeyId", details=path)
            # presigned URL: moto handles the query-string form itself (authorised after)
            return {"caller": f"hmac:{self.access_key_id}"}
        else:
            raise ApiError(403, "Access Denied", "AccessDenied", details=path)
        environ["HTTP_AUTHORIZATION"] = _MOTO_AUTH.format(key=self.access_key_id)
        # COS's LocationConstraint names a storage class (us-south-standard); moto knows only AWS
        # regions, so a bucket-create body is dropped.
        if request.method == "PUT" and path.strip("/").count("/") == 0 and not environ.get("QUERY_STRING"):
            environ["CONTENT_LENGTH"] = "0"
            environ["wsgi.input"] = _Empty()
        return {"caller": caller}


def _canonical_query(raw: str) -> str:
    pairs = []
    for part in raw.split("&") if raw else []:
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header(environ: dict[str, Any], name: str) -> str:
    key = name.upper().replace("-", "_")
    value = environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}", "")
    return " ".join(str(value).split())


def sigv4_matches(environ: dict[str, Any], header: str, secret: str) -> bool:
    """Recompute an AWS SigV4 header signature (the payload hash is taken from the request as is)."""
    fields = dict(
        item.strip().split("=", 1) for item in header[len("AWS4-HMAC-SHA256") :].split(",") if "=" in item
    )
    try:
        _, date, region, service, _ = fields["Credential"].split("/")
        signed = fields["SignedHeaders"]
        signature = fields["Signature"]
    except (KeyError, ValueError):
        return False
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    path, _, query = raw_uri.partition("?")
    canonical = "\n".join(
        [
            environ["REQUEST_METHOD"],
            path or "/",
            _canonical_query(query),
            "".join(f"{name}:{_header(environ, name)}\n" for name in signed.split(";")),
            signed,
            _header(environ, "x-amz-content-sha256") or "UNSIGNED-PAYLOAD",
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            _header(environ, "x-amz-date"),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class _Empty:
    def read(self, *args: Any) -> bytes:
        return b""

    def readline(self, *args: Any) -> bytes:
        return b""

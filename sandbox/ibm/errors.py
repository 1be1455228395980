"""Response helpers: each emulated service answers errors in its real service's own shape.

Schematics: ``{"requestid","timestamp","messageid","message","statuscode"}``;
IAM: ``{"errorCode","errorMessage","context"}``; VPC and the metadata service:
``{"errors":[{"code","message","more_info"}],"trace","status_code"}``. Every JSON response carries
``Content-Type: application/json`` because the IBM SDKs only decode bodies with that type.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Response


class InvalidTokenError(Exception):
    """A bearer token that is missing, malformed, forged or expired; ``str()`` says which."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers or {}, content_type="application/json")


# Message ids seen in real Schematics answers (reference §2.6): M1008 bad payload, M1074 not found,
# M1078 forbidden, M1097 bad location. The others are the sandbox's own picks.
SCHEMATICS_MESSAGE_IDS = {
    400: "M1008",
    401: "M1007",
    403: "M1078",
    404: "M1074",
    405: "M1005",
    409: "M1093",
    429: "M1429",
    500: "M1000",
    502: "M1502",
    503: "M1503",
}


def schematics_error(
    status: int, message: str, *, messageid: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = {
        "requestid": str(uuid.uuid4()),
        "timestamp": now_iso(),
        "messageid": messageid or SCHEMATICS_MESSAGE_IDS.get(status, "M1000"),
        "message": message,
        "statuscode": status,
    }
    return json_response(body, status, headers)


def iam_error(status: int, code: str, message: str, details: str | None = None) -> Response:
    body = {
        "errorCode": code,
        "errorMessage": message,
        "context": {
            "requestId": uuid.uuid4().hex,
            "requestType": "incoming.Identity_Token",
            "userAgent": "",
            "url": "",
            "instanceId": "sandbox-iam",
            "threadId": "1",
            "host": "127.0.0.1",
            "startTime": now_iso(),
            "endTime": now_iso(),
            "elapsedTime": "0",
            "locale": "en_US",
            "clusterName": "sandbox",
        },
    }
    if details:
        body["errorDetails"] = details
    return json_response(body, status)


def vpc_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "errors": [
            {
                "code": code,
                "message": message,
                "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-rias-error-messages",
            }
        ],
        "trace": uuid.uuid4().hex,
        "status_code": status,
    }
    return json_response(body, status, headers)

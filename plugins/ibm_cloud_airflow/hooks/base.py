"""What every IBM Cloud hook shares: connection parsing, endpoint URLs, error mapping, retries.

* :class:`IbmCloudBaseHook`: the base of every hook that calls IBM Cloud. It parses its connection
  once (``config``), reads the API key's account (``account_id``), and sends every request through
  :func:`call_with_retries`.
* Connections (see ``docs/provider.md``):

  * ``ibm_cloud_default`` (conn type ``ibm_cloud``; ``generic`` works too): password = IBM Cloud API
    key; extra ``region`` (required), ``resource_group`` (optional id), optional ``iam_url``,
    ``schematics_url``, ``vpc_url``, ``iam_identity_url``, ``tagging_url``.
  * ``ibm_cos_default`` (conn type ``ibm_cos``; ``generic`` works too): extra ``endpoint_url``
    (required), optional ``vm_endpoint_url``, ``region``, ``instance_crn``; HMAC keys as
    login/password, or ``extra.auth_type = "iam"`` with the API key as password (optional ``iam_url``).

  The parsing reads the password, login and ``extra`` only, never the conn type: the UI forms of the
  ``ibm_cloud`` and ``ibm_cos`` types (``get_provider_info.py``) store their fields under these keys.
* Retries (:class:`RetryPolicy`, :func:`call_with_retries`): stock tenacity parts, plus one wait of
  our own that honours the server's ``Retry-After``.

Everything here is free of network calls and of heavy SDK imports at module level.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    wait_exponential,
    wait_fixed,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from ibm_cloud_airflow.exceptions import (
    IbmCloudApiError,
    IbmCloudConfigError,
    IbmCloudNotFoundError,
    IbmCloudPermanentError,
)
from ibm_cloud_airflow.utils.secrets import get_connection

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_IAM_URL = "https://iam.cloud.ibm.com"
DEFAULT_TAGGING_URL = "https://tags.global-search-tagging.cloud.ibm.com"
# Schematics accepts 50 requests per minute per user; the rest is headroom for the console and CLI.
DEFAULT_RATE_LIMIT_PER_MINUTE = 45

#: Public Schematics endpoints per location (reference §2.3). Geography names are accepted too.
SCHEMATICS_ENDPOINTS = {
    "us-south": "https://us-south.schematics.cloud.ibm.com",
    "us-east": "https://us-east.schematics.cloud.ibm.com",
    "eu-gb": "https://eu-gb.schematics.cloud.ibm.com",
    "eu-de": "https://eu-de.schematics.cloud.ibm.com",
    "ca-tor": "https://ca-tor.schematics.cloud.ibm.com",
    "ca-mon": "https://ca-mon.schematics.cloud.ibm.com",
    "us": "https://us.schematics.cloud.ibm.com",
    "eu": "https://eu.schematics.cloud.ibm.com",
}

_REGION_RE = re.compile(r"^[a-z]{2}-[a-z]{2,10}$")


# ----------------------------------------------------------------------------------------------
# Connection parsing
# ----------------------------------------------------------------------------------------------
def _extra(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None)
        if raw:
            import json

            try:
                extra = json.loads(raw)
            except ValueError as err:
                raise IbmCloudConfigError(
                    f"Connection '{conn.conn_id}': extra is not valid JSON; set it to a JSON object"
                ) from err
        else:
            extra = {}
    if not isinstance(extra, dict):
        raise IbmCloudConfigError(f"Connection '{conn.conn_id}': extra must be a JSON object")
    return extra


def _check_url(conn_id: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IbmCloudConfigError(f"Connection '{conn_id}': extra '{name}' must be a non-empty URL string")
    parsed = urlparse(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise IbmCloudConfigError(
            f"Connection '{conn_id}': extra '{name}' = {value!r} is not an http(s) URL; "
            f"set it to e.g. 'https://...'"
        )
    return value.strip().rstrip("/")


def _number(conn_id: str, extra: dict[str, Any], name: str, default: Any, kind: type, minimum: float) -> Any:
    value = extra.get(name, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum or isinstance(value, bool):
        raise IbmCloudConfigError(
            f"Connection '{conn_id}': extra {name!r} = {value!r} must be a number >= {minimum:g}"
        )
    return number


@dataclass(frozen=True)
class IbmCloudConnectionConfig:
    """Parsed ``ibm_cloud_default``-style connection."""

    conn_id: str
    api_key: str = field(repr=False)
    region: str
    resource_group: str | None
    iam_url: str
    schematics_url: str
    vpc_url: str
    # Client-side budget of Schematics requests (see hooks/budget.py); 0 turns it off.
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    rate_limit_window_s: float = 60.0
    budget_dir: str | None = None
    # The reaper's services: IAM Identity (trusted profiles; same host as IAM) and Global Tagging.
    iam_identity_url: str = ""
    tagging_url: str = DEFAULT_TAGGING_URL

    @classmethod
    def from_connection(cls, conn: Any) -> IbmCloudConnectionConfig:
        conn_id = getattr(conn, "conn_id", None) or "ibm_cloud_default"
        extra = _extra(conn)
        api_key = conn.password or ""
        if not api_key:
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': the password (IBM Cloud API key) is missing; "
                "put the API key in the connection's password field"
            )
        if api_key.strip() != api_key or api_key[0] in "{\"'" or api_key[-1] in "}\"'":
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': the password (IBM Cloud API key) has surrounding spaces, "
                "quotes or braces; store the bare key"
            )
        region = extra.get("region")
        if not region:
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': extra 'region' is missing; set it to e.g. 'us-south'"
            )
        if not isinstance(region, str) or not _REGION_RE.match(region):
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': extra 'region' = {region!r} is not an IBM Cloud region; "
                "set it to e.g. 'us-south'"
            )
        rg = extra.get("resource_group") or None
        if rg is not None and not isinstance(rg, str):
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': extra 'resource_group' must be a string (a resource group id)"
            )
        iam_url = _check_url(conn_id, "iam_url", extra.get("iam_url") or DEFAULT_IAM_URL)
        if iam_url.endswith("/identity/token"):
            iam_url = iam_url[: -len("/identity/token")]
        if extra.get("schematics_url"):
            schematics_url = _check_url(conn_id, "schematics_url", extra["schematics_url"])
        elif region in SCHEMATICS_ENDPOINTS:
            schematics_url = SCHEMATICS_ENDPOINTS[region]
        else:
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': Schematics has no endpoint in region {region!r} "
                f"(known: {', '.join(sorted(SCHEMATICS_ENDPOINTS))}); set extra 'schematics_url' "
                "or use a Schematics region"
            )
        vpc_url = _check_url(
            conn_id, "vpc_url", extra.get("vpc_url") or f"https://{region}.iaas.cloud.ibm.com/v1"
        )
        return cls(
            conn_id=conn_id,
            api_key=api_key,
            region=region,
            resource_group=rg,
            iam_url=iam_url,
            schematics_url=schematics_url,
            vpc_url=vpc_url,
            rate_limit_per_minute=_number(
                conn_id, extra, "rate_limit_per_minute", DEFAULT_RATE_LIMIT_PER_MINUTE, int, minimum=0
            ),
            rate_limit_window_s=_number(conn_id, extra, "rate_limit_window_s", 60.0, float, minimum=1),
            budget_dir=str(extra["budget_dir"]) if extra.get("budget_dir") else None,
            iam_identity_url=_check_url(
                conn_id, "iam_identity_url", extra.get("iam_identity_url") or iam_url
            ),
            tagging_url=_check_url(conn_id, "tagging_url", extra.get("tagging_url") or DEFAULT_TAGGING_URL),
        )

    def describe(self) -> dict[str, Any]:
        """A secret-free summary for logs and the DAG's validate task."""
        return {
            "conn_id": self.conn_id,
            "region": self.region,
            "resource_group": self.resource_group,
            "iam_url": self.iam_url,
            "schematics_url": self.schematics_url,
            "vpc_url": self.vpc_url,
            "rate_limit_per_minute": self.rate_limit_per_minute,
        }

    def authenticator(self) -> Any:
        """An ``IAMAuthenticator`` with client ``bx:bx`` so that IAM issues real refresh tokens."""
        from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

        # "bx"/"bx" is IBM's public CLI client id, not a secret: with it IAM issues refresh tokens.
        return IAMAuthenticator(
            self.api_key,
            url=self.iam_url,
            client_id="bx",
            client_secret="bx",  # noqa: S106
        )


@dataclass(frozen=True)
class CosConnectionConfig:
    """Parsed ``ibm_cos_default``-style connection."""

    conn_id: str
    endpoint_url: str
    vm_endpoint_url: str
    auth_type: str
    access_key_id: str | None = field(repr=False)
    secret_access_key: str | None = field(repr=False)
    api_key: str | None = field(repr=False)
    iam_url: str
    region: str | None
    instance_crn: str | None

    @classmethod
    def from_connection(cls, conn: Any) -> CosConnectionConfig:
        conn_id = getattr(conn, "conn_id", None) or "ibm_cos_default"
        extra = _extra(conn)
        if not extra.get("endpoint_url"):
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': extra 'endpoint_url' is missing; set it to e.g. "
                "'https://s3.us-south.cloud-object-storage.appdomain.cloud'"
            )
        endpoint_url = _check_url(conn_id, "endpoint_url", extra["endpoint_url"])
        vm_endpoint_url = _check_url(conn_id, "vm_endpoint_url", extra.get("vm_endpoint_url") or endpoint_url)
        auth_type = str(extra.get("auth_type") or "hmac").lower()
        iam_url = _check_url(conn_id, "iam_url", extra.get("iam_url") or DEFAULT_IAM_URL)
        if iam_url.endswith("/identity/token"):
            iam_url = iam_url[: -len("/identity/token")]
        access_key_id = secret = api_key = None
        if auth_type == "hmac":
            if not conn.login:
                raise IbmCloudConfigError(
                    f"Connection '{conn_id}': login (HMAC access_key_id) is missing; put the COS HMAC "
                    "access key id in login, or set extra 'auth_type' to 'iam' and the API key as password"
                )
            if not conn.password:
                raise IbmCloudConfigError(
                    f"Connection '{conn_id}': password (HMAC secret_access_key) is missing; put the COS "
                    "HMAC secret access key in the password field"
                )
            access_key_id, secret = conn.login, conn.password
        elif auth_type == "iam":
            if not conn.password:
                raise IbmCloudConfigError(
                    f"Connection '{conn_id}': extra 'auth_type' is 'iam' but the password (IBM Cloud "
                    "API key) is missing; put the API key in the password field"
                )
            api_key = conn.password
        else:
            raise IbmCloudConfigError(
                f"Connection '{conn_id}': extra 'auth_type' = {auth_type!r} is not supported; "
                "set it to 'hmac' (default) or 'iam'"
            )
        return cls(
            conn_id=conn_id,
            endpoint_url=endpoint_url,
            vm_endpoint_url=vm_endpoint_url,
            auth_type=auth_type,
            access_key_id=access_key_id,
            secret_access_key=secret,
            api_key=api_key,
            iam_url=iam_url,
            region=extra.get("region") or None,
            instance_crn=extra.get("instance_crn") or None,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "endpoint_url": self.endpoint_url,
            "vm_endpoint_url": self.vm_endpoint_url,
            "auth_type": self.auth_type,
            "region": self.region,
            "instance_crn": self.instance_crn,
        }


# ----------------------------------------------------------------------------------------------
# Error mapping
# ----------------------------------------------------------------------------------------------
# botocore's (COS) error codes of requests that a resend may cure, whatever their HTTP status.
_TRANSIENT_ERROR_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error: IBM's ``ApiException``, ``requests``' or botocore's."""
    code = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore's ClientError
        code = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    else:  # requests' HTTPError
        code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _headers(exc: BaseException) -> Any:
    response = getattr(exc, "http_response", None)  # a requests.Response is falsy for 4xx/5xx
    if response is None:
        response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore's ClientError: lower-case names
        return (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    return getattr(response, "headers", None) or {}


def retry_after_s(exc: BaseException) -> float | None:
    """The error's ``Retry-After`` header (seconds or an HTTP date) in seconds from now, or None."""
    headers = _headers(exc)
    if not hasattr(headers, "get"):
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _is_transport_error(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    # botocore's transport errors, where COS was used (the module is never imported for this).
    botocore = sys.modules.get("ibm_botocore.exceptions")
    return botocore is not None and isinstance(exc, (botocore.ConnectionError, botocore.HTTPClientError))


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return str((response.get("Error") or {}).get("Code")) if isinstance(response, dict) else None


def _is_iam_error(exc: BaseException) -> bool:
    resp = getattr(exc, "http_response", None)
    url = getattr(resp, "url", "") or ""
    return "/identity/token" in url


def is_transient(exc: BaseException) -> bool:
    """An error that the same request, sent again, may not meet: 429, 5xx, a transport error.

    Airflow errors (the provider's own, already mapped) are never transient here.
    """
    if isinstance(exc, AirflowException) or not isinstance(exc, Exception):
        return False
    code = status_code(exc)
    return (
        _is_transport_error(exc)
        or code == 429
        or (code is not None and code >= 500)
        or _error_code(exc) in _TRANSIENT_ERROR_CODES
    )


def is_locked(exc: BaseException) -> bool:
    """HTTP 409 from an IBM SDK: the workspace is locked by another job."""
    return not isinstance(exc, AirflowException) and status_code(exc) == 409


def map_api_error(exc: BaseException, what: str, conn_id: str | None = None) -> AirflowException:
    """Turn an SDK/HTTP exception into an Airflow error that says what failed and what to fix."""
    if isinstance(exc, AirflowException):
        return exc
    code = status_code(exc)
    message = getattr(exc, "message", None) or str(exc)
    txn = getattr(exc, "global_transaction_id", None)
    suffix = f" (transaction id {txn})" if txn else ""
    conn_hint = f"connection '{conn_id}'" if conn_id else "the connection"
    if _is_transport_error(exc):
        return IbmCloudApiError(
            f"{what}: could not reach the service ({type(exc).__name__}: {exc}); check the endpoint "
            f"URLs in {conn_hint} and the network"
        )
    if _is_iam_error(exc):
        if code is not None and code < 500 and code != 429:
            return IbmCloudPermanentError(
                f"{what}: IAM rejected the API key (HTTP {code}: {message}); put a valid IBM Cloud API "
                f"key in the password of {conn_hint}",
                status_code=code,
            )
        return IbmCloudApiError(
            f"{what}: IAM token request failed (HTTP {code}: {message})", status_code=code
        )
    if code == 404:
        return IbmCloudNotFoundError(f"{what}: not found (HTTP 404: {message}){suffix}")
    if code in (401, 403):
        return IbmCloudPermanentError(
            f"{what}: access denied (HTTP {code}: {message}){suffix}; check that the API key in "
            f"{conn_hint} is valid and has access (and that the region/location is right)",
            status_code=code,
        )
    if code == 409:
        return IbmCloudApiError(
            f"{what}: the workspace is locked by another job (HTTP 409: {message}){suffix}; "
            "retry when the running job has finished",
            status_code=code,
        )
    if code == 429 or (code is not None and code >= 500):
        return IbmCloudApiError(
            f"{what}: the service is throttling or failing (HTTP {code}: {message}){suffix}; retries "
            "were exhausted",
            status_code=code,
        )
    if code is not None and 400 <= code < 500:
        return IbmCloudPermanentError(
            f"{what}: the request was rejected (HTTP {code}: {message}){suffix}", status_code=code
        )
    return IbmCloudApiError(f"{what}: {type(exc).__name__}: {message}{suffix}", status_code=code)


# ----------------------------------------------------------------------------------------------
# Retries
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """How one API call is retried (see :func:`call_with_retries`).

    * 429, 5xx and transport errors: exponential backoff starting at ``base_delay_s``, capped at
      ``max_delay_s``, of which a random 50-100 % is waited; a ``Retry-After`` header (seconds or
      HTTP date) replaces the backoff (capped at ``max_retry_after_s``). At most ``max_attempts``
      tries, and no wait that would end past ``max_total_s`` from the first try; past either cap the
      last error is raised.
    * 409 (workspace locked), where the call waits for locks: a try every ``lock_poll_s`` until
      ``lock_wait_s`` have passed. Those tries are not failed attempts.
    """

    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_total_s: float = 300.0
    lock_wait_s: float = 600.0
    lock_poll_s: float = 5.0


class wait_retry_after(wait_base):
    """The server's ``Retry-After`` (capped at ``cap_s``) where the error has one, else ``otherwise``."""

    def __init__(self, otherwise: wait_base, cap_s: float) -> None:
        self.otherwise = otherwise
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        seconds = retry_after_s(error) if error is not None else None
        return self.otherwise(retry_state) if seconds is None else min(self.cap_s, seconds)


def _retrying(what: str, policy: RetryPolicy, sleep: Callable[[float], None]) -> Retrying:
    """Transient errors: backoff (50-100 % of the doubling delay) or ``Retry-After``, capped."""
    half_base, half_cap = policy.base_delay_s / 2, policy.max_delay_s / 2
    backoff = wait_exponential(multiplier=half_base, max=half_cap) + wait_random_exponential(
        multiplier=half_base, max=half_cap
    )

    def log_retry(retry_state: RetryCallState) -> None:
        error = retry_state.outcome.exception() if retry_state.outcome is not None else None
        code = status_code(error)
        log.warning(
            "%s: %s (attempt %d/%d); retrying in %.1f s",
            what,
            f"HTTP {code}" if code else type(error).__name__,
            retry_state.attempt_number,
            policy.max_attempts,
            retry_state.upcoming_sleep,
        )

    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_retry_after(backoff, policy.max_retry_after_s),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_total_s),
        before_sleep=log_retry,
        sleep=sleep,
        reraise=True,
    )


def _waiting_out_locks(
    send: Callable[[], T], what: str, policy: RetryPolicy, sleep: Callable[[float], None]
) -> Callable[[], T]:
    """``send``, tried again every ``lock_poll_s`` while it meets a 409, for ``lock_wait_s`` at most."""
    retrying = Retrying(
        retry=retry_if_exception(is_locked),
        wait=wait_fixed(policy.lock_poll_s),
        stop=stop_after_delay(policy.lock_wait_s),
        before_sleep=lambda state: log.info(
            "%s: workspace locked (409); waiting %.0f s", what, state.upcoming_sleep
        ),
        sleep=sleep,
        reraise=True,
    )

    def send_when_unlocked() -> T:
        try:
            return retrying(send)
        except Exception as exc:
            if not is_locked(exc):
                raise
            raise IbmCloudApiError(
                f"{what}: the workspace stayed locked for more than {policy.lock_wait_s:.0f} s "
                f"(HTTP 409: {getattr(exc, 'message', exc)}); another job is running on it",
                status_code=409,
            ) from exc

    return send_when_unlocked


def call_with_retries(
    func: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    conn_id: str | None = None,
    wait_on_lock: bool = False,
    recover: Callable[[BaseException], T | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    before_attempt: Callable[[], None] | None = None,
    map_error: Callable[[BaseException, str], AirflowException] | None = None,
) -> T:
    """Call ``func`` with the retries of :class:`RetryPolicy`; map the final error to an Airflow error.

    * ``wait_on_lock``: a 409 (workspace locked) is waited out inside the attempt (it is no failure).
    * ``recover`` is called before re-sending after an error where the server may have acted anyway
      (5xx, transport error; not 429). If it returns something other than ``None``, that is returned
      instead of sending the request again: this is how job-starting commands avoid a second job.
    * ``before_attempt`` runs before every request sent (the request budget waits there).
    * ``map_error(exc, what)`` maps the last error (default :func:`map_api_error`); Airflow errors
      pass through as they are, unretried.
    * ``sleep`` replaces ``time.sleep`` (tests; tenacity reads the time from ``time.monotonic``).
    """

    def send() -> T:
        if before_attempt is not None:
            before_attempt()
        return func()

    if wait_on_lock:
        send = _waiting_out_locks(send, what, policy, sleep)
    failed: list[BaseException] = []  # the errors of the attempts so far

    def attempt() -> T:
        if recover is not None and failed and status_code(failed[-1]) != 429:
            recovered = recover(failed[-1])
            if recovered is not None:
                log.info("%s: the first request had been accepted; not sending it again", what)
                return recovered
        try:
            return send()
        except Exception as exc:
            failed.append(exc)
            raise

    try:
        return _retrying(what, policy, sleep)(attempt)
    except AirflowException:
        raise
    except Exception as exc:
        mapped = map_error(exc, what) if map_error is not None else map_api_error(exc, what, conn_id)
        raise mapped from exc


# ----------------------------------------------------------------------------------------------
# The base hook
# ----------------------------------------------------------------------------------------------
class IbmCloudBaseHook(BaseHook):
    """The base of every hook that calls IBM Cloud.

    * ``config``: the parsed connection (``config_class``, from the connection named by the
      attribute ``conn_name_attr``), read once;
    * ``authenticator`` and :meth:`account_id`: the API key's IAM authenticator and account;
    * :meth:`_call`: one request with the retries of ``retry_policy``, its final error mapped by
      :meth:`_map_error`.

    :param ibm_conn_id: the ``ibm_cloud_default``-style connection.
    :param retry_policy: overrides :class:`RetryPolicy`.
    :param request_timeout: per-request HTTP timeout in seconds (default ``default_request_timeout``).
    :param sleep: replaces ``time.sleep`` between retries (tests).
    """

    conn_name_attr = "ibm_conn_id"
    default_conn_name = "ibm_cloud_default"
    conn_type = "ibm_cloud"
    hook_name = "IBM Cloud"
    config_class: ClassVar[type] = IbmCloudConnectionConfig
    default_request_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        ibm_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        request_timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        setattr(self, self.conn_name_attr, ibm_conn_id)
        self.retry_policy = retry_policy or RetryPolicy()
        self.request_timeout = request_timeout or self.default_request_timeout
        self._sleep = sleep

    @property
    def conn_id(self) -> str:
        return getattr(self, self.conn_name_attr)

    @cached_property
    def config(self) -> Any:
        """The parsed connection (no network call)."""
        return self.config_class.from_connection(get_connection(self.conn_id))

    @cached_property
    def authenticator(self) -> Any:
        return self.config.authenticator()

    def validate(self) -> dict[str, Any]:
        """Parse and check the connection (no network call); return a secret-free summary."""
        return self.config.describe()

    def account_id(self) -> str:
        """The API key's account: the ``account.bss`` claim of its IAM access token."""
        import jwt

        # The base class's _call: an IAM request, never metered as a service's (SchematicsHook).
        token = IbmCloudBaseHook._call(self, "IAM token request", self.authenticator.token_manager.get_token)
        claims = jwt.decode(token, options={"verify_signature": False})
        account = (claims.get("account") or {}).get("bss")
        if not account:
            raise IbmCloudPermanentError(
                f"the IAM token of connection '{self.conn_id}' names no account (claim account.bss)"
            )
        return str(account)

    def _call(
        self,
        what: str,
        func: Callable[[], T],
        *,
        wait_on_lock: bool = False,
        recover: Callable[[BaseException], T | None] | None = None,
        before_attempt: Callable[[], None] | None = None,
        map_error: Callable[[BaseException, str], AirflowException] | None = None,
    ) -> T:
        """One request with the hook's retries (see :func:`call_with_retries`)."""
        return call_with_retries(
            func,
            what=what,
            policy=self.retry_policy,
            conn_id=self.conn_id,
            wait_on_lock=wait_on_lock,
            recover=recover,
            sleep=self._sleep,
            before_attempt=before_attempt,
            map_error=map_error or self._map_error,
        )

    def _map_error(self, exc: BaseException, what: str) -> AirflowException:
        return map_api_error(exc, what, self.conn_id)

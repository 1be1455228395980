"""One place for IBM Cloud connection parsing, endpoint URLs, error mapping and retries (tenacity).

Connections (see ``docs/provider.md``):

* ``ibm_cloud_default`` (conn type ``ibm_cloud``; ``generic`` works too): password = IBM Cloud API
  key; extra ``region`` (required), ``resource_group`` (optional id), optional ``iam_url``,
  ``schematics_url``, ``vpc_url``, ``iam_identity_url``, ``tagging_url`` (the reaper's services).
* ``ibm_cos_default`` (conn type ``ibm_cos``; ``generic`` works too): extra ``endpoint_url``
  (required), optional ``vm_endpoint_url``, ``region``, ``instance_crn``; HMAC keys as
  login/password, or ``extra.auth_type = "iam"`` with the API key as password (optional ``iam_url``).

The parsing reads the password, login and ``extra`` only, never the conn type: the UI forms of the
``ibm_cloud`` and ``ibm_cos`` types (``get_provider_info.py``) store their fields under these keys.

Everything here is free of network calls and of heavy SDK imports at module level.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException
from tenacity import RetryCallState, Retrying
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

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
# Errors
# ----------------------------------------------------------------------------------------------
class IbmCloudConfigError(AirflowFailException):
    """A connection or parameter is missing or malformed. Retrying cannot help, so it does not retry."""


class IbmCloudApiError(AirflowException):
    """An IBM Cloud API call failed in a way that a task retry may fix (throttling, 5xx, lock)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class IbmCloudPermanentError(AirflowFailException):
    """An IBM Cloud API call was rejected (400/401/403/...): retrying the same request cannot help."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class IbmCloudNotFoundError(AirflowNotFoundException):
    """The object does not exist (HTTP 404)."""

    def __init__(self, message: str, *, status_code: int | None = 404) -> None:
        super().__init__(message)
        self.status_code = status_code


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


def get_connection(conn_id: str) -> Any:
    """``BaseHook.get_connection`` with an error that says what to do when the connection is absent."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as err:
        raise IbmCloudConfigError(
            f"Connection '{conn_id}' is not defined; create it (UI, CLI or the environment variable "
            f"AIRFLOW_CONN_{conn_id.upper()}) as described in docs/provider.md"
        ) from err
    _mask(conn.password)
    return conn


def _mask(value: Any) -> None:
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(value)
    except Exception:  # pragma: no cover - masking is best effort outside a task
        log.debug("could not register a secret with the masker", exc_info=True)


def validate_ibm_connection(ibm_conn_id: str = "ibm_cloud_default") -> dict[str, Any]:
    """Parse and check the IBM Cloud connection without any network call; return a secret-free summary."""
    return IbmCloudConnectionConfig.from_connection(get_connection(ibm_conn_id)).describe()


def validate_cos_connection(cos_conn_id: str = "ibm_cos_default") -> dict[str, Any]:
    """Parse and check the COS connection without any network call; return a secret-free summary."""
    return CosConnectionConfig.from_connection(get_connection(cos_conn_id)).describe()


# ----------------------------------------------------------------------------------------------
# Error mapping and retries
# ----------------------------------------------------------------------------------------------
def _status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None) or getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def _is_transport_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


def _is_iam_error(exc: BaseException) -> bool:
    resp = getattr(exc, "http_response", None)
    url = getattr(resp, "url", "") or ""
    return "/identity/token" in url


def map_api_error(exc: BaseException, what: str, conn_id: str | None = None) -> AirflowException:
    """Turn an SDK/HTTP exception into an Airflow error that says what failed and what to fix."""
    if isinstance(exc, AirflowException):
        return exc
    code = _status_of(exc)
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


@dataclass(frozen=True)
class RetryPolicy:
    """How one API call is retried (the rules are the tenacity pieces below).

    * 429 and 5xx and transport errors: exponential backoff with jitter starting at ``base_delay_s``,
      capped at ``max_delay_s``; a ``Retry-After`` header (seconds or HTTP date) replaces the backoff
      (capped at ``max_retry_after_s``). At most ``max_attempts`` tries and ``max_total_s`` seconds of
      waiting in all; past either cap the last error is raised.
    * 409 (workspace locked): waits ``lock_poll_s`` between tries for at most ``lock_wait_s``.
    """

    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_total_s: float = 300.0
    lock_wait_s: float = 600.0
    lock_poll_s: float = 5.0

    def backoff_s(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt: doubling, capped, then 50-100 % of it."""
        backoff = min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))
        return backoff * random.uniform(0.5, 1.0)


def _retry_after(exc: BaseException) -> float | None:
    resp = getattr(exc, "http_response", None)
    headers = getattr(resp, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
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


def is_transient(exc: BaseException) -> bool:
    code = _status_of(exc)
    if _is_transport_error(exc):
        return True
    return code == 429 or (code is not None and code >= 500)


# The rules of RetryPolicy, as tenacity pieces named in its style (retry_if_..., wait_..., stop_...).
class _History:
    """What one call has met so far, kept by tenacity's ``after`` hook for the pieces below.

    Tenacity numbers every attempt; these rules count only failed ones (a workspace lock waited
    out is not a failure) and time the lock from the first 409, on the injectable ``clock``.
    """

    def __init__(self, clock: Callable[[], float], wait_on_lock: bool) -> None:
        self.clock = clock
        self.wait_on_lock = wait_on_lock
        self.started = clock()
        self.failures = 0
        self.locked_since: float | None = None
        self.last_error: BaseException | None = None

    def is_lock(self, exc: BaseException | None) -> bool:
        """A 409 "workspace locked" that this call waits out."""
        return self.wait_on_lock and exc is not None and _status_of(exc) == 409

    def note(self, retry_state: RetryCallState) -> None:
        """Tenacity's ``after`` hook: runs after each failed attempt that the ``retry`` rule accepts."""
        exc = _error_of(retry_state)
        self.last_error = exc
        if self.is_lock(exc):
            self.locked_since = self.clock() if self.locked_since is None else self.locked_since
        else:
            self.failures += 1

    def may_have_acted(self) -> bool:
        """The last attempt failed in a way where the server may have carried the request out."""
        exc = self.last_error
        return exc is not None and not self.is_lock(exc) and _status_of(exc) != 429


def _error_of(retry_state: RetryCallState) -> BaseException | None:
    return retry_state.outcome.exception() if retry_state.outcome is not None else None


@dataclass
class retry_if_transient_or_locked(retry_base):
    """Retry 429, 5xx and transport errors, and a locked workspace where the call waits for locks.

    Anything else ends the call at once: other 4xx, and Airflow errors (which pass through as they are).
    """

    history: _History

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = _error_of(retry_state)
        if not isinstance(exc, Exception) or isinstance(exc, AirflowException):
            return False
        return self.history.is_lock(exc) or is_transient(exc)


@dataclass
class wait_retry_after_or_backoff(wait_base):
    """A lock poll after a 409; else the server's ``Retry-After`` (capped) or jittered backoff."""

    policy: RetryPolicy
    history: _History

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = _error_of(retry_state)
        if self.history.is_lock(exc):
            return self.policy.lock_poll_s
        retry_after = _retry_after(exc) if exc is not None else None
        if retry_after is not None:
            return min(self.policy.max_retry_after_s, retry_after)
        return self.policy.backoff_s(self.history.failures)


@dataclass
class stop_lock_outlasts_wait(stop_base):
    """Stop waiting for a workspace lock once the next poll would pass ``lock_wait_s``."""

    policy: RetryPolicy
    history: _History

    def __call__(self, retry_state: RetryCallState) -> bool:
        history = self.history
        if not history.is_lock(_error_of(retry_state)) or history.locked_since is None:
            return False
        return history.clock() - history.locked_since + retry_state.upcoming_sleep > self.policy.lock_wait_s


@dataclass
class stop_after_failures(stop_base):
    """Stop after ``max_attempts`` failed attempts (lock waits do not count)."""

    policy: RetryPolicy
    history: _History

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.history.failures >= self.policy.max_attempts


@dataclass
class stop_before_total_time(stop_base):
    """Stop a failing call (not a lock wait) whose next wait would end past ``max_total_s``."""

    policy: RetryPolicy
    history: _History

    def __call__(self, retry_state: RetryCallState) -> bool:
        history = self.history
        if history.is_lock(_error_of(retry_state)):
            return False
        elapsed = history.clock() - history.started
        return elapsed + retry_state.upcoming_sleep > self.policy.max_total_s


def _log_retry(what: str, policy: RetryPolicy, history: _History) -> Callable[[RetryCallState], None]:
    """Tenacity's ``before_sleep`` hook: one line per wait."""

    def log_it(retry_state: RetryCallState) -> None:
        exc = _error_of(retry_state)
        if history.is_lock(exc):
            log.info("%s: workspace locked (409); waiting %.0f s", what, retry_state.upcoming_sleep)
            return
        code = _status_of(exc) if exc is not None else None
        log.warning(
            "%s: %s (attempt %d/%d); retrying in %.1f s",
            what,
            f"HTTP {code}" if code else type(exc).__name__,
            history.failures,
            policy.max_attempts,
            retry_state.upcoming_sleep,
        )

    return log_it


def call_with_retries(
    func: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy,
    conn_id: str | None = None,
    wait_on_lock: bool = False,
    recover: Callable[[BaseException], T | None] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> T:
    """Call ``func`` with the retry rules of :class:`RetryPolicy` (tenacity); map the final error.

    ``recover`` is called before re-sending after an error where the server may have acted anyway
    (5xx, transport error). If it returns something other than ``None``, that is returned instead of
    sending the request again: this is how job-starting commands avoid starting a second job.
    ``before_attempt`` runs before every request sent (the request budget waits there).
    ``sleep`` and ``clock`` replace ``time.sleep`` and ``time.monotonic`` (tests).
    """
    history = _History(clock or time.monotonic, wait_on_lock)
    retrying = Retrying(
        retry=retry_if_transient_or_locked(history),
        after=history.note,
        wait=wait_retry_after_or_backoff(policy, history),
        stop=(
            stop_lock_outlasts_wait(policy, history)
            | stop_after_failures(policy, history)
            | stop_before_total_time(policy, history)
        ),
        before_sleep=_log_retry(what, policy, history),
        sleep=sleep or time.sleep,
        reraise=True,  # the last error itself, mapped below
    )

    def attempt() -> T:
        if recover is not None and history.may_have_acted():
            recovered = recover(history.last_error)  # type: ignore[arg-type]
            if recovered is not None:
                log.info("%s: the first request had been accepted; not sending it again", what)
                return recovered
        if before_attempt is not None:
            before_attempt()
        return func()

    try:
        return retrying(attempt)
    except AirflowException:
        raise
    except Exception as exc:
        if history.is_lock(exc):  # a lock is retried until it outlasts lock_wait_s
            raise IbmCloudApiError(
                f"{what}: the workspace stayed locked for more than {policy.lock_wait_s:.0f} s "
                f"(HTTP 409: {getattr(exc, 'message', exc)}); another job is running on it",
                status_code=409,
            ) from exc
        raise map_api_error(exc, what, conn_id) from exc

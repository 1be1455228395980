"""The error that caused a task's failure, kept across its tries.

A task that is retried can fail differently on each try, and its last error is often a consequence
of the first, not the cause: the first apply meets a zone without capacity, a later one a reserved
IP still bound or a locked workspace. The cause is the first try's error, unless a later try met one
that :func:`classify` recognises as a cause (no capacity, a quota): that one is what the user must
act on.

Each failed try is kept in the task's ``task_state_store`` (Airflow 3.3; it outlives the try) by
:func:`record_try`, called while the try still runs: Airflow refuses a store write once the try has
ended, so ``on_retry_callback`` cannot do it. The Schematics job operators call it before they
raise, lead their error with the cause and push it as the XCom ``failure_cause``. For other tasks,
``on_failure_callback=explain_failure`` logs the cause as the task's last line and pushes the same
XCom.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

STORE_KEY = "failure_cause_tries"
XCOM_KEY = "failure_cause"
#: Instance status reasons that mean "this zone cannot start it now" (ibm-cloud-docs/vpc
#: instance-status-messages.md: each one's fix is another zone or a smaller profile).
CAPACITY_REASONS = (
    "cannot_start_capacity",
    "cannot_start_placement_group",
    "cannot_start_reservation_capacity",
)
#: The VPC API's quota refusal ("Creating a new ... will put the user over quota", code over_quota).
_QUOTA = re.compile(r"\bover_quota\b|will put the user over quota")
MAX_ERROR_CHARS = 2000


def capacity_reason(error: str) -> str | None:
    """The capacity status reason ``error`` names (``cannot_start_capacity``, ...), or None."""
    return next((reason for reason in CAPACITY_REASONS if reason in error), None)


def classify(error: str) -> str | None:
    """``"capacity"`` or ``"quota"`` for IBM's errors that are a failure's cause; else None."""
    if capacity_reason(error):
        return "capacity"
    if _QUOTA.search(error):
        return "quota"
    return None


def error_text(error: BaseException | str | None) -> str:
    """An error as one line: its message's first non-empty line (what a one-line summary shows)."""
    text = str(error or "").strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first and isinstance(error, BaseException):
        first = type(error).__name__
    return first[:MAX_ERROR_CHARS]


def root_cause(tries: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The try whose error caused the failure: the first classified as a cause, else the first."""
    tries = [dict(t) for t in tries if t.get("error")]
    if not tries:
        return None
    return next((t for t in tries if classify(t["error"])), tries[0])


def _store(context: Mapping[str, Any]) -> Any:
    try:
        return context.get("task_state_store")
    except Exception:  # Airflow before 3.3 has none: the cause is then this try's error
        return None


def _try_number(context: Mapping[str, Any]) -> Any:
    number = getattr(context.get("ti"), "try_number", None)
    return number if isinstance(number, int) else None


def _saved(store: Any) -> list[dict[str, Any]]:
    if store is None:
        return []
    try:
        saved = store.get(STORE_KEY)
    except Exception as exc:  # the store is a help; never fail a task or a callback for it
        log.warning("Could not read the earlier tries' errors (%s)", exc)
        return []
    return [dict(t) for t in saved] if isinstance(saved, list) else []


def record_try(context: Mapping[str, Any], error: BaseException | str) -> list[dict[str, Any]]:
    """Keep this try's error (call it while the try runs); returns every try's, this one last.

    Each call adds one entry: a job submitted again within the same try adds its own.
    """
    store = _store(context)
    this = {"try": _try_number(context), "error": error_text(error)}
    tries = [*_saved(store), this]
    if store is not None:
        try:
            store.set(STORE_KEY, tries)
        except Exception as exc:
            log.warning("Could not keep this try's error for the next try (%s)", exc)
    return tries


def describe(tries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The XCom ``failure_cause``: ``{"cause", "try", "tries", "kind"?}`` (None without an error)."""
    cause = root_cause(tries)
    if cause is None:
        return None
    value: dict[str, Any] = {"cause": cause["error"], "try": cause.get("try"), "tries": tries}
    kind = classify(cause["error"])
    if kind:
        value["kind"] = kind
    return value


def push(context: Mapping[str, Any], value: dict[str, Any] | None) -> None:
    ti = context.get("ti")
    if ti is None or value is None:
        return
    try:
        ti.xcom_push(key=XCOM_KEY, value=value)
    except Exception as exc:  # the run report falls back to the task's state
        log.warning("Could not push the failure's cause to XCom (%s)", exc)


def explain_failure(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """``on_failure_callback``: log the cause as the task's last line; push it as XCom ``failure_cause``.

    The tries recorded during the task (:func:`record_try`) count, and this try's exception
    unless this try recorded its own error already.
    """
    tries = _saved(_store(context))
    number = _try_number(context)
    if number is None or not any(t.get("try") == number for t in tries):
        tries.append({"try": number, "error": error_text(context.get("exception"))})
    value = describe(tries)
    if value is None:
        return None
    # The task's own logger: its lines are the task's log (a module logger made before Airflow
    # configured logging may have been disabled by it).
    logger = getattr(context.get("task"), "log", None) or log
    if value["try"] is not None and value["try"] != number:
        logger.error("The cause of this failure (try %s of %s): %s", value["try"], number, value["cause"])
    else:
        logger.error("The cause of this failure: %s", value["cause"])
    push(context, value)
    return value

"""The provider's errors: what failed, and whether a retry of the task can help.

* :class:`IbmCloudConfigError`: a connection or parameter is wrong; fails the task without retries.
* :class:`IbmCloudApiError`: throttling, a 5xx, a locked workspace, an unreachable endpoint; a task
  retry may succeed.
* :class:`IbmCloudPermanentError`: the request was refused (400/401/403...); fails without retries.
* :class:`IbmCloudNotFoundError`: the object does not exist (HTTP 404).

They subclass Airflow's exceptions, so Airflow decides about task retries the usual way.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowNotFoundException


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


class VpcResourceInUseError(IbmCloudApiError):
    """HTTP 409 on a VPC delete: IBM refuses it until what depends on the resource is gone; retry later."""

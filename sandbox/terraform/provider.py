"""What the Terraform runner asks of a provider: the interface between the runner and a cloud.

The runner (:mod:`sandbox.terraform.engine`) reads the configuration, orders and evaluates it,
keeps the state, plans, replaces tainted objects and writes the log. Everything a real provider
plugin does is behind :class:`Provider`, as Terraform's plugin protocol puts it behind
``ConfigureProvider``, ``ValidateResourceConfig``, ``PlanResourceChange``, ``ReadDataSource``,
``ApplyResourceChange`` and ``ReadResource``. The IBM Cloud emulation implements it
(:class:`sandbox.ibm.provider.IbmProvider`); the runner imports nothing of it.

A state entry (one object) is ``{"address", "mode", "type", "name", "index", "id", "attrs",
"inventory_ids"}``: ``inventory_ids`` are the provider's handles of the object, opaque to the
runner (the first one names the object itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: What a provider returns for a side effect on other objects of the state, by handle: the
#: attributes that changed, or None when the object is gone (deleted with the one deleted).
Changes = dict[str, dict[str, Any] | None]


class ProviderError(Exception):
    """The provider refused a call; the message reads like the provider's ``Error:`` line."""


@dataclass(frozen=True)
class Job:
    """One Terraform command as a provider sees it.

    ``planned()`` is the number of managed objects the command works through, known once the
    runner has evaluated the configuration (before the first create or delete): for ``apply`` the
    instances the configuration declares, for ``destroy`` the entries of the state. ``resources()``
    gives the state's entries as they are now (read only: the runner owns the state).
    """

    command: str  # plan | apply | destroy | refresh
    workspace_id: str
    log: Callable[[str], None]
    resources: Callable[[], list[dict[str, Any]]]
    planned: Callable[[], int] = lambda: 0


@dataclass
class Created:
    """An object a create made: its ``id``, its attributes and the provider's handles of it.

    ``error`` set: the object exists but failed (Terraform keeps it in the state, tainted, and the
    next apply replaces it). ``changes``: what the create did to other objects (a binding).
    """

    id: str
    attrs: dict[str, Any]
    handles: list[str]
    error: str | None = None
    changes: Changes = field(default_factory=dict)


class Session(Protocol):
    """A provider configured for one :class:`Job`."""

    def validate(self, rtype: str, config: dict[str, Any]) -> list[str]:
        """The schema's complaints about a resource's configuration (the plan fails on any)."""

    def plan(self, rtype: str, config: dict[str, Any], index: int | None) -> dict[str, Any]:
        """The attributes a new object will have, unknown ones as ``"(known after apply)"``."""

    def read_data(self, rtype: str, config: dict[str, Any], *, warn: Callable[[str], None]) -> dict[str, Any]:
        """A data source's attributes; raises :class:`ProviderError` when there is no answer."""

    def create(self, rtype: str, address: str, index: int | None, config: dict[str, Any]) -> Created:
        """Create one object; raises :class:`ProviderError` when the cloud refuses it."""

    def exists(self, entry: dict[str, Any]) -> bool:
        """False when the object of a state entry is gone (deleted outside Terraform)."""

    def delete(self, entry: dict[str, Any]) -> Changes:
        """Delete the object of a state entry; returns what that did to other objects."""


class Provider(Protocol):
    def configure(self, job: Job) -> Session:
        """A session for one command; raises :class:`ProviderError` when the provider cannot start."""

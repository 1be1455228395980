"""Control API (own port, no auth, loopback only): inventory snapshot and fault switching.

- ``GET /sandbox/inventory`` -> ``Inventory.snapshot()`` plus ``"faults"`` (the active faults);
- ``GET /sandbox/faults`` -> ``{"faults": {name: options}, "known": [...]}``;
- ``POST /sandbox/faults`` with the same forms as ``SANDBOX_FAULTS`` (a list of names or
  ``{name: options}``; ``[]`` clears) -> the new fault set; an unknown name -> 400 naming the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.faults import FAULT_NAMES, FaultSet, UnknownFaultError
from sandbox.ibm.errors import json_response
from sandbox.ibm.wsgi import Rule, ServiceApp
from sandbox.inventory import Inventory


class ControlApp(ServiceApp):
    """Errors are ``{"error": message}`` (the base class's default shape); requests are not counted."""

    invalid_json = (None, "invalid JSON: {err}")
    rules = [
        Rule("/sandbox/inventory", endpoint="inventory", methods=["GET"]),
        Rule("/sandbox/faults", endpoint="get_faults", methods=["GET"]),
        Rule("/sandbox/faults", endpoint="set_faults", methods=["POST", "PUT"]),
    ]

    def __init__(self, inventory: Inventory, faults: FaultSet, set_faults: Callable[[Any], None]) -> None:
        self.inventory = inventory
        self.faults = faults
        self.set_faults = set_faults

    def ep_inventory(self, request: Request, claims: dict[str, Any]) -> Response:
        return json_response({**self.inventory.snapshot(), "faults": self.faults.describe()})

    def ep_get_faults(self, request: Request, claims: dict[str, Any]) -> Response:
        return json_response({"faults": self.faults.describe(), "known": list(FAULT_NAMES)})

    def ep_set_faults(self, request: Request, claims: dict[str, Any]) -> Response:
        spec = self.json_body(request, [])
        try:
            self.set_faults(spec)
        except (UnknownFaultError, TypeError, ValueError) as err:
            return json_response({"error": str(err), "known": list(FAULT_NAMES)}, 400)
        return self.ep_get_faults(request, claims)

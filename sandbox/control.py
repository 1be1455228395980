"""Control API (own port, no auth, loopback only): inventory snapshot and fault switching.

- ``GET /sandbox/inventory`` -> ``Inventory.snapshot()`` plus ``"faults"`` (the active faults);
- ``GET /sandbox/faults`` -> ``{"faults": {name: options}, "known": [...]}``;
- ``POST /sandbox/faults`` with the same forms as ``SANDBOX_FAULTS`` (a list of names or
  ``{name: options}``; ``[]`` clears) -> the new fault set; an unknown name -> 400 naming the known ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.errors import json_response
from sandbox.faults import FAULT_NAMES, FaultSet, UnknownFaultError
from sandbox.inventory import Inventory


class ControlApp:
    url_map = Map(
        [
            Rule("/sandbox/inventory", endpoint="inventory", methods=["GET"]),
            Rule("/sandbox/faults", endpoint="get_faults", methods=["GET"]),
            Rule("/sandbox/faults", endpoint="set_faults", methods=["POST", "PUT"]),
        ]
    )

    def __init__(self, inventory: Inventory, faults: FaultSet, set_faults: Callable[[Any], None]) -> None:
        self.inventory = inventory
        self.faults = faults
        self.set_faults = set_faults

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            endpoint, _ = self.url_map.bind_to_environ(request.environ).match()
        except HTTPException as err:
            return json_response({"error": err.description}, err.code or 404)
        if endpoint == "inventory":
            return json_response({**self.inventory.snapshot(), "faults": self.faults.describe()})
        if endpoint == "set_faults":
            try:
                spec = json.loads(request.get_data() or b"[]")
            except ValueError as err:
                return json_response({"error": f"invalid JSON: {err}"}, 400)
            try:
                self.set_faults(spec)
            except (UnknownFaultError, TypeError, ValueError) as err:
                return json_response({"error": str(err), "known": list(FAULT_NAMES)}, 400)
        return json_response({"faults": self.faults.describe(), "known": list(FAULT_NAMES)})

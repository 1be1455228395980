"""A local IBM Cloud: IAM, Schematics v1, COS, VPC and instance metadata on loopback.

``from sandbox import Sandbox`` is resolved lazily so that importing ``sandbox.inventory`` or
``sandbox.faults`` (the Terraform engine does) does not pull in moto and werkzeug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.core import Sandbox

__all__ = ["Sandbox"]


def __getattr__(name: str) -> Any:
    if name == "Sandbox":
        from sandbox.core import Sandbox

        return Sandbox
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")

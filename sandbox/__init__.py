"""A local IBM Cloud: IAM, Schematics v1, COS, VPC and instance metadata on loopback.

Three parts: ``sandbox.terraform`` (the Terraform runner, behind a provider interface),
``sandbox.ibm`` (the IBM Cloud emulation, whose provider the runner drives) and this package's glue
(``Sandbox`` in ``core.py``, ``python -m sandbox``, the pytest fixtures in ``testing.py``).
``from sandbox import Sandbox`` is resolved lazily so that importing the runner alone does not
pull in moto and werkzeug.
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

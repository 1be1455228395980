"""The sandbox's Terraform runner (:mod:`sandbox.terraform.engine`), behind a provider interface
(:mod:`sandbox.terraform.provider`); it imports nothing of the IBM emulation."""

from sandbox.terraform.engine import (
    TerraformEngine,
    TerraformError,
    TerraformRun,
    declared_variables,
)

__all__ = ["TerraformEngine", "TerraformError", "TerraformRun", "declared_variables"]

"""The sandbox's Terraform interpreter (see :mod:`sandbox.terraform.engine`)."""

from sandbox.terraform.engine import (
    TerraformEngine,
    TerraformError,
    TerraformRun,
    declared_variables,
)

__all__ = ["TerraformEngine", "TerraformError", "TerraformRun", "declared_variables"]

"""Plan and apply that find the run's workspace, or create it again when the run's cleanup deleted it.

Airflow users recover a failed run by clearing the failed task with its downstream tasks. By then
``delete_workspace`` has removed the run's workspace, and ``create_workspace`` (upstream) is not
run again. These operators look the workspace up by id, then by the run's name, and when it is gone
create it again from the same plan (template, variables, secure references, tags): idempotently,
one workspace per run at any time. Destroy and delete find it again by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ibm_cloud_airflow.operators.schematics import SchematicsPlanOperator
from ibm_cloud_airflow.utils.plan import require_type, value_or_plan_template


class RecreatesWorkspace:
    """Mixin for a Schematics job operator: make sure the run's workspace exists before the job.

    :param template_dir: the Terraform folder a workspace created again is uploaded from.
    """

    workspace_template_fields: Sequence[str] = (
        "variables",
        "secure_variables",
        "tags",
        "location",
        "description",
    )

    def _init_workspace_fields(self, plan_task_id: str | None, template_dir: str | None) -> None:
        self.template_dir = template_dir
        self.variables = value_or_plan_template(
            getattr(self, "variables", None), plan_task_id, "terraform_variables"
        )
        self.secure_variables = value_or_plan_template(
            getattr(self, "secure_variables", None), plan_task_id, "secure_variable_refs"
        )
        self.tags = value_or_plan_template(None, plan_task_id, "tags")
        self.location = value_or_plan_template(None, plan_task_id, "region")
        self.description = value_or_plan_template(None, plan_task_id, "workspace_description")

    def _run(self, context: Any, **kwargs: Any) -> Any:
        self._ensure_workspace()
        return super()._run(context, **kwargs)  # type: ignore[misc]

    @property
    def workspace_hook(self) -> Any:
        """The SchematicsHook (a job operator's own hook)."""
        return self.hook  # type: ignore[attr-defined]

    def _ensure_workspace(self) -> str | None:
        """The run's workspace id; created again when it is gone (None: nothing to create it from)."""
        from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError
        from ibm_cloud_airflow.utils.secrets import resolve_secret_references

        op: Any = self
        hook = self.workspace_hook
        given = require_type(op.task_id, "workspace_id", op.workspace_id, str) or None
        name = require_type(op.task_id, "workspace_name", op.workspace_name, str)
        if given:
            try:
                hook.get_workspace(given)
                return given
            except IbmCloudNotFoundError:
                pass
        found = hook.resolve_workspace(None, name) if name else None
        if found:
            op.workspace_id = found
            return found
        if not (name and self.template_dir):
            return None  # nothing to create it from: the job operator reports the missing workspace
        workspace = hook.create_workspace(
            name=name,
            template_dir=self.template_dir,
            variables=require_type(op.task_id, "variables", self.variables, dict) or {},
            secure_variables=resolve_secret_references(
                require_type(op.task_id, "secure_variables", self.secure_variables, dict)
            ),
            tags=require_type(op.task_id, "tags", self.tags, list),
            location=self.location or None,
            description=self.description or None,
            reuse_existing=True,
        )
        op.workspace_id = workspace["id"]
        op.log.warning(
            "Workspace %s is gone (the run's cleanup deleted it before this task was cleared): "
            "created it again as %s",
            given or name,
            workspace["id"],
        )
        return workspace["id"]


class RunPlanOperator(RecreatesWorkspace, SchematicsPlanOperator):
    """:class:`SchematicsPlanOperator` that creates the run's workspace again when it is gone."""

    template_fields: Sequence[str] = (
        *SchematicsPlanOperator.template_fields,
        *RecreatesWorkspace.workspace_template_fields,
    )

    def __init__(self, *, plan_task_id: str | None = None, template_dir: str | None = None, **kwargs: Any):
        super().__init__(plan_task_id=plan_task_id, **kwargs)
        self._init_workspace_fields(plan_task_id, template_dir)

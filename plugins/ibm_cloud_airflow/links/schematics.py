"""Extra link from a task to its Schematics workspace in the IBM Cloud console."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

SCHEMATICS_CONSOLE = "https://cloud.ibm.com/schematics/workspaces/{workspace_id}"


class SchematicsWorkspaceLink(BaseOperatorLink):
    """``https://cloud.ibm.com/schematics/workspaces/<id>``; the URL is kept in XCom under ``xcom_key``."""

    name = "Schematics workspace"

    @classmethod
    def persist(cls, context: Any, workspace_id: str) -> None:
        """Save the link early in ``execute`` so it shows even if the task fails later."""
        if not workspace_id:
            return
        context["ti"].xcom_push(
            key=cls().xcom_key, value=SCHEMATICS_CONSOLE.format(workspace_id=workspace_id)
        )

    @classmethod
    def xcom_entry(cls, workspace_id: str) -> dict[str, str]:
        """The link as an XCom, for a task that ends in the triggerer (no ``execute`` to persist it)."""
        return {cls().xcom_key: SCHEMATICS_CONSOLE.format(workspace_id=workspace_id)} if workspace_id else {}

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from ibm_cloud_airflow.utils.airflow_compat import xcom_backend

        return xcom_backend().get_value(ti_key=ti_key, key=self.xcom_key) or ""

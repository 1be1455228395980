"""What Airflow's ProvidersManager learns about this provider (entry point ``apache_airflow_provider``).

Plain data, no imports: Airflow calls this in every process that lists providers (CLI, api-server,
scheduler, workers), before it imports any hook. The connection forms are declared here
(``conn-fields`` / ``ui-field-behaviour``, the Airflow 3.2+ way), so the UI needs neither the hooks
nor wtforms/FAB to draw them. Every extra field is stored in the connection's ``extra`` under the key
``hooks/base.py`` parses, so a ``generic`` connection with the same extra works the same.
"""

from __future__ import annotations

PACKAGE_NAME = "airflow-provider-ibm-cloud"
IBM_CLOUD_CONN_TYPE = "ibm_cloud"
COS_CONN_TYPE = "ibm_cos"

#: Regions with a public Schematics endpoint (``hooks.base.SCHEMATICS_ENDPOINTS``, geographies aside)
#: and VPC GPU servers. Any other region needs ``schematics_url``; the tests keep the two lists equal.
REGIONS = ["us-south", "us-east", "eu-gb", "eu-de", "ca-tor", "ca-mon"]


def _text(label: str, description: str) -> dict:
    """An optional free-text extra field (empty is stored as null or absent: the hooks' default)."""
    return {"label": label, "description": description, "schema": {"type": ["string", "null"]}}


_IBM_CLOUD_FIELDS = {
    "region": {
        "label": "Region",
        "description": "Where the Schematics workspaces and the VPC live.",
        "schema": {"type": "string", "enum": REGIONS, "default": "us-south"},
    },
    "resource_group": _text(
        "Resource group ID", "Optional: the resource group of new workspaces (an id, not a name)."
    ),
    "iam_url": _text("IAM endpoint", "Optional override; default https://iam.cloud.ibm.com"),
    "schematics_url": _text(
        "Schematics endpoint", "Optional override; default https://<region>.schematics.cloud.ibm.com"
    ),
    "vpc_url": _text("VPC endpoint", "Optional override; default https://<region>.iaas.cloud.ibm.com/v1"),
    "iam_identity_url": _text(
        "IAM Identity endpoint", "Optional override (trusted profiles, the reaper); default: the IAM endpoint"
    ),
    "tagging_url": _text(
        "Global Tagging endpoint",
        "Optional override (the reaper); default https://tags.global-search-tagging.cloud.ibm.com",
    ),
}

_COS_FIELDS = {
    # The one extra the hook cannot do without: a string schema (no null) makes the form require it.
    "endpoint_url": {
        "label": "COS endpoint",
        "description": "The endpoint Airflow uses, e.g. https://s3.us-south.cloud-object-storage.appdomain.cloud",
        "schema": {"type": "string", "minLength": 1},
    },
    "vm_endpoint_url": _text(
        "COS endpoint for the servers",
        "Optional: the endpoint the GPU servers use inside the VPC (the direct endpoint); "
        "default: the COS endpoint",
    ),
    "region": _text("COS region", "Optional: the bucket's region, e.g. us-south"),
    "instance_crn": _text(
        "COS instance CRN", "Optional: needed for keyless servers (the trusted profile's access policy)"
    ),
    "auth_type": {
        "label": "Authentication",
        "description": "hmac: HMAC keys in login/password; iam: an IBM Cloud API key in password.",
        "schema": {"type": "string", "enum": ["hmac", "iam"], "default": "hmac"},
    },
    "iam_url": _text(
        "IAM endpoint", "Optional override for auth_type iam; default https://iam.cloud.ibm.com"
    ),
}


def get_provider_info() -> dict:
    return {
        "package-name": PACKAGE_NAME,
        "name": "IBM Cloud (Schematics, VPC, Cloud Object Storage)",
        "description": "Hooks, operators, a sensor, triggers and an extra link for IBM Cloud Schematics, "
        "VPC and Cloud Object Storage.\n",
        "integrations": [
            {
                "integration-name": "IBM Cloud Schematics",
                "external-doc-url": "https://cloud.ibm.com/docs/schematics",
                "tags": ["ibm"],
            },
            {
                "integration-name": "IBM Cloud VPC",
                "external-doc-url": "https://cloud.ibm.com/docs/vpc",
                "tags": ["ibm"],
            },
            {
                "integration-name": "IBM Cloud Object Storage",
                "external-doc-url": "https://cloud.ibm.com/docs/cloud-object-storage",
                "tags": ["ibm"],
            },
            {
                "integration-name": "IBM Cloud IAM",
                "external-doc-url": "https://cloud.ibm.com/docs/account",
                "tags": ["ibm"],
            },
        ],
        "operators": [
            {
                "integration-name": "IBM Cloud Schematics",
                "python-modules": ["ibm_cloud_airflow.operators.schematics"],
            }
        ],
        "sensors": [
            {
                "integration-name": "IBM Cloud Object Storage",
                "python-modules": ["ibm_cloud_airflow.sensors.cos"],
            }
        ],
        "hooks": [
            {
                "integration-name": "IBM Cloud Schematics",
                "python-modules": ["ibm_cloud_airflow.hooks.schematics"],
            },
            {"integration-name": "IBM Cloud VPC", "python-modules": ["ibm_cloud_airflow.hooks.vpc"]},
            {
                "integration-name": "IBM Cloud Object Storage",
                "python-modules": ["ibm_cloud_airflow.hooks.cos"],
            },
            {
                "integration-name": "IBM Cloud IAM",
                "python-modules": ["ibm_cloud_airflow.hooks.iam", "ibm_cloud_airflow.hooks.iam_identity"],
            },
        ],
        "triggers": [
            {
                "integration-name": "IBM Cloud Schematics",
                "python-modules": ["ibm_cloud_airflow.triggers.schematics"],
            },
            {
                "integration-name": "IBM Cloud Object Storage",
                "python-modules": ["ibm_cloud_airflow.triggers.cos"],
            },
        ],
        "extra-links": ["ibm_cloud_airflow.links.schematics.SchematicsWorkspaceLink"],
        # COS objects as Airflow assets (cos://<bucket>/<key>): what CosHook reports to the hook
        # lineage collector, and how OpenLineage names them (s3://<bucket>, <key>).
        "asset-uris": [
            {
                "schemes": ["cos"],
                "handler": "ibm_cloud_airflow.utils.lineage.sanitize_uri",
                "factory": "ibm_cloud_airflow.utils.lineage.create_asset",
                "to_openlineage_converter": "ibm_cloud_airflow.utils.lineage.convert_asset_to_openlineage",
            }
        ],
        "connection-types": [
            {
                "connection-type": IBM_CLOUD_CONN_TYPE,
                "hook-class-name": "ibm_cloud_airflow.hooks.schematics.SchematicsHook",
                "hook-name": "IBM Cloud",
                "conn-fields": _IBM_CLOUD_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "login"],
                    "relabeling": {"password": "API key"},
                    "placeholders": {
                        "password": "IBM Cloud API key (Schematics, VPC, IAM Identity access)",
                        "extra": '{"rate_limit_per_minute": 45}',
                    },
                },
            },
            {
                "connection-type": COS_CONN_TYPE,
                "hook-class-name": "ibm_cloud_airflow.hooks.cos.CosHook",
                "hook-name": "IBM Cloud Object Storage",
                "conn-fields": _COS_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {
                        "login": "HMAC access key ID",
                        "password": "HMAC secret access key or API key",
                    },
                    "placeholders": {
                        "login": "access_key_id (auth_type hmac; empty for iam)",
                        "password": "secret_access_key (hmac) or IBM Cloud API key (iam)",
                    },
                },
            },
        ],
        "config": {
            "ibm_cloud": {
                "description": "The IBM Cloud provider (airflow-provider-ibm-cloud).",
                "options": {
                    "end_from_trigger": {
                        "description": "Finished Schematics jobs and the COS sensor end their tasks in "
                        "the triggerer, without a worker, where Airflow allows it (no listener such as "
                        "OpenLineage's registered: utils.triggerer.can_end_from_trigger). False turns "
                        "that off everywhere.",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": None,
                        "default": "True",
                    },
                    **{
                        f"quota_{name}": {
                            "description": f"The {what} quota per region that validate checks a run "
                            "against: a number for every region, or region=number pairs; empty: IBM's "
                            f"default ({default}).",
                            "version_added": "0.2.0",
                            "type": "string",
                            "example": example,
                            "default": "",
                        }
                        for name, what, default, example in (
                            ("vcpu", "vCPU", 200, "us-south=400"),
                            ("memory_gb", "memory (GB)", 5600, "11200"),
                            ("gpus", "GPU", 16, "us-south=32,eu-de=24"),
                        )
                    },
                },
            },
        },
    }

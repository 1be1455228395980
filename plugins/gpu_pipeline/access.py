"""Why the pipeline's servers stopped without a marker, from their trusted profile's IAM policies.

The pipeline cannot read a server's log when it could not upload it, but it can read what its
trusted profile holds (``IamPolicyHook.access``) and compare that with what the workload does on
its COS prefix (``workload/bootstrap.sh``, ``train.py``).
"""

from __future__ import annotations

COS_SERVICE = "cloud-object-storage"
#: What the workload must be able to do on its own prefix (workload/bootstrap.sh, train.py).
WORKLOAD_COS_ACTIONS = (
    f"{COS_SERVICE}.object.put",
    f"{COS_SERVICE}.object.post_initiate_upload",
    f"{COS_SERVICE}.object.get",
    f"{COS_SERVICE}.object.head",
)
#: How :func:`explain_stopped_servers` starts when the profile lacks one of those actions.
COS_ACCESS_DENIED = "COS access denied"


def explain_stopped_servers(ibm_conn_id: str, trusted_profile_id: str, bucket: str) -> str:
    """One sentence on why servers that cannot report stopped, from the profile's real policies."""
    if not trusted_profile_id:
        return "the servers authenticate with HMAC keys: check the COS credential's role and the endpoint"
    # imported here: the DAG imports this module at every parse, and the hooks cost a few ms there
    from ibm_cloud_airflow.hooks.iam import IamPolicyHook, profile_iam_id

    try:
        access = IamPolicyHook(ibm_conn_id).access(
            profile_iam_id(trusted_profile_id),
            service_name=COS_SERVICE,
            resource=bucket,
            required=WORKLOAD_COS_ACTIONS,
        )
    except Exception as exc:  # the explanation is a bonus; the failure stands without it
        return f"could not read the trusted profile's IAM policies ({type(exc).__name__}: {exc})"
    if access.missing:
        return (
            f"{COS_ACCESS_DENIED}: trusted profile {trusted_profile_id} holds {access.roles or 'no roles'} "
            f"on bucket {bucket}, without {', '.join(access.missing)}"
        )
    return (
        f"trusted profile {trusted_profile_id} holds {access.roles} on bucket {bucket}, which include "
        "the workload's actions: check the policy's path condition, the COS endpoint and the server's network"
    )

"""Hook that lists live IBM Cloud VPC resources belonging to a run (for leak checks).

Matching rule: the VPC API does **not** return user tags (they live in IBM's Global Tagging
service), so a resource belongs to the run whose slug is ``<slug>`` when its name is ``<slug>`` or
starts with ``<slug>-`` (every resource the Terraform creates is named ``<slug>-<role>``). Boot
volumes are named by the provider from the instance name, and any volume attached to one of the
run's instances is matched as well.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlparse

from airflow.sdk import BaseHook

from ibm_cloud_airflow.hooks.base import (
    IbmCloudApiError,
    IbmCloudConnectionConfig,
    RetryPolicy,
    call_with_retries,
    get_connection,
)

#: The VPC API version date sent with every request.
VPC_API_VERSION = "2025-09-30"

#: kind -> (SDK list method, result key)
RESOURCE_LISTS: dict[str, tuple[str, str]] = {
    "instance": ("list_instances", "instances"),
    "volume": ("list_volumes", "volumes"),
    "floating_ip": ("list_floating_ips", "floating_ips"),
    "public_gateway": ("list_public_gateways", "public_gateways"),
    "subnet": ("list_subnets", "subnets"),
    "security_group": ("list_security_groups", "security_groups"),
    "key": ("list_keys", "keys"),
    "vpc": ("list_vpcs", "vpcs"),
}


def belongs_to_run(name: str | None, slug: str) -> bool:
    return bool(name) and (name == slug or name.startswith(slug + "-"))


class VpcHook(BaseHook):
    """Lists VPC resources through ``ibm_vpc.VpcV1`` (service URL from the connection's ``vpc_url``)."""

    conn_name_attr = "ibm_conn_id"
    default_conn_name = "ibm_cloud_default"
    conn_type = "ibm_cloud"
    hook_name = "IBM Cloud VPC"

    def __init__(
        self,
        ibm_conn_id: str = default_conn_name,
        *,
        version: str = VPC_API_VERSION,
        retry_policy: RetryPolicy | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.ibm_conn_id = ibm_conn_id
        self.version = version
        self.retry_policy = retry_policy or RetryPolicy()
        self.request_timeout = request_timeout

    @cached_property
    def config(self) -> IbmCloudConnectionConfig:
        return IbmCloudConnectionConfig.from_connection(get_connection(self.ibm_conn_id))

    @cached_property
    def client(self) -> Any:
        from ibm_vpc import VpcV1

        client = VpcV1(version=self.version, authenticator=self.config.authenticator())
        client.set_service_url(self.config.vpc_url)
        return client

    def get_conn(self) -> Any:
        return self.client

    def validate(self) -> dict[str, Any]:
        """Parse and check the connection (no network call); return a secret-free summary."""
        return self.config.describe()

    def list_all(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of ``kind`` (see :data:`RESOURCE_LISTS`), following ``next`` pages."""
        method_name, key = RESOURCE_LISTS[kind]
        method: Callable[..., Any] = getattr(self.client, method_name)
        items: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": 100, "timeout": self.request_timeout}
            if start:
                kwargs["start"] = start
            page = (
                call_with_retries(
                    lambda kw=kwargs: method(**kw).get_result(),
                    what=f"list VPC {key}",
                    policy=self.retry_policy,
                    conn_id=self.ibm_conn_id,
                )
                or {}
            )
            items.extend(page.get(key) or [])
            href = (page.get("next") or {}).get("href")
            nxt = parse_qs(urlparse(href).query).get("start", [None])[0] if href else None
            if not nxt or nxt == start:
                return items
            start = nxt

    def find_image(self, name: str) -> dict[str, Any] | None:
        """The image called ``name`` in the connection's region (``status``, ``id``, ...), or None."""
        page = call_with_retries(
            lambda: self.client.list_images(name=name, limit=1, timeout=self.request_timeout).get_result(),
            what=f"find VPC image {name}",
            policy=self.retry_policy,
            conn_id=self.ibm_conn_id,
        )
        images = (page or {}).get("images") or []
        return images[0] if images else None

    def find_run_resources(self, slug: str) -> list[dict[str, str]]:
        """Live resources of the run ``slug`` as ``[{"kind", "id", "name"}]`` (instances first, VPCs last)."""
        found: list[dict[str, str]] = []
        instance_ids: set[str] = set()
        instance_volume_ids: set[str] = set()
        for kind in RESOURCE_LISTS:
            for item in self.list_all(kind):
                name = item.get("name")
                match = belongs_to_run(name, slug)
                if kind == "instance" and match:
                    instance_ids.add(item.get("id", ""))
                    for att in [
                        item.get("boot_volume_attachment") or {},
                        *(item.get("volume_attachments") or []),
                    ]:
                        vol = (att or {}).get("volume") or {}
                        if vol.get("id"):
                            instance_volume_ids.add(vol["id"])
                if kind == "volume" and not match:
                    attached = {
                        ((a or {}).get("instance") or {}).get("id")
                        for a in item.get("volume_attachments") or []
                    }
                    attached_names = [
                        ((a or {}).get("instance") or {}).get("name")
                        for a in item.get("volume_attachments") or []
                    ]
                    match = (
                        item.get("id") in instance_volume_ids
                        or bool(attached & instance_ids)
                        or any(belongs_to_run(n, slug) for n in attached_names)
                    )
                if match:
                    found.append({"kind": kind, "id": item.get("id", ""), "name": name or ""})
        return found


#: kind -> SDK delete method (the reaper's direct deletes).
RESOURCE_DELETES: dict[str, str] = {
    "instance": "delete_instance",
    "volume": "delete_volume",
    "floating_ip": "delete_floating_ip",
    "public_gateway": "delete_public_gateway",
    "subnet": "delete_subnet",
    "security_group": "delete_security_group",
    "key": "delete_key",
    "vpc": "delete_vpc",
}


class VpcResourceInUseError(IbmCloudApiError):
    """HTTP 409: IBM refuses the delete until what depends on the resource is gone; retry later."""


def delete_resource(hook: VpcHook, kind: str, resource_id: str) -> bool:
    """Delete one VPC resource: True when deleted (202/204), False when already gone (404).

    Raises :class:`VpcResourceInUseError` on IBM's dependency error (409), with IBM's message.
    """
    from ibm_cloud_sdk_core import ApiException

    method = getattr(hook.client, RESOURCE_DELETES[kind])
    outcome: dict[str, Any] = {}

    def send() -> bool:
        try:
            method(resource_id, timeout=hook.request_timeout)
        except ApiException as exc:
            if exc.status_code == 404:
                return False
            if exc.status_code == 409:
                outcome["in_use"] = exc.message
                return False
            raise
        return True

    deleted = call_with_retries(
        send, what=f"delete VPC {kind} {resource_id}", policy=hook.retry_policy, conn_id=hook.ibm_conn_id
    )
    if "in_use" in outcome:
        raise VpcResourceInUseError(
            f"delete VPC {kind} {resource_id}: in use (HTTP 409: {outcome['in_use']})", status_code=409
        )
    return deleted

"""Hook on the IBM Cloud VPC API: list and delete resources, find those a caller's rule names.

:meth:`VpcHook.find_resources` takes the caller's rule on resource names (the VPC API does **not**
return user tags: they live in IBM's Global Tagging service, see ``hooks/iam_identity.py``). Boot
volumes are named by IBM from the instance name, so any volume attached to a matched instance is
matched as well.

The hook calls the VPC API through IBM's SDK core (``ibm_cloud_sdk_core.BaseService``: IAM
authentication, retries of expired tokens, errors as ``ApiException``), as ``ibm_vpc.VpcV1`` does,
with the API's required ``version`` and ``generation=2`` parameters. It does not import ``ibm_vpc``
itself: that generated module is 9 MB of Python whose import costs about 0.7 s of CPU in every
process that lists resources (``validate`` and ``report`` on a fresh worker, the sensor's server
checks in the triggerer) for the nine list and eight delete calls made here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, cached_property
from typing import Any
from urllib.parse import parse_qs, urlparse

from ibm_cloud_airflow.exceptions import IbmCloudNotFoundError, VpcResourceInUseError
from ibm_cloud_airflow.hooks.base import IbmCloudBaseHook, RetryPolicy

#: The VPC API version date sent with every request.
VPC_API_VERSION = "2025-09-30"

#: kind -> the API's collection (``GET /<collection>`` lists it, its result key has the same name)
RESOURCE_LISTS: dict[str, str] = {
    "instance": "instances",
    "volume": "volumes",
    "floating_ip": "floating_ips",
    "public_gateway": "public_gateways",
    "subnet": "subnets",
    "security_group": "security_groups",
    "key": "keys",
    "vpc": "vpcs",
}


@cache
def _vpc_api_class() -> type:
    """The client class, defined at first use: the SDK core is imported only where a task lists."""
    from ibm_cloud_sdk_core import BaseService

    class VpcApi(BaseService):
        """``GET /<collection>`` and ``DELETE /<collection>/<id>`` of the VPC API (generation 2)."""

        def __init__(self, *, version: str, authenticator: Any, service_url: str) -> None:
            super().__init__(service_url=service_url, authenticator=authenticator)
            self.version = version

        def _call(self, method: str, path: str, params: dict[str, Any], timeout: float) -> Any:
            request = self.prepare_request(
                method=method,
                url=path,
                headers={"Accept": "application/json"},
                params={"version": self.version, "generation": 2, **params},
            )
            return self.send(request, timeout=timeout)

        def list(self, collection: str, *, timeout: float, **params: Any) -> dict[str, Any]:
            return self._call("GET", f"/{collection}", params, timeout).get_result() or {}

        def get(self, path: str, *, timeout: float) -> dict[str, Any]:
            return self._call("GET", path, {}, timeout).get_result() or {}

        def delete(self, collection: str, resource_id: str, *, timeout: float) -> Any:
            (path_id,) = self.encode_path_vars(resource_id)
            return self._call("DELETE", f"/{collection}/{path_id}", {}, timeout)

    return VpcApi


class VpcHook(IbmCloudBaseHook):
    """Lists (and deletes) VPC resources; the service URL is the connection's ``vpc_url``."""

    hook_name = "IBM Cloud VPC"

    def __init__(
        self,
        ibm_conn_id: str = IbmCloudBaseHook.default_conn_name,
        *,
        version: str = VPC_API_VERSION,
        retry_policy: RetryPolicy | None = None,
        request_timeout: float = 60.0,
    ) -> None:
        super().__init__(ibm_conn_id, retry_policy=retry_policy, request_timeout=request_timeout)
        self.version = version

    @cached_property
    def client(self) -> Any:
        return _vpc_api_class()(
            version=self.version, authenticator=self.authenticator, service_url=self.config.vpc_url
        )

    def get_conn(self) -> Any:
        return self.client

    def list_all(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of ``kind`` (see :data:`RESOURCE_LISTS`), following ``next`` pages."""
        key = RESOURCE_LISTS[kind]
        items: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"start": start} if start else {})}
            page = self._call(
                f"list VPC {key}", lambda p=params: self.client.list(key, timeout=self.request_timeout, **p)
            )
            items.extend(page.get(key) or [])
            href = (page.get("next") or {}).get("href")
            nxt = parse_qs(urlparse(href).query).get("start", [None])[0] if href else None
            if not nxt or nxt == start:
                return items
            start = nxt

    def find_image(self, name: str) -> dict[str, Any] | None:
        """The image called ``name`` in the connection's region (``status``, ``id``, ...), or None."""
        page = self._call(
            f"find VPC image {name}",
            lambda: self.client.list("images", name=name, limit=1, timeout=self.request_timeout),
        )
        images = (page or {}).get("images") or []
        return images[0] if images else None

    def _get_or_none(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            return self._call(what, lambda: self.client.get(path, timeout=self.request_timeout))
        except IbmCloudNotFoundError:
            return None

    def instance_profile(self, name: str) -> dict[str, Any] | None:
        """``GET /instance/profiles/{name}`` in the connection's region, or None when it has none."""
        (name_path,) = self.client.encode_path_vars(name)
        return self._get_or_none(f"/instance/profiles/{name_path}", f"get VPC instance profile {name}")

    def zone(self, region: str, zone: str) -> dict[str, Any] | None:
        """``GET /regions/{region}/zones/{zone}`` (with its ``universal_name``), or None when unknown."""
        region_path, zone_path = self.client.encode_path_vars(region, zone)
        return self._get_or_none(f"/regions/{region_path}/zones/{zone_path}", f"get VPC zone {zone}")

    def find_resources(self, named: Callable[[str], bool]) -> list[dict[str, str]]:
        """Live resources whose name ``named`` accepts, and the volumes attached to such instances.

        As ``[{"kind", "id", "name"}]``, in :data:`RESOURCE_LISTS` order (instances first, VPCs last).
        """
        found: list[dict[str, str]] = []
        instance_ids: set[str] = set()
        instance_volume_ids: set[str] = set()
        for kind in RESOURCE_LISTS:
            for item in self.list_all(kind):
                name = item.get("name")
                match = bool(name) and named(name)
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
                        or any(bool(n) and named(n) for n in attached_names)
                    )
                if match:
                    found.append({"kind": kind, "id": item.get("id", ""), "name": name or ""})
        return found


def delete_resource(hook: VpcHook, kind: str, resource_id: str) -> bool:
    """Delete one VPC resource: True when deleted (202/204), False when already gone (404).

    Raises :class:`VpcResourceInUseError` on IBM's dependency error (409), with IBM's message.
    """
    from ibm_cloud_sdk_core import ApiException

    outcome: dict[str, Any] = {}

    def send() -> bool:
        try:
            hook.client.delete(RESOURCE_LISTS[kind], resource_id, timeout=hook.request_timeout)
        except ApiException as exc:
            if exc.status_code == 404:
                return False
            if exc.status_code == 409:
                outcome["in_use"] = exc.message
                return False
            raise
        return True

    deleted = hook._call(f"delete VPC {kind} {resource_id}", send)
    if "in_use" in outcome:
        raise VpcResourceInUseError(
            f"delete VPC {kind} {resource_id}: in use (HTTP 409: {outcome['in_use']})", status_code=409
        )
    return deleted

"""What the VPC API refuses when the provider creates a resource (apply time), as IBM Cloud does.

The provider (``provider.py``) calls :meth:`VpcRules.check_create` just before it records a resource, so a
refused create fails the apply midway, with what was created before kept in the state for destroy,
as on IBM Cloud. Checks done by the provider's schema before any API call (names, tags, enums,
ranges) are in ``sandbox/ibm/provider_schema.py`` and fail the plan instead.

Sources (also in docs/sandbox.md, "What the sandbox enforces, and what it doesn't"):

- GPU profiles and the zones that offer them: IBM's table, in ``vpc_catalog.py`` (IBM's docs,
  cited there); the VPC API refuses a profile a zone does not support (ibm-cloud-docs/vpc
  api-change-log.md); the fault ``profile_not_offered`` takes more pairs out (``capacity.py``);
- quotas per region, all instances together: vCPU 200, memory 5600 GB, GPU 16 by default
  (ibm-cloud-docs/vpc quotas.md), refused with ``over_quota``
  (``sandbox/ibm/capacity.py``);
- subnets: "a power of 2 and the minimum value is 8" (ibm-cloud-docs/vpc subnets-create-subnet.md);
  an automatic address prefix is a /18, so at most 16384 addresses;
- SSH keys: the API defaults ``type`` to rsa and refuses an ed25519 key then ("public key provided
  is not of type rsa", ibm-cloud-docs/vpc#234);
- security group rules: a remote that is neither an IP address nor a CIDR is taken as a security
  group id and looked up; an unknown one is "Invalid remote provided", and an ICMP code needs a type
  (terraform-provider-ibm v2.5.0 resource_ibm_is_security_group_rule.go);
- images: servers are provisioned from ``available``, ``partially_available`` or ``deprecated``
  images, so an ``obsolete`` one is refused (ibm-cloud-docs/vpc bare_metal_server_create.md); the
  provider's image data source only warns about ``deprecated`` (data_source_ibm_is_image.go);
- no capacity: the instance is created, then goes ``failed`` with a status reason such as
  ``cannot_start_capacity`` (``sandbox/ibm/capacity.py``); the provider taints it
  (resource_ibm_is_instance.go);
- deleting an instance releases what was bound to it (:func:`delete_instance`).

IBM does not document the error codes of every refusal; codes marked "sandbox" in docs/sandbox.md
are the sandbox's picks in IBM's snake_case style, in the VPC error shape.
"""

from __future__ import annotations

import base64
import ipaddress
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.faults import FaultSet
from sandbox.ibm.capacity import Quotas, over_quota_message, profile_not_offered
from sandbox.ibm.vpc_catalog import GPU_PROFILES, OTHER_PROFILE, zones_of
from sandbox.inventory import Inventory

#: IBM's default quotas per region, all instances of the account together (ibm-cloud-docs/vpc
#: ``quotas.md``: vCPU 200, memory 5600 GB, GPU 16); IBM support raises them per account.
DEFAULT_QUOTAS = Quotas(vcpu=200, memory_gb=5600, gpus=16)
UNKNOWN = "(known after apply)"


@dataclass(frozen=True)
class Image:
    name: str
    status: str  # available | deprecated | obsolete
    os: str
    architecture: str = "amd64"

    @property
    def id(self) -> str:
        return f"r006-{uuid.uuid5(uuid.NAMESPACE_URL, 'sandbox-image:' + self.name)}"


# The stock images of the sandbox's catalogue, one per lifecycle status that matters.
IMAGES = (
    Image("ibm-ubuntu-24-04-6-minimal-amd64-3", "available", "ubuntu-24-04-amd64"),
    Image("ibm-ubuntu-22-04-5-minimal-amd64-4", "available", "ubuntu-22-04-amd64"),
    Image("ibm-ubuntu-24-04-6-minimal-amd64-2", "deprecated", "ubuntu-24-04-amd64"),
    Image("ibm-ubuntu-20-04-6-minimal-amd64-6", "obsolete", "ubuntu-20-04-amd64"),
)


def image_by_name(name: str) -> Image | None:
    return next((i for i in IMAGES if i.name == name), None)


def image_by_id(image_id: str) -> Image | None:
    return next((i for i in IMAGES if i.id == image_id), None)


def profile_size(profile: Any) -> dict[str, int]:
    """What one instance of ``profile`` counts against the quotas: vcpu, memory_gb, gpus.

    From IBM's GPU table, else from the name (``bx2-2x8``: 2 vCPU, 8 GB), as IBM names profiles.
    """
    spec = GPU_PROFILES.get(str(profile))
    if spec is not None:
        return {"vcpu": spec["vcpu"], "memory_gb": spec["memory_gib"], "gpus": spec["gpu_count"]}
    try:
        vcpu, memory = str(profile).split("-")[1].split("x")[:2]
        return {"vcpu": int(vcpu), "memory_gb": int(memory), "gpus": 0}
    except (IndexError, ValueError):
        return {"vcpu": 0, "memory_gb": 0, "gpus": 0}


def nic_ids(attrs: dict[str, Any]) -> set[str]:
    """The ids of an instance's network interfaces (primary and others)."""
    nics = list(attrs.get("primary_network_interface") or []) + list(attrs.get("network_interfaces") or [])
    return {str(n["id"]) for n in nics if isinstance(n, dict) and n.get("id")}


def delete_instance(inventory: Inventory, instance_id: str) -> list[str]:
    """Delete an instance as the VPC API does, releasing every binding; returns the ids removed.

    Its boot volume goes with it when ``auto_delete_volume`` (else it stays, detached); a reserved
    IP bound to one of its network interfaces is unbound, and deleted when its ``auto_delete`` is
    true; a floating IP bound to one is unbound ("Any floating IPs associated with instance network
    interfaces are implicitly disassociated", ibm-vpc ``VpcV1.delete_instance``; a reserved IP's
    ``auto_delete``: "deleted when either target is deleted, or the reserved IP is unbound").
    """
    record = inventory.get(instance_id)
    if record is None:
        return []
    removed = [instance_id]
    nics = nic_ids(record["attrs"])
    for vol in inventory.list(kind="boot_volume"):
        if vol["attrs"].get("instance_id") == instance_id:
            if vol["attrs"].get("auto_delete_volume", True):
                inventory.remove(vol["id"])
                removed.append(vol["id"])
            else:
                inventory.update_attrs(vol["id"], instance_id="")
    for kind in ("ibm_is_subnet_reserved_ip", "ibm_is_floating_ip"):
        for bound in inventory.list(kind=kind):
            if bound["attrs"].get("target") not in nics:
                continue
            if kind == "ibm_is_subnet_reserved_ip" and bound["attrs"].get("auto_delete"):
                inventory.remove(bound["id"])
                removed.append(bound["id"])
            else:
                inventory.update_attrs(bound["id"], target="")
    inventory.remove(instance_id)
    return removed


class VpcApiError(Exception):
    """A refused VPC API call, rendered like the provider reports it (``<Call> failed: ...``)."""

    def __init__(self, call: str, status: int, code: str, message: str) -> None:
        self.call, self.status, self.code, self.message = call, status, code, message
        super().__init__(f"{call} failed: {message} (status {status}, code {code})")


def _known(value: Any) -> bool:
    return value is not None and UNKNOWN not in str(value)


def _is_address_or_cidr(text: str) -> bool:
    for parse in (ipaddress.ip_address, lambda t: ipaddress.ip_network(t, strict=False)):
        try:
            parse(text)
            return True
        except ValueError:
            continue
    return False


class VpcRules:
    """The account's view for create checks: live resources, the region's zones, its quotas."""

    def __init__(
        self,
        inventory: Inventory,
        region: str,
        quotas: Quotas = DEFAULT_QUOTAS,
        faults: FaultSet | None = None,
    ) -> None:
        self.inventory = inventory
        self.region = region
        self.quotas = quotas
        self.faults = faults or FaultSet()
        self.lock = threading.Lock()  # a quota check and its create are one step

    def check_create(self, rtype: str, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        check = getattr(self, f"_check_{rtype.removeprefix('ibm_is_')}", None)
        if check is not None:
            check(cfg, warn)

    # per resource type ---------------------------------------------------------------------------
    def _zone(self, call: str, zone: Any) -> None:
        if _known(zone) and zone not in zones_of(self.region):
            raise VpcApiError(
                call,
                404,
                "zone_not_found",
                f"Zone '{zone}' not found in region {self.region}; its zones are "
                f"{', '.join(zones_of(self.region))}.",
            )

    def _check_public_gateway(self, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        self._zone("CreatePublicGatewayWithContext", cfg.get("zone"))

    def _check_subnet(self, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        self._zone("CreateSubnetWithContext", cfg.get("zone"))
        count = cfg.get("total_ipv4_address_count")
        if count is None or not _known(count):
            return
        n = int(count)
        if n < 8 or n > 16384 or n & (n - 1):
            raise VpcApiError(
                "CreateSubnetWithContext",
                400,
                "validation_invalid_argument",
                f"total_ipv4_address_count {n} is invalid: it must be a power of 2 from 8 to 16384 "
                "(the size of the zone's automatic address prefix, a /18).",
            )

    def _check_ssh_key(self, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        key = str(cfg.get("public_key", ""))
        declared = str(cfg.get("type") or "rsa")  # the API's default when type is unset
        parts = key.split()
        try:
            blob = base64.b64decode(parts[1], validate=True)
            embedded = blob[4 : 4 + int.from_bytes(blob[:4], "big")].decode()
        except (IndexError, ValueError, UnicodeDecodeError):
            raise VpcApiError(
                "CreateKeyWithContext", 400, "key_invalid", "The public key is not a valid OpenSSH key."
            ) from None
        actual = {"ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}.get(embedded)
        if actual is None or parts[0] != embedded:
            raise VpcApiError(
                "CreateKeyWithContext",
                400,
                "key_invalid",
                f"The public key type '{parts[0]}' is not supported; use ssh-rsa or ssh-ed25519.",
            )
        if actual != declared:
            raise VpcApiError(
                "CreateKeyWithContext",
                400,
                "key_type_mismatch",
                f"public key provided is not of type {declared}",
            )

    def _security_group_ids(self) -> set[str]:
        ids = {r["id"] for r in self.inventory.list("ibm_is_security_group")}
        ids |= {r["attrs"].get("default_security_group") for r in self.inventory.list("ibm_is_vpc")}
        return ids

    def _check_security_group_rule(self, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        call = "CreateSecurityGroupRuleWithContext"
        group = cfg.get("group")
        if _known(group) and group not in self._security_group_ids():
            raise VpcApiError(call, 404, "security_group_not_found", f"Security group {group} not found.")
        remote = cfg.get("remote")
        # neither an address nor a CIDR: the provider looks the remote up as a security group id
        if (
            _known(remote)
            and remote
            and not _is_address_or_cidr(str(remote))
            and remote not in self._security_group_ids()
        ):
            raise VpcApiError(
                call,
                404,
                "security_group_not_found",
                f"[ERROR] Invalid remote provided ({remote}): security group not found",
            )
        for block in [cfg, *(cfg.get(p, [{}])[0] for p in ("tcp", "udp") if cfg.get(p))]:
            low, high = block.get("port_min"), block.get("port_max")
            if _known(low) and _known(high) and int(low) > int(high):
                raise VpcApiError(
                    call,
                    400,
                    "validation_invalid_argument",
                    f"port_min {low} must be less than or equal to port_max {high}.",
                )
        icmp = cfg.get("icmp", [{}])[0] if cfg.get("icmp") else cfg
        if (cfg.get("protocol") == "icmp" or cfg.get("icmp")) and "code" in icmp and "type" not in icmp:
            raise VpcApiError(call, 400, "validation_invalid_argument", "icmp code requires icmp type")

    def _check_instance(self, cfg: dict[str, Any], warn: Callable[[str], None]) -> None:
        call = "CreateInstanceWithContext"
        zone, profile = cfg.get("zone"), str(cfg.get("profile", ""))
        self._zone(call, zone)
        spec = GPU_PROFILES.get(profile)
        if spec is None and not OTHER_PROFILE.match(profile):
            raise VpcApiError(
                call, 404, "instance_profile_not_found", f"Instance profile {profile} not found."
            )
        offered = spec is None or zone in spec["zones"]
        if _known(zone) and (not offered or profile_not_offered(self.faults, self.region, zone, profile)):
            raise VpcApiError(
                call,
                400,
                "instance_profile_not_available",
                f"Instance profile {profile} is not available in zone {zone}.",
            )
        image_id = cfg.get("image")
        if _known(image_id) and image_id:
            image = image_by_id(str(image_id))
            if image is None:
                raise VpcApiError(call, 404, "image_not_found", f"Image {image_id} not found.")
            if image.status == "obsolete":
                raise VpcApiError(
                    call,
                    400,
                    "image_obsolete",
                    f"Image {image.name} ({image.id}) is obsolete and cannot be used to create an "
                    "instance; use a newer image of the family.",
                )
            if image.status == "deprecated":
                warn(f"Warning: image {image.name} is deprecated and soon will be obsolete.")
        # Every live instance of the region counts, whatever its status or workspace.
        used = {"vcpu": 0, "memory_gb": 0, "gpus": 0}
        for live in self.inventory.list("ibm_is_instance"):
            for key, n in profile_size(live["attrs"].get("profile")).items():
                used[key] += n
        over = self.quotas.over(used, profile_size(profile))
        if over:
            name, _, allocated, requested, quota = over[0]
            raise VpcApiError(call, 400, "over_quota", over_quota_message(name, allocated, requested, quota))

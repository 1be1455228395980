"""The IBM Cloud provider as the sandbox's Terraform runner sees it (``sandbox.terraform.provider``).

It does what ``terraform-provider-ibm`` and the APIs behind it do for the resource types the
project's template uses: the schema checks (``provider_schema.py``), IAM's answer to each create
(the caller's policies, ``api_key_access.py``; a policy's roles and rule, ``cos_access.py``), the
VPC API's refusals and quotas (``vpc_rules.py``), zones without capacity (``capacity.py``), the
attributes IBM computes, and the records of the emulated cloud (:class:`~sandbox.inventory.Inventory`),
with a simulated server per ``ibm_is_instance`` (``launcher.py``).

Faults (``sandbox.faults``): ``plan_fails`` fails the provider's configuration (plan, and apply,
which plans first); ``apply_fails_midway`` fails a create once the state holds some objects
(option ``after``, default half of what the apply declares), the state keeping what exists;
``destroy_fails_once`` (``faults.take``) fails a destroy partway once; ``no_capacity`` makes
instances fail to start in some zones: the instance is created, ``failed``, and the provider
reports it, so the runner keeps it tainted (``resource_ibm_is_instance.go``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.faults import FaultSet
from sandbox.ibm.api_key_access import ApiKeyAccess, forbidden_message
from sandbox.ibm.capacity import Quotas, capacity_failure
from sandbox.ibm.cos_access import invalid_roles, rule_problems, terraform_rule
from sandbox.ibm.provider_schema import schema_errors
from sandbox.ibm.vpc_rules import (
    DEFAULT_QUOTAS,
    IMAGES,
    UNKNOWN,
    Image,
    VpcApiError,
    VpcRules,
    delete_instance,
    image_by_name,
    nic_ids,
    profile_size,
)
from sandbox.inventory import Inventory
from sandbox.terraform.provider import Changes, Created, Job, ProviderError

if TYPE_CHECKING:
    from sandbox.ibm.launcher import ServerLauncher


class IbmProvider:
    """``terraform-provider-ibm`` against the sandbox's cloud; thread-safe (the Inventory and the
    FaultSet are, and the quota check and its create hold one lock)."""

    def __init__(
        self,
        *,
        inventory: Inventory,
        faults: FaultSet,
        launcher: ServerLauncher | None = None,
        resource_delay_s: float = 0.05,
        region: str = "us-south",
        quotas: Quotas = DEFAULT_QUOTAS,
        api_key_access: ApiKeyAccess | None = None,
        caller_iam_id: str = "",
    ) -> None:
        self.inventory = inventory
        self.faults = faults
        self.launcher = launcher
        self.resource_delay_s = resource_delay_s
        self.region = region
        self.rules = VpcRules(inventory, region, quotas, faults)
        # The identity jobs run as (Schematics passes the caller's token): creates need its policies.
        self.api_key_access = api_key_access
        self.caller_iam_id = caller_iam_id

    def configure(self, job: Job) -> _Session:
        if job.command in ("plan", "apply") and self.faults.active("plan_fails"):
            raise ProviderError(
                "Invalid provider configuration: failed to query available provider packages "
                "(sandbox fault plan_fails)"
            )
        return _Session(self, job)


class _Session:
    """The provider for one Terraform command."""

    def __init__(self, provider: IbmProvider, job: Job) -> None:
        self.p = provider
        self.job = job
        self.deleted = 0
        self.fail_deletes_after: int | None = None
        if job.command == "destroy" and job.resources() and self.p.faults.take("destroy_fails_once"):
            self.fail_deletes_after = self.p.faults.options("destroy_fails_once").get("after")
            if self.fail_deletes_after is None:
                self.fail_deletes_after = max(1, len(job.resources()) // 2)

    # plan ------------------------------------------------------------------------------------------
    def validate(self, rtype: str, config: dict[str, Any]) -> list[str]:
        return schema_errors(rtype, config)

    def plan(self, rtype: str, config: dict[str, Any], index: int | None) -> dict[str, Any]:
        return {**config, **_computed(rtype, config, UNKNOWN, index, self.p.region)}

    def read_data(self, rtype: str, config: dict[str, Any], *, warn: Callable[[str], None]) -> dict[str, Any]:
        seed = f"{rtype}:{sorted((k, str(v)) for k, v in config.items())}"
        out = dict(config)
        out["id"] = f"r006-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
        if rtype == "ibm_is_image":
            # data_source_ibm_is_image.go: the first image of that name, or an error at plan
            image = image_by_name(str(config.get("name", "")))
            if image is None:
                raise ProviderError(f"No image found with name: {config.get('name', '')}")
            out.update(_image_attrs(image, self.p.region))
            if image.status == "deprecated":
                warn(f"Warning: Given image {image.name} is deprecated and soon will be obsolete.")
        elif rtype == "ibm_is_images":
            # data_source_ibm_is_images.go: filters name, status, visibility (public only here)
            out["images"] = [
                _image_attrs(i, self.p.region)
                for i in IMAGES
                if config.get("name") in (None, i.name)
                and config.get("status") in (None, i.status)
                and config.get("visibility") in (None, "public")
            ]
        return out

    # apply -----------------------------------------------------------------------------------------
    def create(self, rtype: str, address: str, index: int | None, config: dict[str, Any]) -> Created:
        self._fail_midway(address, config)
        self._authorize(rtype, address, config)
        cfg, inventory, region = config, self.p.inventory, self.p.region
        rid = _new_id(rtype)
        attrs = {**cfg, **_computed(rtype, cfg, rid, index, region)}
        tags = [str(t) for t in cfg.get("tags", [])] if isinstance(cfg.get("tags"), list) else []
        name = str(cfg.get("name") or address)
        if rtype == "ibm_is_subnet_reserved_ip":
            attrs["address"] = self._reserve_address(cfg)
        reserved = self._reserved_ip_to_bind(cfg, attrs) if rtype == "ibm_is_instance" else None
        record_attrs = {k: v for k, v in attrs.items() if k not in {"id", "tags"}}
        record_attrs["tf_address"] = address
        if rtype == "ibm_is_instance":
            nic = attrs["primary_network_interface"][0]
            record_attrs.update(
                primary_ip=nic["primary_ipv4_address"],
                subnet=nic.get("subnet"),
                trusted_profile_id=cfg.get("default_trusted_profile_target"),
                user_data=cfg.get("user_data", ""),
                vpc=cfg.get("vpc"),
                zone=cfg.get("zone"),
                profile=cfg.get("profile"),
                status="running",
            )
        with self.p.rules.lock:  # the quota check and the create are one step
            try:
                self.p.rules.check_create(rtype, cfg, self.job.log)
            except VpcApiError as exc:
                raise ProviderError(f"{exc} (with {address})") from exc
            reason = self._start_failure(rtype, cfg)
            if reason is not None:
                # the create is accepted, then the instance fails to start (the provider taints it)
                record_attrs.update(status="failed", status_reasons=[reason])
                attrs.update(status="failed", status_reasons=[reason])
            record = inventory.add(
                rtype,
                name,
                tags=tags,
                workspace_id=self.job.workspace_id,
                attrs=record_attrs,
                resource_id=rid,
            )
        changes: Changes = {}
        if reserved is not None:  # the instance exists: its network interface holds the address
            nic_id = attrs["primary_network_interface"][0]["id"]
            for handle in reserved.get("inventory_ids") or []:
                inventory.update_attrs(handle, target=nic_id)
                changes[handle] = {"target": nic_id}
        handles = [record["id"]]
        if rtype == "ibm_is_instance":
            boot = attrs["boot_volume"][0]
            vol = inventory.add(
                "boot_volume",
                str(boot.get("name") or f"{name}-boot"),
                tags=[str(t) for t in boot.get("tags", [])],
                workspace_id=self.job.workspace_id,
                attrs={
                    "instance_id": rid,
                    "profile": "general-purpose",
                    "capacity": boot.get("size", 100),
                    "auto_delete_volume": boot.get("auto_delete_volume", True),
                },
                resource_id=boot["volume_id"],
            )
            handles.append(vol["id"])
        if self.p.resource_delay_s:
            time.sleep(self.p.resource_delay_s)
        made = Created(id=attrs["id"], attrs=attrs, handles=handles, changes=changes)
        if reason is not None:
            made.error = (
                # the provider's message, on one line: the reason is what a summary must show
                f"[ERROR] Instance ({rid}) went into failed state during the operation "
                f"({json.dumps([reason])}) [WARNING] Running terraform apply again will remove "
                "the tainted instance and attempt to create the instance again replacing the previous "
                f"configuration (with {address}, zone {cfg.get('zone')}, profile {cfg.get('profile')}; "
                "sandbox fault no_capacity)"
            )
        elif rtype == "ibm_is_instance" and self.p.launcher is not None:
            try:
                self.p.launcher.start(record, str(cfg.get("user_data", "")))
            except Exception as exc:  # a broken boot must not break the apply, as on a real VM
                self.job.log(f"{address}: Warning: the simulated server did not start: {exc}")
        return made

    def _fail_midway(self, address: str, cfg: dict[str, Any]) -> None:
        """The fault ``apply_fails_midway``: counted with what earlier applies left, so that while the
        fault lasts every apply (a retry too) fails at the same point, as a zone without capacity would."""
        if not self.p.faults.active("apply_fails_midway"):
            return
        after = self.p.faults.options("apply_fails_midway").get("after")
        if after is None:
            after = max(1, (self.job.planned() + 1) // 2)
        if len(self.job.resources()) >= int(after):
            raise ProviderError(
                f"creating {address}: the requested capacity is not available in zone "
                f"{cfg.get('zone', self.p.region)} (sandbox fault apply_fails_midway)"
            )

    def _authorize(self, rtype: str, address: str, cfg: dict) -> None:
        """IAM's answer to a create: the caller's policies (api_key_access.py), a policy's roles."""
        if self.p.api_key_access is not None:
            need = self.p.api_key_access.denied(rtype)
            if need is not None:
                message = forbidden_message(rtype, need, self.p.caller_iam_id)
                raise ProviderError(f"creating {address}: {message}")
        if rtype == "ibm_iam_trusted_profile_policy":
            unknown = invalid_roles(cfg.get("roles") or [])
            if unknown:
                raise ProviderError(
                    f"creating {address}: [ERROR] Error creating trusted profile policy: Request failed with "
                    f"status code: 400, ServerErrorResponse: invalid role name(s) {unknown} for service "
                    f"cloud-object-storage"
                )
            problems = rule_problems(terraform_rule(cfg))
            if problems:
                raise ProviderError(
                    f"creating {address}: [ERROR] Error creating trusted profile policy: Request failed with "
                    f"status code: 400, ServerErrorResponse: invalid policy rule: {'; '.join(problems)}"
                )

    def _start_failure(self, rtype: str, cfg: dict[str, Any]) -> dict[str, str] | None:
        """The status reason a new instance fails to start with (no capacity), or None."""
        if rtype != "ibm_is_instance":
            return None
        zone, profile = cfg.get("zone"), cfg.get("profile")
        running_here = sum(
            1
            for r in self.p.inventory.list("ibm_is_instance")
            if r["attrs"].get("zone") == zone
            and r["attrs"].get("profile") == profile
            and r["attrs"].get("status") != "failed"
        )
        try:
            return capacity_failure(self.p.faults, self.p.region, zone, profile, running_here)
        except ValueError as exc:
            raise ProviderError(f"sandbox fault {exc}") from exc

    # refresh and destroy ---------------------------------------------------------------------------
    def exists(self, entry: dict[str, Any]) -> bool:
        ids = entry.get("inventory_ids") or []
        return not ids or self.p.inventory.get(ids[0]) is not None

    def delete(self, entry: dict[str, Any]) -> Changes:
        if self.fail_deletes_after is not None and self.deleted >= int(self.fail_deletes_after):
            raise ProviderError(
                f"deleting {entry['address']} ({entry['id']}): the resource is in use by another "
                "resource, try again later (sandbox fault destroy_fails_once)"
            )
        inventory = self.p.inventory
        handles = entry.get("inventory_ids") or []
        changes: Changes = {}
        if entry["type"] == "ibm_is_instance":
            if self.p.launcher is not None:
                try:
                    self.p.launcher.stop(handles[0])
                except Exception as exc:
                    self.job.log(f"{entry['address']}: Warning: stopping the simulated server failed: {exc}")
            # The VPC API's delete releases what was bound to the instance; the state follows.
            nics = nic_ids(entry["attrs"])
            bound = [
                r["id"]
                for kind in ("ibm_is_subnet_reserved_ip", "ibm_is_floating_ip")
                for r in inventory.list(kind=kind)
                if r["attrs"].get("target") in nics
            ]
            gone = set(delete_instance(inventory, handles[0]))
            changes = {rid: None if rid in gone else {"target": ""} for rid in bound}
        for rid in handles:
            inventory.remove(rid)
        if self.p.resource_delay_s:
            time.sleep(self.p.resource_delay_s)
        self.deleted += 1
        return changes

    # subnet reserved IPs ---------------------------------------------------------------------------
    def _subnet_cidr(self, subnet_id: str) -> str:
        for entry in self.job.resources():
            if entry["type"] == "ibm_is_subnet" and entry["attrs"].get("id") == subnet_id:
                return str(entry["attrs"].get("ipv4_cidr_block") or "10.240.0.0/24")
        raise ProviderError(f"creating a reserved IP: subnet {subnet_id!r} not found")

    def _reserve_address(self, cfg: dict[str, Any]) -> str:
        """The address a new reserved IP gets, with the checks the VPC API makes.

        IBM keeps the first four and the last address of every subnet; an unbound reserved IP must
        have ``auto_delete`` false; an explicit ``address`` must be free and inside the subnet.
        """
        name = str(cfg.get("name") or "")
        if name and (not _RESERVED_IP_NAME.match(name) or len(name) > 63 or name.startswith("ibm-")):
            raise ProviderError(
                f"invalid reserved IP name {name!r}: 1-63 characters of [a-z0-9-], starting with a letter, "
                "not ending with '-', and not starting with 'ibm-'"
            )
        if cfg.get("auto_delete") and not cfg.get("target"):
            raise ProviderError("reserved IP: auto_delete must be false if the reserved IP is unbound")
        subnet = str(cfg.get("subnet") or "")
        network = ipaddress.ip_network(self._subnet_cidr(subnet))
        hosts = list(network)
        provider_reserved = {str(a) for a in hosts[:4] + hosts[-1:]}
        used = set()
        for entry in self.job.resources():
            attrs = entry["attrs"]
            if entry["type"] == "ibm_is_subnet_reserved_ip" and attrs.get("subnet") == subnet:
                used.add(str(attrs.get("address")))
            if entry["type"] == "ibm_is_instance":
                nic = (attrs.get("primary_network_interface") or [{}])[0]
                if nic.get("subnet") == subnet:
                    used.add(str(nic.get("primary_ipv4_address")))
        wanted = cfg.get("address")
        if wanted:
            if ipaddress.ip_address(str(wanted)) not in network or str(wanted) in provider_reserved:
                raise ProviderError(f"reserved IP address {wanted} is not available in subnet {network}")
            if str(wanted) in used:
                raise ProviderError(f"reserved IP address {wanted} is already reserved in subnet {network}")
            return str(wanted)
        for address in map(str, hosts):
            if address not in provider_reserved and address not in used:
                return address
        raise ProviderError(f"subnet {network} has no free address left for a reserved IP")

    def _reserved_ip_to_bind(self, cfg: dict[str, Any], attrs: dict[str, Any]) -> dict | None:
        """The reserved IP an instance's primary_ip names (its state entry), checked as the VPC API
        checks it; the instance's network interface gets its address; :meth:`create` binds it once the
        instance exists. None when the instance names no reserved IP."""
        configured = (cfg.get("primary_network_interface") or [{}])[0]
        wanted = ((configured.get("primary_ip") or [{}])[0] or {}).get("reserved_ip")
        if not wanted:
            return None
        nic = attrs["primary_network_interface"][0]
        for entry in self.job.resources():
            if entry["type"] == "ibm_is_subnet_reserved_ip" and entry["attrs"].get("reserved_ip") == wanted:
                reserved = entry["attrs"]
                live = self.p.inventory.get((entry.get("inventory_ids") or [""])[0])
                # the cloud's binding (a refresh reads it), the state's only when the cloud has no record
                target = live["attrs"].get("target") if live is not None else reserved.get("target")
                if target:
                    raise ProviderError(f"reserved IP {wanted} is already bound to {target}")
                if reserved.get("subnet") != nic.get("subnet"):
                    raise ProviderError(f"reserved IP {wanted} is not in the network interface's subnet")
                nic["primary_ip"] = [{"address": reserved["address"], "reserved_ip": wanted}]
                nic["primary_ipv4_address"] = reserved["address"]
                return entry
        raise ProviderError(f"primary_ip.reserved_ip {wanted!r}: no such reserved IP")


# ibm_is_subnet_reserved_ip name rule (provider: resource_ibm_is_subnet_reserved_ip.go,
# isReservedIPName) and the "ibm-" prefix the API keeps for provider-owned resources.
_RESERVED_IP_NAME = re.compile(r"^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$")


# -- attributes IBM computes ---------------------------------------------------------------------


def _fake_ip(seed: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, seed).bytes
    return f"150.240.{digest[0]}.{max(digest[1], 1)}"


def _computed(rtype: str, cfg: dict[str, Any], rid: str, index: int | None, region: str) -> dict[str, Any]:
    """Attributes the IBM provider returns after create, for the resource types used here."""
    i = index or 0
    crn_kind = rtype.removeprefix("ibm_is_").replace("_", "-")
    out: dict[str, Any] = {
        "id": rid,
        "crn": f"crn:v1:bluemix:public:is:{region}:a/sandbox0account::{crn_kind}:{rid}",
    }
    if rtype == "ibm_is_vpc":
        out.update(
            default_security_group=f"r006-sg-{rid[-12:]}",
            default_network_acl=f"r006-acl-{rid[-12:]}",
            default_routing_table=f"r006-rt-{rid[-12:]}",
            status="available",
        )
    elif rtype == "ibm_is_subnet":
        out.update(ipv4_cidr_block=cfg.get("ipv4_cidr_block") or "10.240.0.0/24", status="available")
    elif rtype == "ibm_is_public_gateway":
        out.update(
            floating_ip=[{"address": _fake_ip(rid), "id": f"r006-fip-{rid[-12:]}"}], status="available"
        )
    elif rtype == "ibm_is_security_group_rule":
        out.update(rule_id=rid, id=f"{cfg.get('group', 'sg')}.{rid}")
    elif rtype == "ibm_is_floating_ip":
        out.update(address=_fake_ip(rid), status="available")
    elif rtype == "ibm_is_ssh_key":
        out.update(
            fingerprint="SHA256:" + base64.b64encode(uuid.uuid5(uuid.NAMESPACE_URL, rid).bytes).decode()
        )
    elif rtype == "ibm_is_instance":
        address = f"10.240.0.{4 + i}"
        nics = cfg.get("primary_network_interface") or [{}]
        nic = dict(nics[0])
        configured = ((nic.get("primary_ip") or [{}])[0] or {}).get("reserved_ip")
        nic.update(
            id=f"0717-{rid[-12:]}-nic0",
            primary_ip=[{"address": address, "reserved_ip": configured or f"0717-{rid[-12:]}-ip0"}],
            primary_ipv4_address=address,
        )
        boot = dict((cfg.get("boot_volume") or [{}])[0])
        boot.setdefault("volume_id", f"r006-vol-{rid[-12:]}")
        out.update(
            primary_network_interface=[nic, *nics[1:]],
            boot_volume=[boot],
            status="running",
            vcpu=[{"count": profile_size(cfg.get("profile"))["vcpu"]}],
            memory=profile_size(cfg.get("profile"))["memory_gb"],
        )
    elif rtype == "ibm_is_subnet_reserved_ip":
        # id is "<subnet id>/<reserved ip id>" (provider docs); the address is set by _create
        out.update(
            id=f"{cfg.get('subnet', '')}/{rid}",
            reserved_ip=rid,
            address=cfg.get("address") or UNKNOWN,
            auto_delete=bool(cfg.get("auto_delete", False)),
            lifecycle_state="stable",
            owner="user",
            resource_type="subnet_reserved_ip",
            target=cfg.get("target") or "",
        )
    elif rtype == "ibm_iam_trusted_profile":
        out.update(
            id=rid,
            profile_id=rid,
            iam_id=f"iam-{rid}",
            crn=f"crn:v1:bluemix:public:iam-identity::a/sandbox0account::profile:{rid}",
        )
    elif rtype == "ibm_iam_trusted_profile_policy":
        profile = cfg.get("profile_id") or str(cfg.get("iam_id") or "").removeprefix("iam-")
        out.update(id=f"{profile}/{rid}", policy_id=rid)
    return out


def _image_attrs(image: Image, region: str) -> dict[str, Any]:
    return {
        "id": image.id,
        "name": image.name,
        "crn": f"crn:v1:bluemix:public:is:{region}:a/811f8abfbd32425597dc7ba40da98fa6::image:{image.id}",
        "status": image.status,
        "visibility": "public",
        "architecture": image.architecture,
        "os": image.os,
    }


_INVENTORY_ID_PREFIX = {
    "ibm_iam_trusted_profile": "Profile-",
    "ibm_iam_trusted_profile_policy": "",
    "ibm_is_instance": "0717_",
}


def _new_id(rtype: str) -> str:
    if rtype in _INVENTORY_ID_PREFIX:
        return f"{_INVENTORY_ID_PREFIX[rtype]}{uuid.uuid4()}"
    return f"r006-{uuid.uuid4()}"

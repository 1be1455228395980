"""VPC API: what is live, as ``ibm_vpc.VpcV1`` lists it (the leak check's view), and the deletes the
reaper sends (see "Deletes" below).

Built from inventory records. Terraform kinds map to collections: ``ibm_is_instance`` ->
``/instances``, ``boot_volume`` -> ``/volumes``, ``ibm_is_floating_ip`` -> ``/floating_ips``,
``ibm_is_public_gateway`` -> ``/public_gateways``, ``ibm_is_vpc`` -> ``/vpcs``, ``ibm_is_subnet`` ->
``/subnets``, ``ibm_is_security_group`` -> ``/security_groups``, ``ibm_is_ssh_key`` -> ``/keys``.
Each resource carries every property the SDK's ``from_dict`` requires; values the engine did not
record get plausible defaults. ``version`` and ``generation`` query parameters are required, as
on the real API; pagination uses ``limit``/``start`` with ``first``/``next`` links and
``total_count``.

Deletes, with the VPC API's status codes (IBM Cloud VPC API reference, "Delete a ..." of each
collection; the preconditions are the ones the ``ibm_vpc`` SDK's docstrings quote from it): 204 for
instances, floating IPs, public gateways, security groups and keys; 202 (accepted, deleting) for
subnets, VPCs and volumes; 404 ``not_found`` for an unknown id; 409 when a precondition fails: a
public gateway attached to a subnet, a subnet an instance uses, a security group an instance uses, a
volume attached to an instance, a VPC that still has instances, subnets or public gateways.
Deleting an instance deletes its boot volume (``delete_volume_on_instance_delete``), unbinds its
reserved and floating IPs (``sandbox.ibm.vpc_rules.delete_instance``) and stops its simulated server;
deleting a security group deletes its rules; deleting a VPC deletes its security groups (the API
deletes "all security groups and network ACLs associated with the VPC").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.ibm.errors import json_response
from sandbox.ibm.iam import TokenAuthority
from sandbox.ibm.vpc_catalog import render_profile, render_zone, zone_of, zones_of
from sandbox.ibm.vpc_rules import IMAGES, Image, delete_instance
from sandbox.ibm.wsgi import ApiError, Rule, VpcStyleApp
from sandbox.inventory import Inventory

COLLECTIONS = {
    "instances": "ibm_is_instance",
    "volumes": "boot_volume",
    "floating_ips": "ibm_is_floating_ip",
    "public_gateways": "ibm_is_public_gateway",
    "vpcs": "ibm_is_vpc",
    "subnets": "ibm_is_subnet",
    "security_groups": "ibm_is_security_group",
    "keys": "ibm_is_ssh_key",
}
RESOURCE_TYPES = {
    "instances": "instance",
    "volumes": "volume",
    "floating_ips": "floating_ip",
    "public_gateways": "public_gateway",
    "vpcs": "vpc",
    "subnets": "subnet",
    "security_groups": "security_group",
    "keys": "key",
}
DEFAULT_RG = "sandbox0resourcegroup0000000000"


class VpcApp(VpcStyleApp):
    service = "vpc"
    auth = True
    strict_slashes = False
    rules = [
        Rule(path, endpoint=endpoint, defaults={"collection": c}, methods=[method])
        for c in COLLECTIONS
        for path, endpoint, method in (
            (f"/v1/{c}", "list", "GET"),
            (f"/v1/{c}/<rid>", "get", "GET"),
            (f"/v1/{c}/<rid>", "delete", "DELETE"),
        )
    ] + [
        Rule("/v1/images", endpoint="images", methods=["GET"]),
        Rule("/v1/images/<rid>", endpoint="images", methods=["GET"]),
        Rule("/v1/instance/profiles/<name>", endpoint="instance_profile", methods=["GET"]),
        Rule("/v1/regions/<region>/zones", endpoint="zones", methods=["GET"]),
        Rule("/v1/regions/<region>/zones/<zone>", endpoint="zones", methods=["GET"]),
    ]

    def __init__(
        self,
        authority: TokenAuthority,
        inventory: Inventory,
        on_instance_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self.authority = authority
        self.inventory = inventory
        # stops the simulated server of a deleted instance (the Terraform engine's launcher)
        self.on_instance_deleted = on_instance_deleted

    def before(self, request: Request, endpoint: str, claims: dict[str, Any], args: dict[str, Any]) -> None:
        if not request.args.get("version"):
            raise ApiError(400, "The version query parameter is required.", "missing_version")
        if request.args.get("generation") != "2":
            raise ApiError(400, "The generation query parameter must be 2.", "bad_generation")
        self.base = request.host_url.rstrip("/") + "/v1"

    def _record(self, collection: str, rid: str) -> dict[str, Any]:
        record = self.inventory.get(rid)
        if record is None or record["kind"] != COLLECTIONS[collection]:
            raise ApiError(404, f"{RESOURCE_TYPES[collection]} {rid} not found", "not_found")
        return record

    def ep_get(self, request: Request, claims: dict[str, Any], collection: str, rid: str) -> Response:
        return json_response(self.render(collection, self._record(collection, rid)))

    def ep_list(self, request: Request, claims: dict[str, Any], collection: str) -> Response:
        try:
            limit = int(request.args.get("limit", 50))
            start = int(request.args.get("start", 0) or 0)
        except ValueError:
            raise ApiError(400, "limit and start must be integers.", "bad_field") from None
        if not 1 <= limit <= 100:
            raise ApiError(400, "limit must be between 1 and 100.", "bad_field")
        records = sorted(self.inventory.list(kind=COLLECTIONS[collection]), key=lambda r: r["created_at"])
        items = [self.render(collection, r) for r in records]
        items = [i for i in items if self._matches(i, request.args)]
        href = f"{self.base}/{collection}"
        page = items[start : start + limit]
        body: dict[str, Any] = {
            collection: page,
            "limit": limit,
            "first": {"href": f"{href}?{urlencode({'limit': limit})}"},
            "total_count": len(items),
        }
        if start + limit < len(items):
            body["next"] = {"href": f"{href}?{urlencode({'limit': limit, 'start': start + limit})}"}
        return json_response(body)

    def ep_instance_profile(self, request: Request, claims: dict[str, Any], name: str) -> Response:
        """One instance profile of the region (sandbox/ibm/vpc_catalog.py)."""
        body = render_profile(self.base, name)
        if body is None:
            raise ApiError(404, f"Instance profile {name} not found.", "instance_profile_not_found")
        return json_response(body)

    def ep_zones(
        self, request: Request, claims: dict[str, Any], region: str, zone: str | None = None
    ) -> Response:
        """The region's zones with their universal (physical) names (sandbox/ibm/vpc_catalog.py)."""
        if region != self.inventory.region:
            raise ApiError(404, f"Region {region} not found.", "not_found")
        if zone is None:
            return json_response({"zones": [render_zone(self.base, region, z) for z in zones_of(region)]})
        if not zone_of(region, zone):
            raise ApiError(404, f"Zone {zone} not found.", "not_found")
        return json_response(render_zone(self.base, region, zone))

    def ep_images(self, request: Request, claims: dict[str, Any], rid: str | None = None) -> Response:
        """The stock image catalogue (``sandbox.ibm.vpc_rules.IMAGES``); filters name, status, visibility."""
        images = [self._render_image(i) for i in IMAGES]
        if rid is not None:
            found = [i for i in images if i["id"] == rid]
            if not found:
                raise ApiError(404, f"image {rid} not found", "not_found")
            return json_response(found[0])
        statuses = set(",".join(request.args.getlist("status")).split(",")) - {""}
        images = [
            i
            for i in images
            if request.args.get("name") in (None, i["name"])
            and (not statuses or i["status"] in statuses)
            and request.args.get("visibility") in (None, i["visibility"])
        ]
        href = f"{self.base}/images"
        return json_response(
            {"images": images, "limit": 50, "first": {"href": f"{href}?limit=50"}, "total_count": len(images)}
        )

    def _render_image(self, image: Image) -> dict[str, Any]:
        region = self.inventory.region
        version = image.os.split("-")[1:3]
        return {
            "allowed_use": {"api_version": "true", "bare_metal_server": "true", "instance": "true"},
            "catalog_offering": {"managed": False},
            "created_at": "2026-01-01T00:00:00Z",
            "crn": f"crn:v1:bluemix:public:is:{region}:a/811f8abfbd32425597dc7ba40da98fa6::image:{image.id}",
            "encryption": "none",
            "file": {},
            "href": f"{self.base}/images/{image.id}",
            "id": image.id,
            "name": image.name,
            "operating_system": {
                "allow_user_image_creation": True,
                "architecture": image.architecture,
                "dedicated_host_only": False,
                "display_name": f"Ubuntu Linux {'.'.join(version)} LTS ({image.architecture})",
                "family": "Ubuntu Linux",
                "href": f"{self.base}/operating_systems/{image.os}",
                "name": image.os,
                "user_data_format": "cloud_init",
                "vendor": "Canonical",
                "version": ".".join(version),
            },
            "resource_group": {
                "href": f"https://resource-controller.cloud.ibm.com/v2/resource_groups/{DEFAULT_RG}",
                "id": DEFAULT_RG,
                "name": "Default",
            },
            "resource_type": "image",
            "status": image.status,
            "status_reasons": [],
            "user_data_format": "cloud_init",
            "visibility": "public",
            "zones": [
                {"href": f"{self.base}/regions/{region}/zones/{z}", "name": z}
                for z in (zones_of(region) if image.status in ("available", "deprecated") else ())
            ],
        }

    # -- deletes ------------------------------------------------------------------------------
    DELETE_STATUS = {"subnets": 202, "vpcs": 202, "volumes": 202}

    def ep_delete(self, request: Request, claims: dict[str, Any], collection: str, rid: str) -> Response:
        record = self._record(collection, rid)
        in_use = self._in_use(collection, record)
        if in_use:
            raise ApiError(409, in_use, f"{RESOURCE_TYPES[collection]}_in_use")
        if collection == "instances":
            if self.on_instance_deleted is not None:
                self.on_instance_deleted(rid)
            delete_instance(self.inventory, rid)  # its boot volume, reserved and floating IPs
        if collection == "security_groups":
            self._remove_where("ibm_is_security_group_rule", "group", rid)
        if collection == "vpcs":
            for sg in self.inventory.list(kind="ibm_is_security_group"):
                if sg["attrs"].get("vpc") == rid:
                    self._remove_where("ibm_is_security_group_rule", "group", sg["id"])
                    self.inventory.remove(sg["id"])
        self.inventory.remove(rid)
        return Response(status=self.DELETE_STATUS.get(collection, 204))

    def _remove_where(self, kind: str, attr: str, value: str) -> None:
        for record in self.inventory.list(kind=kind):
            if record["attrs"].get(attr) == value:
                self.inventory.remove(record["id"])

    def _users(self, kind: str, test: Callable[[dict[str, Any]], bool]) -> list[str]:
        return [r["name"] for r in self.inventory.list(kind=kind) if test(r["attrs"])]

    def _in_use(self, collection: str, record: dict[str, Any]) -> str | None:
        """Why IBM would refuse to delete ``record`` now (409), or None."""
        rid, name = record["id"], record["name"]

        def nic_groups(attrs: dict[str, Any]) -> list[str]:
            nics = attrs.get("primary_network_interface") or [{}]
            return list((nics[0] or {}).get("security_groups") or [])

        checks: dict[str, list[tuple[str, str, Callable[[dict[str, Any]], bool]]]] = {
            "public_gateways": [("subnet", "ibm_is_subnet", lambda a: a.get("public_gateway") == rid)],
            "subnets": [("instance", "ibm_is_instance", lambda a: a.get("subnet") == rid)],
            "security_groups": [("instance", "ibm_is_instance", lambda a: rid in nic_groups(a))],
            "vpcs": [
                ("instance", "ibm_is_instance", lambda a: a.get("vpc") == rid),
                ("subnet", "ibm_is_subnet", lambda a: a.get("vpc") == rid),
                ("public gateway", "ibm_is_public_gateway", lambda a: a.get("vpc") == rid),
            ],
        }
        if collection == "volumes":
            owner = record["attrs"].get("instance_id")
            if owner and self.inventory.get(owner):
                return f"Volume {name} is attached to instance {owner}; delete or detach the instance first."
            return None
        for what, kind, test in checks.get(collection, []):
            users = self._users(kind, test)
            if users:
                return (
                    f"{RESOURCE_TYPES[collection]} {name} ({rid}) cannot be deleted: {what}(s) "
                    f"{', '.join(sorted(users))} still use it; delete them first."
                )
        return None

    @staticmethod
    def _matches(item: dict[str, Any], args: Any) -> bool:
        for param in ("name", "resource_group.id", "vpc.id", "vpc.crn", "vpc.name"):
            wanted = args.get(param)
            if wanted is None:
                continue
            obj: Any = item
            for part in param.split("."):
                obj = obj.get(part) if isinstance(obj, dict) else None
            if obj != wanted:
                return False
        return True

    # -- rendering --------------------------------------------------------------------------
    def _ref(self, kind: str, collection: str, rid: str | None, name: str | None = None) -> dict[str, Any]:
        """A reference to another resource (vpc, subnet ...), live or not."""
        rid = rid or f"r006-{hashlib.sha1(f'{kind}-none'.encode()).hexdigest()[:8]}"  # noqa: S324
        record = self.inventory.get(rid)
        return {
            "crn": record["crn"]
            if record
            else f"crn:v1:bluemix:public:is:{self.inventory.region}:a/"
            f"{self.inventory.account_id}::{RESOURCE_TYPES[collection]}:{rid}",
            "href": f"{self.base}/{collection}/{rid}",
            "id": rid,
            "name": (record or {}).get("name") or name or rid,
            "resource_type": RESOURCE_TYPES[collection],
        }

    def _common(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        rg = attrs.get("resource_group") or DEFAULT_RG
        return {
            "id": record["id"],
            "crn": record["crn"],
            "name": record["name"],
            "href": f"{self.base}/{collection}/{record['id']}",
            "created_at": record["created_at"],
            "resource_type": RESOURCE_TYPES[collection],
            "resource_group": {
                "href": f"https://resource-controller.cloud.ibm.com/v2/resource_groups/{rg}",
                "id": rg,
                "name": "Default",
            },
        }

    def _zone(self, attrs: dict[str, Any]) -> dict[str, Any]:
        zone = attrs.get("zone") or f"{self.inventory.region}-1"
        return {"href": f"{self.base}/regions/{self.inventory.region}/zones/{zone}", "name": zone}

    def render(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        return getattr(self, f"_render_{collection}")(collection, record)

    def _render_vpcs(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        out = self._common(collection, record)
        rid = record["id"]

        def ref(kind: str) -> dict[str, Any]:
            return {
                "crn": f"{record['crn']}-{kind}",
                "href": f"{self.base}/{kind}s/{rid}-{kind}",
                "id": f"{rid}-{kind}",
                "name": f"{record['name']}-default-{kind}",
            }

        out.update(
            classic_access=False,
            cse_source_ips=[],
            default_network_acl=ref("network_acl"),
            default_routing_table={**ref("routing_table"), "resource_type": "routing_table"},
            default_security_group=ref("security_group"),
            dns={
                "enable_hub": False,
                "resolution_binding_count": 0,
                "resolver": {"servers": [], "type": "system", "configuration": "default"},
            },
            health_reasons=[],
            health_state="ok",
            public_address_ranges=[],
            status="available",
        )
        return out

    def _render_subnets(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        total = int(attrs.get("total_ipv4_address_count") or 256)
        out.update(
            available_ipv4_address_count=total - 5,
            ip_version="ipv4",
            ipv4_cidr_block=attrs.get("ipv4_cidr_block") or "10.240.0.0/24",
            network_acl={
                "crn": "crn:acl",
                "href": f"{self.base}/network_acls/acl",
                "id": "acl",
                "name": "acl",
            },
            routing_table={
                "crn": "crn:rt",
                "href": f"{self.base}/routing_tables/rt",
                "id": "rt",
                "name": "rt",
                "resource_type": "routing_table",
            },
            status="available",
            total_ipv4_address_count=total,
            vpc=self._ref("vpc", "vpcs", attrs.get("vpc")),
            zone=self._zone(attrs),
        )
        if attrs.get("public_gateway"):
            out["public_gateway"] = self._ref("pgw", "public_gateways", attrs["public_gateway"])
        return out

    def _render_public_gateways(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        out.update(
            floating_ip={
                "address": attrs.get("address") or "169.61.0.10",
                "crn": f"{record['crn']}-fip",
                "href": f"{self.base}/floating_ips/{record['id']}-fip",
                "id": f"{record['id']}-fip",
                "name": f"{record['name']}-fip",
            },
            status="available",
            vpc=self._ref("vpc", "vpcs", attrs.get("vpc")),
            zone=self._zone(attrs),
        )
        return out

    def _render_floating_ips(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        out.update(address=attrs.get("address") or "169.61.0.20", status="available", zone=self._zone(attrs))
        return out

    def _render_security_groups(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        out.update(rules=[], targets=[], vpc=self._ref("vpc", "vpcs", attrs.get("vpc")))
        return out

    def _render_keys(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        public_key = attrs.get("public_key") or "ssh-ed25519 AAAA sandbox"
        digest = hashlib.sha256(public_key.encode()).hexdigest()[:43]
        out.update(
            fingerprint=f"SHA256:{digest}",
            length=int(attrs.get("length") or 256),
            public_key=public_key,
            type=attrs.get("type") or "ed25519",
        )
        return out

    def _render_volumes(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        attachments = []
        if attrs.get("instance_id"):
            inst = self._ref("instance", "instances", attrs["instance_id"])
            inst.pop("resource_type")
            attachments.append(
                {
                    "delete_volume_on_instance_delete": True,
                    "href": f"{inst['href']}/volume_attachments/{record['id']}-att",
                    "id": f"{record['id']}-att",
                    "instance": inst,
                    "name": f"{record['name']}-att",
                    "type": "boot",
                }
            )
        out.update(
            active=bool(attachments),
            adjustable_capacity_states=[],
            adjustable_iops_states=[],
            attachment_state="attached" if attachments else "unattached",
            bandwidth=393,
            busy=False,
            capacity=int(attrs.get("capacity") or 100),
            user_tags=list(record.get("tags") or []),
            encryption="provider_managed",
            health_reasons=[],
            health_state="ok",
            iops=3000,
            profile={"href": f"{self.base}/volume/profiles/general-purpose", "name": "general-purpose"},
            software_attachments=[],
            status="available",
            status_reasons=[],
            storage_generation=1,
            volume_attachments=attachments,
            zone=self._zone(attrs),
        )
        return out

    def _render_instances(self, collection: str, record: dict[str, Any]) -> dict[str, Any]:
        attrs = record["attrs"]
        out = self._common(collection, record)
        profile = attrs.get("profile") or "gx3-16x80x1l4"
        subnet = self._ref("subnet", "subnets", attrs.get("subnet"))
        subnet_ref = dict(subnet)
        nic = {
            "href": f"{out['href']}/network_interfaces/{record['id']}-nic",
            "id": f"{record['id']}-nic",
            "name": "eth0",
            "primary_ip": {
                "address": attrs.get("primary_ip") or "10.240.0.4",
                "href": f"{self.base}/subnets/{subnet['id']}/reserved_ips/{record['id']}-ip",
                "id": f"{record['id']}-ip",
                "name": f"{record['name']}-ip",
                "resource_type": "subnet_reserved_ip",
            },
            "resource_type": "network_interface",
            "subnet": subnet_ref,
        }
        boot = [
            v
            for v in self.inventory.list(kind="boot_volume")
            if v["attrs"].get("instance_id") == record["id"]
        ]
        boot_att = {
            "href": f"{out['href']}/volume_attachments/{record['id']}-boot",
            "id": f"{record['id']}-boot",
            "name": f"{record['name']}-boot",
        }
        if boot:
            boot_att["volume"] = {
                "crn": boot[0]["crn"],
                "href": f"{self.base}/volumes/{boot[0]['id']}",
                "id": boot[0]["id"],
                "name": boot[0]["name"],
                "resource_type": "volume",
            }
        cpus, mem = 16, 80
        parts = profile.split("-")[-1].split("x") if "-" in profile else []
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            cpus, mem = int(parts[0]), int(parts[1])
        status = attrs.get("status") or "running"
        out.update(
            availability={"class": "standard"},
            availability_policy={"host_failure": "restart", "preemption": "stop"},
            bandwidth=4000,
            boot_volume_attachment=boot_att,
            cluster_network_attachments=[],
            confidential_compute_mode="disabled",
            disks=[],
            enable_secure_boot=False,
            health_reasons=[],
            health_state="ok",
            lifecycle_reasons=[],
            lifecycle_state="stable",
            memory=mem,
            metadata_service={
                "enabled": bool(attrs.get("metadata_service_enabled", True)),
                "protocol": "http",
                "response_hop_limit": 1,
            },
            network_attachments=[],
            network_interfaces=[nic],
            primary_network_interface=nic,
            profile={
                "href": f"{self.base}/instance/profiles/{profile}",
                "name": profile,
                "resource_type": "instance_profile",
            },
            reservation_affinity={"policy": "disabled", "pool": []},
            software_attachments=[],
            startable=True,
            status=status,
            status_reasons=attrs.get("status_reasons") or [],
            threads_per_core=2,
            total_network_bandwidth=16000,
            total_volume_bandwidth=4000,
            vcpu={"architecture": "amd64", "count": cpus, "manufacturer": "intel", "percentage": 100},
            volume_attachments=[boot_att],
            volume_bandwidth_qos_mode="pooled",
            vpc=self._ref("vpc", "vpcs", attrs.get("vpc")),
            zone=self._zone(attrs),
        )
        if attrs.get("image"):
            out["image"] = {
                "crn": f"crn:image:{attrs['image']}",
                "href": f"{self.base}/images/{attrs['image']}",
                "id": attrs["image"],
                "name": attrs.get("image_name") or attrs["image"],
                "resource_type": "image",
            }
        return out

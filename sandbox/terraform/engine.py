"""The sandbox's Terraform: plan, apply and destroy a root module against the Inventory.

The Schematics emulator runs one :class:`TerraformEngine` call per job (in a background thread)
with a :class:`TerraformRun` that carries the workspace's extracted template folder, its
variable store and the per-workspace ``state`` dict that the caller keeps between jobs.

What it does, in the order Terraform does it:

1. load every ``*.tf`` file (python-hcl2 through :mod:`sandbox.terraform.hcl`; unsupported
   constructs are errors);
2. resolve input variables: Schematics values are strings, converted per the declared ``type``
   (``"3"`` -> 3, ``"true"`` -> true, ``"[...]"``/``"{...}"`` parsed as HCL); defaults; every
   ``validation`` block is evaluated and a failure names the variable;
3. order resources and data sources by their references (``ibm_is_vpc.vpc.id``, locals,
   ``depends_on``), evaluate ``count`` and every argument (locals, functions, templates);
4. plan: count what would be added/destroyed compared with ``state``; apply: create each
   missing instance into the :class:`~sandbox.inventory.Inventory` (tags, ``workspace_id``,
   attributes), sleeping ``resource_delay_s`` each, starting a simulated server for each
   ``ibm_is_instance`` through the launcher; destroy: the reverse.

Faults (``sandbox.faults``): ``plan_fails`` fails plan (and apply, which plans first);
``apply_fails_midway`` creates some resources (option ``after``, default half) then fails, the
state keeping what exists; ``destroy_fails_once`` (``faults.take``) fails a destroy partway once;
``no_capacity`` makes instances fail to start in some zones (``sandbox/capacity.py``).

An instance that fails to start is kept in the state, *tainted*, as the IBM provider leaves it;
the next apply replaces it the way Terraform replaces a tainted resource: it destroys the old one
first, which releases what was bound to it (its reserved IP, its boot volume), then creates the new
one; with ``lifecycle { create_before_destroy = true }`` it creates the new one first.

State layout (JSON-serialisable)::

    {"resources": [{"address", "mode", "type", "name", "index", "id", "attrs", "inventory_ids"}],
     "outputs": {name: {"value", "type", "sensitive"}}, "serial": int}
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.api_key_access import forbidden_message
from sandbox.capacity import Quotas, capacity_failure
from sandbox.cos_access import invalid_roles, rule_problems, terraform_rule
from sandbox.faults import FaultSet
from sandbox.inventory import Inventory
from sandbox.terraform.config import (
    Attr,
    Body,
    ConfigError,
    Module,
    Resource,
    Variable,
    literal_string,
    load_module,
)
from sandbox.terraform.expr import (
    Evaluator,
    HclError,
    Scope,
    parse_expression,
    references,
    to_bool,
    to_number,
    to_string,
    type_name,
)
from sandbox.terraform.hcl import Call, ObjectExpr, TupleExpr, Var
from sandbox.terraform.provider_schema import schema_errors
from sandbox.vpc_rules import (
    DEFAULT_QUOTAS,
    IMAGES,
    Image,
    VpcApiError,
    VpcRules,
    delete_instance,
    image_by_name,
    nic_ids,
)

if TYPE_CHECKING:
    from sandbox.launcher import ServerLauncher

__all__ = ["TerraformEngine", "TerraformError", "TerraformRun", "declared_variables"]


class TerraformError(Exception):
    """A plan/apply/destroy failed; the message reads like Terraform's ``Error:`` line."""


@dataclass
class TerraformRun:
    """One Schematics job's view of a workspace.

    ``variables`` maps a name to ``{"value": str, "type": str | None, "secure": bool}`` as the
    Schematics variable store holds it; ``state`` is owned by the caller and mutated in place;
    ``log`` receives one job-log line per call; ``should_stop`` is polled between resources.
    """

    workspace_id: str
    template_dir: Path
    variables: dict[str, dict]
    state: dict
    log: Callable[[str], None]
    should_stop: Callable[[], bool] = lambda: False


# -- types ---------------------------------------------------------------------------------------


def _parse_type(tree: Any, var: Variable) -> Any:
    """A type constraint tree -> ``"string"|"number"|"bool"|"any"`` or ``(kind, inner)``."""
    where = f"{var.file} line {var.line}"
    if tree is None:
        return "any"
    if isinstance(tree, Var):
        if tree.name in {"string", "number", "bool", "any"}:
            return tree.name
        raise ConfigError(f"{where}: unknown type '{tree.name}' for variable '{var.name}'")
    if isinstance(tree, Call) and len(tree.args) == 1:
        kind, (arg,) = tree.name, tree.args
        if kind in {"list", "set", "map"}:
            return (kind, _parse_type(arg, var))
        if kind == "tuple" and isinstance(arg, TupleExpr):
            return ("tuple", [_parse_type(t, var) for t in arg.items])
        if kind == "object" and isinstance(arg, ObjectExpr) and all(isinstance(k, str) for k, _ in arg.items):
            return ("object", {str(k): _parse_type(v, var) for k, v in arg.items})
        if kind == "optional":
            raise ConfigError(f"{where}: optional() attributes are not supported by the sandbox")
    raise ConfigError(f"{where}: unsupported type constraint for variable '{var.name}'")


def _convert(value: Any, typ: Any, name: str) -> Any:
    if value is None or typ == "any":
        return value
    try:
        if typ == "string":
            if isinstance(value, list | dict):
                raise HclError(f"string required, got {type_name(value)}")
            return to_string(value)
        if typ == "number":
            return to_number(value)
        if typ == "bool":
            return to_bool(value)
    except HclError as exc:
        raise TerraformError(f'Invalid value for variable "{name}": {exc}') from exc
    kind, inner = typ
    if kind in {"list", "set", "tuple"}:
        if not isinstance(value, list):
            raise TerraformError(
                f'Invalid value for variable "{name}": {kind} required, got {type_name(value)}'
            )
        if kind == "tuple":
            if len(inner) != len(value):
                raise TerraformError(f'Invalid value for variable "{name}": tuple of {len(inner)} required')
            return [_convert(v, t, name) for v, t in zip(value, inner, strict=True)]
        return [_convert(v, inner, name) for v in value]
    if not isinstance(value, dict):
        raise TerraformError(f'Invalid value for variable "{name}": {kind} required, got {type_name(value)}')
    if kind == "map":
        return {k: _convert(v, inner, name) for k, v in value.items()}
    missing = set(inner) - set(value)
    if missing:
        raise TerraformError(f'Invalid value for variable "{name}": attribute(s) {sorted(missing)} required')
    return {k: _convert(value[k], t, name) for k, t in inner.items()}


def _literal_value(text: str, name: str) -> Any:
    try:
        tree = parse_expression(text, f"variable {name}", 1)
        return Evaluator(Scope(roots={}, base_dir=Path("."), filename=f"variable {name}")).eval(tree)
    except HclError as exc:
        raise TerraformError(
            f'Invalid value for variable "{name}": cannot parse {text!r} as HCL: {exc}'
        ) from exc


def _type_label(typ: Any) -> str:
    if isinstance(typ, str):
        return typ
    kind, inner = typ
    if kind in {"list", "set", "map"}:
        return f"{kind}({_type_label(inner)})"
    return kind


# -- provider-computed attributes ----------------------------------------------------------------


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
            vcpu=[{"count": _profile_part(cfg.get("profile"), 0)}],
            memory=_profile_part(cfg.get("profile"), 1),
        )
    elif rtype == "ibm_is_subnet_reserved_ip":
        # id is "<subnet id>/<reserved ip id>" (provider docs); the address is set by _create
        out.update(
            id=f"{cfg.get('subnet', '')}/{rid}",
            reserved_ip=rid,
            address=cfg.get("address") or "(known after apply)",
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


def _profile_part(profile: Any, part: int) -> int:
    try:
        return int(str(profile).split("-")[1].split("x")[part])
    except (IndexError, ValueError):
        return 0


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


def _data_source(rtype: str, cfg: dict[str, Any], region: str) -> dict[str, Any]:
    seed = f"{rtype}:{sorted((k, str(v)) for k, v in cfg.items())}"
    rid = f"r006-{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
    out = dict(cfg)
    out["id"] = rid
    if rtype == "ibm_is_image":
        # data_source_ibm_is_image.go: the first image of that name, or an error at plan
        image = image_by_name(str(cfg.get("name", "")))
        if image is None:
            raise TerraformError(f"No image found with name: {cfg.get('name', '')}")
        out.update(_image_attrs(image, region))
    elif rtype == "ibm_is_images":
        # data_source_ibm_is_images.go: filters name, status, visibility (public only here)
        out["images"] = [
            _image_attrs(i, region)
            for i in IMAGES
            if cfg.get("name") in (None, i.name)
            and cfg.get("status") in (None, i.status)
            and cfg.get("visibility") in (None, "public")
        ]
    return out


_INVENTORY_ID_PREFIX = {
    "ibm_iam_trusted_profile": "Profile-",
    "ibm_iam_trusted_profile_policy": "",
    "ibm_is_instance": "0717_",
}


def _new_id(rtype: str) -> str:
    if rtype in _INVENTORY_ID_PREFIX:
        return f"{_INVENTORY_ID_PREFIX[rtype]}{uuid.uuid4()}"
    return f"r006-{uuid.uuid4()}"


# -- evaluation ----------------------------------------------------------------------------------


class _Locals(Mapping[str, Any]):
    """``local.*``: evaluated on first use, with cycle detection."""

    def __init__(self, ctx: _Context) -> None:
        self._ctx = ctx
        self._values: dict[str, Any] = {}
        self._busy: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        attr = self._ctx.module.locals.get(name)
        if attr is None:
            raise KeyError(name)
        if name in self._busy:
            raise HclError(f"{attr.file} line {attr.line}: local.{name} refers to itself")
        self._busy.add(name)
        try:
            value = self._ctx.evaluate(attr)
        finally:
            self._busy.discard(name)
        self._values[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._ctx.module.locals

    def __iter__(self) -> Iterator[str]:
        return iter(self._ctx.module.locals)

    def __len__(self) -> int:
        return len(self._ctx.module.locals)


@dataclass
class _Context:
    module: Module
    variables: dict[str, Any]
    resource_values: dict[str, Any] = field(default_factory=dict)  # "type" -> {name: value}
    data_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals_: _Locals | None = None

    def __post_init__(self) -> None:
        self.locals_ = _Locals(self)

    def roots(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        # Terraform runs in the root module's folder: path.module is "." and relative paths
        # resolve against that folder (Scope.base_dir)
        roots: dict[str, Any] = {
            "var": self.variables,
            "local": self.locals_,
            "path": {"module": ".", "root": ".", "cwd": str(self.module.directory)},
            "terraform": {"workspace": "default"},
            "data": self.data_values,
        }
        roots.update(self.resource_values)
        if extra:
            roots.update(extra)
        return roots

    def evaluate(self, attr: Attr, extra: dict[str, Any] | None = None) -> Any:
        scope = Scope(roots=self.roots(extra), base_dir=self.module.directory, filename=attr.file)
        try:
            return Evaluator(scope).eval(attr.tree)
        except HclError as exc:
            raise TerraformError(str(exc)) from exc

    def evaluate_body(self, body: Body, extra: dict[str, Any] | None, skip: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, attr in body.attrs.items():
            if name in skip:
                continue
            value = self.evaluate(attr, extra)
            if value is not None:  # null means "not set", as in Terraform
                out[name] = value
        for block in body.blocks:
            if block.type in {"lifecycle", "timeouts"}:
                continue
            out.setdefault(block.type, []).append(self.evaluate_body(block.body, extra, set()))
        return out


# -- the engine ----------------------------------------------------------------------------------

_META_ARGS = {"count", "depends_on", "provider", "for_each"}
_DEFAULT_TF_VERSION = "1.13.4"


class TerraformEngine:
    """Interprets the Terraform subset described in ``docs/terraform.md`` against the sandbox.

    Thread-safe: every call works on its own :class:`TerraformRun`; the Inventory and FaultSet
    are thread-safe. Errors are :class:`TerraformError` (also logged as ``Error: ...``).
    """

    def __init__(
        self,
        *,
        inventory: Inventory,
        faults: FaultSet,
        launcher: ServerLauncher | None = None,
        resource_delay_s: float = 0.05,
        metadata_url: str = "",
        region: str = "us-south",
        quotas: Quotas = DEFAULT_QUOTAS,
        api_key_access: Any = None,
        caller_iam_id: str = "",
    ) -> None:
        # The identity jobs run as (Schematics passes the caller's token): creates need its policies.
        self.api_key_access = api_key_access
        self.caller_iam_id = caller_iam_id
        self.inventory = inventory
        self.faults = faults
        self.launcher = launcher
        self.resource_delay_s = resource_delay_s
        self.metadata_url = metadata_url
        self.region = region
        self.rules = VpcRules(inventory, region, quotas, faults)

    # public API -------------------------------------------------------------------------------
    def plan(self, run: TerraformRun) -> dict[str, int]:
        """Validate and count changes: ``{"add": n, "change": 0, "destroy": n}``."""
        with _reporting(run):
            run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
            ctx, order = self._prepare(run)
            if self.faults.active("plan_fails"):
                raise TerraformError(
                    "Invalid provider configuration: failed to query available provider packages "
                    "(sandbox fault plan_fails)"
                )
            live = self._live_entries(run)  # refreshed, but a plan does not write the state
            desired = self._walk(run, ctx, order, create=False)
            existing = {r["address"] for r in live if not r.get("tainted")}
            tainted = [r["address"] for r in live if r.get("tainted")]
            add = [a for a in desired if a not in existing]
            destroy = [a for a in existing if a not in desired] + tainted
            for address in add:
                run.log(f"  # {address} will be created")
            for address in destroy:
                run.log(f"  # {address} will be destroyed")
            if not add and not destroy:
                run.log("No changes. Your infrastructure matches the configuration.")
            run.log(f"Plan: {len(add)} to add, 0 to change, {len(destroy)} to destroy.")
            return {"add": len(add), "change": 0, "destroy": len(destroy)}

    def apply(self, run: TerraformRun) -> dict[str, dict[str, Any]]:
        """Create what the state lacks (dependency order), drop what the config no longer has.

        Returns the outputs ``{name: {"value", "type", "sensitive"}}`` (also kept in state).
        """
        with _reporting(run):
            run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
            ctx, order = self._prepare(run)
            if self.faults.active("plan_fails"):
                raise TerraformError(
                    "Invalid provider configuration: failed to query available provider packages "
                    "(sandbox fault plan_fails)"
                )
            self._walk(run, ctx, order, create=False)  # validate everything before touching anything
            run.state.setdefault("resources", [])
            self._drop_vanished(run)
            stats = {"added": 0, "destroyed": 0}
            desired = self._walk(run, ctx, order, create=True, stats=stats)
            destroyed = stats["destroyed"]  # the tainted objects replaced on the way
            for entry in reversed(list(run.state["resources"])):
                if entry["address"] not in desired:
                    self._destroy_entry(run, entry)
                    destroyed += 1
            outputs = self._outputs(run, ctx)
            run.state["outputs"] = outputs
            run.state["serial"] = int(run.state.get("serial", 0)) + 1
            run.log("")
            run.log(f"Apply complete! Resources: {stats['added']} added, 0 changed, {destroyed} destroyed.")
            if outputs:
                run.log("")
                run.log("Outputs:")
                run.log("")
                for name, out in outputs.items():
                    shown = "<sensitive>" if out["sensitive"] else _hcl_repr(out["value"])
                    run.log(f"{name} = {shown}")
            return outputs

    def destroy(self, run: TerraformRun) -> None:
        """Destroy everything in ``state`` in reverse creation order; stops simulated servers."""
        with _reporting(run):
            run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
            entries = list(run.state.get("resources", []))
            fail_after: int | None = None
            if entries and self.faults.take("destroy_fails_once"):
                opts = self.faults.options("destroy_fails_once")
                fail_after = int(opts.get("after", max(1, len(entries) // 2)))
            done = 0
            for entry in reversed(entries):
                if run.should_stop():
                    raise TerraformError("the job was stopped; destroy interrupted")
                if fail_after is not None and done >= fail_after:
                    raise TerraformError(
                        f"deleting {entry['address']} ({entry['id']}): the resource is in use by another "
                        "resource, try again later (sandbox fault destroy_fails_once)"
                    )
                self._destroy_entry(run, entry)
                done += 1
            run.state["outputs"] = {}
            run.state["serial"] = int(run.state.get("serial", 0)) + 1
            run.log("")
            run.log(f"Destroy complete! Resources: {done} destroyed.")

    def refresh(self, run: TerraformRun) -> dict[str, dict[str, Any]]:
        """Drop from ``state`` what no longer exists in the Inventory; returns the outputs."""
        with _reporting(run):
            run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
            self._prepare(run)
            self._drop_vanished(run)
            return dict(run.state.get("outputs", {}))

    def _drop_vanished(self, run: TerraformRun) -> None:
        """Terraform's refresh, which plan and apply run first (``-refresh=true`` is the default):
        an object deleted outside Terraform (a server deleted by hand, a lost host) leaves the state,
        so the apply creates it again."""
        if "resources" in run.state:
            run.state["resources"] = self._live_entries(run)

    def _live_entries(self, run: TerraformRun) -> list[dict[str, Any]]:
        kept = []
        for entry in run.state.get("resources", []):
            ids = entry.get("inventory_ids") or []
            if ids and self.inventory.get(ids[0]) is None:
                run.log(f"{entry['address']}: the resource is gone; removing it from the state")
                continue
            run.log(f"{entry['address']}: Refreshing state... [id={entry['id']}]")
            kept.append(entry)
        return kept

    # preparation ------------------------------------------------------------------------------
    def _prepare(self, run: TerraformRun) -> tuple[_Context, list[Resource]]:
        try:
            module = load_module(Path(run.template_dir))
        except HclError as exc:
            raise TerraformError(str(exc)) from exc
        run.log("Initializing provider plugins...")
        variables = self._resolve_variables(module, run)
        ctx = _Context(module=module, variables=variables)
        self._check_references(module)
        return ctx, _order(module)

    def _resolve_variables(self, module: Module, run: TerraformRun) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in sorted(set(run.variables) - set(module.variables)):
            run.log(f'Warning: Value for undeclared variable "{name}" (ignored)')
        for name, var in module.variables.items():
            try:
                typ = _parse_type(var.type_tree, var)
            except HclError as exc:
                raise TerraformError(str(exc)) from exc
            given = run.variables.get(name)
            if given is not None and given.get("value") is not None:
                raw = given["value"]
                if isinstance(raw, str) and typ in ("number", "bool"):
                    value = raw.strip()  # "3" / "true": _convert() parses it per the type
                elif isinstance(raw, str) and typ not in ("string", "any"):
                    value = _literal_value(raw, name)  # "[...]" / "{...}" in HCL syntax
                else:
                    value = raw
            elif var.default is not None:
                value = literal_default(var)
            else:
                raise TerraformError(
                    f'No value for required variable "{name}" ({var.file} line {var.line}): '
                    "set it in the workspace's variable store"
                )
            if value is None and not var.nullable:
                raise TerraformError(f'Invalid value for variable "{name}": the value must not be null')
            values[name] = _convert(value, typ, name)
        # validations see every variable (Terraform >= 1.9 allows cross-variable conditions)
        for name, var in module.variables.items():
            ctx = _Context(module=module, variables=values)
            for cond, message in var.validations:
                try:
                    ok = to_bool(ctx.evaluate(cond))
                except (TerraformError, HclError) as exc:
                    raise TerraformError(
                        f'Invalid value for variable "{name}": the validation condition failed to '
                        f"evaluate ({cond.file} line {cond.line}): {exc}"
                    ) from exc
                if not ok:
                    try:
                        text = to_string(ctx.evaluate(message)) if message else "validation failed"
                    except (TerraformError, HclError):
                        text = "validation failed"
                    raise TerraformError(
                        f'Invalid value for variable "{name}": {text} '
                        f"({cond.file} line {cond.line}, var.{name})"
                    )
        return values

    def _check_references(self, module: Module) -> None:
        types = {r.type for r in module.resources.values() if r.mode == "managed"}
        exprs: list[Attr] = list(module.locals.values())
        for res in module.resources.values():
            exprs.extend(_all_attrs(res.body))
        exprs.extend(o.value for o in module.outputs.values())
        for attr in exprs:
            for ref in references(attr.tree):
                root = ref[0]
                if root == "var" and len(ref) > 1 and ref[1] not in module.variables:
                    raise TerraformError(
                        f'{attr.file} line {attr.line}: reference to undeclared input variable "{ref[1]}"'
                    )
                if root == "local" and len(ref) > 1 and ref[1] not in module.locals:
                    raise TerraformError(
                        f'{attr.file} line {attr.line}: reference to undeclared local "{ref[1]}"'
                    )
                if root in types and len(ref) > 1 and f"{root}.{ref[1]}" not in module.resources:
                    raise TerraformError(
                        f"{attr.file} line {attr.line}: reference to undeclared resource {root}.{ref[1]}"
                    )
                if root == "data" and len(ref) > 2 and f"data.{ref[1]}.{ref[2]}" not in module.resources:
                    raise TerraformError(
                        f"{attr.file} line {attr.line}: reference to undeclared data source "
                        f"data.{ref[1]}.{ref[2]}"
                    )

    # walking ----------------------------------------------------------------------------------
    def _count(self, ctx: _Context, res: Resource) -> int | None:
        if res.count is None:
            return None
        value = ctx.evaluate(res.count)
        try:
            n = to_number(value)
        except HclError as exc:
            raise TerraformError(
                f"{res.count.file} line {res.count.line}: invalid count for {res.address}: {exc}"
            ) from exc
        if not isinstance(n, int) or n < 0:
            raise TerraformError(
                f"{res.count.file} line {res.count.line}: invalid count {value!r} for {res.address}: "
                "must be a whole number >= 0"
            )
        return n

    def _walk(
        self,
        run: TerraformRun,
        ctx: _Context,
        order: list[Resource],
        *,
        create: bool,
        stats: dict[str, int] | None = None,
    ) -> list[str]:
        """Evaluate every resource in order; with ``create`` make the missing ones. Returns addresses."""
        state_by_address = {r["address"]: r for r in run.state.get("resources", [])}
        desired: list[str] = []
        fail_after: int | None = None
        if create and self.faults.active("apply_fails_midway"):
            total = sum(
                (self._count(ctx, r) if r.count is not None else 1) or 0 for r in order if r.mode == "managed"
            )
            fail_after = int(self.faults.options("apply_fails_midway").get("after", max(1, (total + 1) // 2)))
        # Counted with what earlier applies left, so that while the fault lasts every apply (a retry
        # too) fails at the same point, as a zone without capacity would.
        created = len(state_by_address)
        ctx.resource_values = {}
        ctx.data_values = {}
        for res in order:
            n = self._count(ctx, res)
            indices: list[int | None] = [None] if n is None else list(range(n))
            values = []
            for index in indices:
                address = res.address if index is None else f"{res.address}[{index}]"
                extra = {"count": {"index": index}} if index is not None else None
                cfg = ctx.evaluate_body(res.body, extra, _META_ARGS)
                if res.mode == "data":
                    try:
                        values.append(_data_source(res.type, cfg, self.region))
                    except TerraformError as exc:
                        raise TerraformError(f"{exc} (with {address}, {res.file} line {res.line})") from exc
                    if create:
                        run.log(f"{address}: Reading...")
                        run.log(f"{address}: Read complete after 0s [id={values[-1]['id']}]")
                    elif values[-1].get("status") == "deprecated":
                        name = values[-1]["name"]
                        run.log(f"Warning: Given image {name} is deprecated and soon will be obsolete.")
                    continue
                if not create:
                    problems = schema_errors(res.type, cfg)
                    if problems:
                        where = f"(with {address}, {res.file} line {res.line})"
                        raise TerraformError("\n".join(f"{p} {where}" for p in problems))
                desired.append(address)
                entry = state_by_address.get(address)
                replaced = None  # a tainted object, destroyed after its replacement exists
                if entry is not None and entry.get("tainted") and create:
                    run.log(f"{address}: tainted, so must be replaced")
                    if _create_before_destroy(res):
                        replaced = entry
                    else:  # Terraform's default: destroy first, then create the replacement
                        self._destroy_entry(run, entry)
                        created -= 1
                        if stats is not None:
                            stats["destroyed"] += 1
                    entry = None
                if entry is not None:
                    values.append(entry["attrs"])
                    continue
                if not create:
                    values.append(
                        {**cfg, **_computed(res.type, cfg, "(known after apply)", index, self.region)}
                    )
                    continue
                if run.should_stop():
                    raise TerraformError(
                        "the job was stopped; apply interrupted (state keeps what was created)"
                    )
                if fail_after is not None and created >= fail_after:
                    raise TerraformError(
                        f"creating {address}: the requested capacity is not available in zone "
                        f"{cfg.get('zone', self.region)} (sandbox fault apply_fails_midway)"
                    )
                self._authorize_create(res.type, address, cfg)
                entry = self._create(run, res, address, index, cfg)
                created += 1
                if stats is not None:
                    stats["added"] += 1
                if replaced is not None:
                    self._destroy_entry(run, replaced)
                    created -= 1
                    if stats is not None:
                        stats["destroyed"] += 1
                values.append(entry["attrs"])
            target = (
                ctx.data_values.setdefault(res.type, {})
                if res.mode == "data"
                else ctx.resource_values.setdefault(res.type, {})
            )
            target[res.name] = values[0] if n is None else values
        return desired

    def _authorize_create(self, rtype: str, address: str, cfg: dict) -> None:
        """IAM's answer to a create: the caller's policies (sandbox/api_key_access.py), a policy's roles."""
        if self.api_key_access is not None:
            need = self.api_key_access.denied(rtype)
            if need is not None:
                message = forbidden_message(rtype, need, self.caller_iam_id)
                raise TerraformError(f"creating {address}: {message}")
        if rtype == "ibm_iam_trusted_profile_policy":
            unknown = invalid_roles(cfg.get("roles") or [])
            if unknown:
                raise TerraformError(
                    f"creating {address}: [ERROR] Error creating trusted profile policy: Request failed with "
                    f"status code: 400, ServerErrorResponse: invalid role name(s) {unknown} for service "
                    f"cloud-object-storage"
                )
            problems = rule_problems(terraform_rule(cfg))
            if problems:
                raise TerraformError(
                    f"creating {address}: [ERROR] Error creating trusted profile policy: Request failed with "
                    f"status code: 400, ServerErrorResponse: invalid policy rule: {'; '.join(problems)}"
                )

    def _create(self, run: TerraformRun, res: Resource, address: str, index: int | None, cfg: dict) -> dict:
        run.log(f"{address}: Creating...")
        started = time.monotonic()
        rid = _new_id(res.type)
        attrs = {**cfg, **_computed(res.type, cfg, rid, index, self.region)}
        tags = [str(t) for t in cfg.get("tags", [])] if isinstance(cfg.get("tags"), list) else []
        name = str(cfg.get("name") or address)
        if res.type == "ibm_is_subnet_reserved_ip":
            attrs["address"] = _reserve_address(run, cfg)
        reserved = None
        if res.type == "ibm_is_instance":
            reserved = _reserved_ip_to_bind(run, self.inventory, cfg, attrs)
        record_attrs = {k: v for k, v in attrs.items() if k not in {"id", "tags"}}
        record_attrs["tf_address"] = address
        inventory_ids: list[str] = []
        if res.type == "ibm_is_instance":
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
        with self.rules.lock:  # the quota check and the create are one step
            try:
                self.rules.check_create(res.type, cfg, run.log)
            except VpcApiError as exc:
                raise TerraformError(f"{exc} (with {address})") from exc
            reason = self._start_failure(res.type, cfg)
            if reason is not None:
                # the create is accepted, then the instance fails to start (the provider taints it)
                record_attrs.update(status="failed", status_reasons=[reason])
                attrs.update(status="failed", status_reasons=[reason])
            record = self.inventory.add(
                res.type, name, tags=tags, workspace_id=run.workspace_id, attrs=record_attrs, resource_id=rid
            )
        if reserved is not None:  # the instance exists: its network interface holds the address
            _bind(self.inventory, reserved, attrs["primary_network_interface"][0]["id"])
        inventory_ids.append(record["id"])
        if res.type == "ibm_is_instance":
            boot = attrs["boot_volume"][0]
            vol = self.inventory.add(
                "boot_volume",
                str(boot.get("name") or f"{name}-boot"),
                tags=[str(t) for t in boot.get("tags", [])],
                workspace_id=run.workspace_id,
                attrs={
                    "instance_id": rid,
                    "profile": "general-purpose",
                    "capacity": boot.get("size", 100),
                    "auto_delete_volume": boot.get("auto_delete_volume", True),
                },
                resource_id=boot["volume_id"],
            )
            inventory_ids.append(vol["id"])
        entry = {
            "address": address,
            "mode": "managed",
            "type": res.type,
            "name": res.name,
            "index": index,
            "id": attrs["id"],
            "attrs": attrs,
            "inventory_ids": inventory_ids,
        }
        run.state.setdefault("resources", []).append(entry)
        if self.resource_delay_s:
            time.sleep(self.resource_delay_s)
        if reason is not None:
            entry["tainted"] = True
            raise TerraformError(
                # the provider's message, on one line: the reason is what a summary must show
                f"[ERROR] Instance ({rid}) went into failed state during the operation "
                f"({json.dumps([reason])}) [WARNING] Running terraform apply again will remove "
                "the tainted instance and attempt to create the instance again replacing the previous "
                f"configuration (with {address}, zone {cfg.get('zone')}, profile {cfg.get('profile')}; "
                "sandbox fault no_capacity)"
            )
        if res.type == "ibm_is_instance" and self.launcher is not None:
            try:
                self.launcher.start(record, str(cfg.get("user_data", "")))
            except Exception as exc:  # a broken boot must not break the apply, as on a real VM
                run.log(f"{address}: Warning: the simulated server did not start: {exc}")
        elapsed = int(time.monotonic() - started)
        run.log(f"{address}: Creation complete after {elapsed}s [id={attrs['id']}]")
        return entry

    def _start_failure(self, rtype: str, cfg: dict[str, Any]) -> dict[str, str] | None:
        """The status reason a new instance fails to start with (no capacity), or None."""
        if rtype != "ibm_is_instance":
            return None
        zone, profile = cfg.get("zone"), cfg.get("profile")
        running_here = sum(
            1
            for r in self.inventory.list("ibm_is_instance")
            if r["attrs"].get("zone") == zone
            and r["attrs"].get("profile") == profile
            and r["attrs"].get("status") != "failed"
        )
        try:
            return capacity_failure(self.faults, self.region, zone, profile, running_here)
        except ValueError as exc:
            raise TerraformError(f"sandbox fault {exc}") from exc

    def _destroy_entry(self, run: TerraformRun, entry: dict) -> None:
        run.log(f"{entry['address']}: Destroying... [id={entry['id']}]")
        started = time.monotonic()
        if entry["type"] == "ibm_is_instance":
            if self.launcher is not None:
                try:
                    self.launcher.stop(entry["inventory_ids"][0])
                except Exception as exc:
                    run.log(f"{entry['address']}: Warning: stopping the simulated server failed: {exc}")
            # The VPC API's delete releases what was bound to the instance; the state follows.
            gone = set(delete_instance(self.inventory, entry["inventory_ids"][0]))
            _release_in_state(run, nic_ids(entry["attrs"]), gone)
        for rid in entry.get("inventory_ids", []):
            self.inventory.remove(rid)
        if self.resource_delay_s:
            time.sleep(self.resource_delay_s)
        run.state["resources"] = [
            r
            for r in run.state.get("resources", [])
            if not (r["address"] == entry["address"] and r["id"] == entry["id"])
        ]
        elapsed = int(time.monotonic() - started)
        run.log(f"{entry['address']}: Destruction complete after {elapsed}s")

    def _outputs(self, run: TerraformRun, ctx: _Context) -> dict[str, dict[str, Any]]:
        out = {}
        for name, output in ctx.module.outputs.items():
            value = ctx.evaluate(output.value)
            out[name] = {"value": value, "type": _json_type(value), "sensitive": output.sensitive}
        return out


# -- subnet reserved IPs -------------------------------------------------------------------------

# ibm_is_subnet_reserved_ip name rule (provider: resource_ibm_is_subnet_reserved_ip.go,
# isReservedIPName) and the "ibm-" prefix the API keeps for provider-owned resources.
_RESERVED_IP_NAME = re.compile(r"^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$")


def _subnet_cidr(run: TerraformRun, subnet_id: str) -> str:
    for entry in run.state.get("resources", []):
        if entry["type"] == "ibm_is_subnet" and entry["attrs"].get("id") == subnet_id:
            return str(entry["attrs"].get("ipv4_cidr_block") or "10.240.0.0/24")
    raise TerraformError(f"creating a reserved IP: subnet {subnet_id!r} not found")


def _reserve_address(run: TerraformRun, cfg: dict[str, Any]) -> str:
    """The address a new reserved IP gets, with the checks the VPC API makes.

    IBM keeps the first four and the last address of every subnet; an unbound reserved IP must
    have ``auto_delete`` false; an explicit ``address`` must be free and inside the subnet.
    """
    name = str(cfg.get("name") or "")
    if name and (not _RESERVED_IP_NAME.match(name) or len(name) > 63 or name.startswith("ibm-")):
        raise TerraformError(
            f"invalid reserved IP name {name!r}: 1-63 characters of [a-z0-9-], starting with a letter, "
            "not ending with '-', and not starting with 'ibm-'"
        )
    if cfg.get("auto_delete") and not cfg.get("target"):
        raise TerraformError("reserved IP: auto_delete must be false if the reserved IP is unbound")
    subnet = str(cfg.get("subnet") or "")
    network = ipaddress.ip_network(_subnet_cidr(run, subnet))
    hosts = list(network)
    provider_reserved = {str(a) for a in hosts[:4] + hosts[-1:]}
    used = set()
    for entry in run.state.get("resources", []):
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
            raise TerraformError(f"reserved IP address {wanted} is not available in subnet {network}")
        if str(wanted) in used:
            raise TerraformError(f"reserved IP address {wanted} is already reserved in subnet {network}")
        return str(wanted)
    for address in map(str, hosts):
        if address not in provider_reserved and address not in used:
            return address
    raise TerraformError(f"subnet {network} has no free address left for a reserved IP")


def _reserved_ip_to_bind(
    run: TerraformRun, inventory: Inventory, cfg: dict[str, Any], attrs: dict[str, Any]
) -> dict | None:
    """The reserved IP an instance's primary_ip names (its state entry), checked as the VPC API
    checks it; the instance's network interface gets its address. :func:`_bind` binds it once the
    instance exists. None when the instance names no reserved IP."""
    configured = (cfg.get("primary_network_interface") or [{}])[0]
    wanted = ((configured.get("primary_ip") or [{}])[0] or {}).get("reserved_ip")
    if not wanted:
        return None
    nic = attrs["primary_network_interface"][0]
    for entry in run.state.get("resources", []):
        if entry["type"] == "ibm_is_subnet_reserved_ip" and entry["attrs"].get("reserved_ip") == wanted:
            reserved = entry["attrs"]
            live = inventory.get((entry.get("inventory_ids") or [""])[0])
            # the cloud's binding (a refresh reads it), the state's only when the cloud has no record
            target = live["attrs"].get("target") if live is not None else reserved.get("target")
            if target:
                raise TerraformError(f"reserved IP {wanted} is already bound to {target}")
            if reserved.get("subnet") != nic.get("subnet"):
                raise TerraformError(f"reserved IP {wanted} is not in the network interface's subnet")
            nic["primary_ip"] = [{"address": reserved["address"], "reserved_ip": wanted}]
            nic["primary_ipv4_address"] = reserved["address"]
            return entry
    raise TerraformError(f"primary_ip.reserved_ip {wanted!r}: no such reserved IP")


def _bind(inventory: Inventory, reserved: dict, nic_id: str) -> None:
    reserved["attrs"]["target"] = nic_id
    for rid in reserved.get("inventory_ids") or []:
        inventory.update_attrs(rid, target=nic_id)


def _release_in_state(run: TerraformRun, nics: set[str], deleted: set[str]) -> None:
    """What a refresh would read after an instance's delete: its reserved and floating IPs unbound
    (a reserved IP with ``auto_delete`` is gone, so it leaves the state)."""
    kept = []
    for other in run.state.get("resources", []):
        if other["type"] in ("ibm_is_subnet_reserved_ip", "ibm_is_floating_ip"):
            if set(other.get("inventory_ids") or []) & deleted:
                run.log(f"{other['address']}: deleted with the instance it was bound to (auto_delete)")
                continue
            if other["attrs"].get("target") in nics:
                other["attrs"]["target"] = ""
        kept.append(other)
    run.state["resources"] = kept


def _create_before_destroy(res: Resource) -> bool:
    """``lifecycle { create_before_destroy = true }`` (a literal, as Terraform requires)."""
    for block in res.body.blocks:
        if block.type == "lifecycle" and "create_before_destroy" in block.body.attrs:
            return literal_string(block.body.attrs["create_before_destroy"], "create_before_destroy") is True
    return False


# -- helpers -------------------------------------------------------------------------------------


class _reporting:
    """Log ``Error: ...`` before a TerraformError leaves the engine."""

    def __init__(self, run: TerraformRun) -> None:
        self.run = run

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, HclError):
            self.run.log(f"Error: {exc}")
            raise TerraformError(str(exc)) from exc
        if isinstance(exc, TerraformError):
            self.run.log(f"Error: {exc}")
        return False


def literal_default(var: Variable) -> Any:
    try:
        return literal_string(var.default, f"default of variable '{var.name}'")
    except HclError as exc:
        raise TerraformError(str(exc)) from exc


def _all_attrs(body: Body) -> list[Attr]:
    out = list(body.attrs.values())
    for block in body.blocks:
        out.extend(_all_attrs(block.body))
    return out


def _order(module: Module) -> list[Resource]:
    """Resources and data sources in dependency order (file order among independent ones)."""
    local_refs: dict[str, set[str]] = {}

    def deps_of_refs(refs: set[tuple[str, ...]], seen: set[str]) -> set[str]:
        out: set[str] = set()
        for ref in refs:
            if ref[0] == "local" and len(ref) > 1:
                name = ref[1]
                if name in seen:
                    continue
                if name not in local_refs:
                    local_refs[name] = deps_of_refs(references(module.locals[name].tree), seen | {name})
                out |= local_refs[name]
            elif ref[0] == "data" and len(ref) > 2:
                out.add(f"data.{ref[1]}.{ref[2]}")
            elif len(ref) > 1 and f"{ref[0]}.{ref[1]}" in module.resources:
                out.add(f"{ref[0]}.{ref[1]}")
        return out

    deps: dict[str, set[str]] = {}
    for address, res in module.resources.items():
        refs: set[tuple[str, ...]] = set(res.depends_on)
        for attr in _all_attrs(res.body):
            if attr.name != "depends_on":
                refs |= references(attr.tree)
        deps[address] = deps_of_refs(refs, set()) - {address}
        unknown = [d for d in deps[address] if d not in module.resources]
        if unknown:
            raise TerraformError(f"{res.file} line {res.line}: {address} refers to undeclared {unknown[0]}")
    ordered: list[Resource] = []
    done: set[str] = set()
    pending = list(module.resources)
    while pending:
        ready = [a for a in pending if deps[a] <= done]
        if not ready:
            raise TerraformError(f"Cycle: {', '.join(sorted(pending))}")
        address = ready[0]
        ordered.append(module.resources[address])
        done.add(address)
        pending.remove(address)
    return ordered


def _json_type(value: Any) -> Any:
    """Terraform's JSON type notation (``terraform output -json``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return ["tuple", [_json_type(v) for v in value]]
    if isinstance(value, dict):
        return ["object", {k: _json_type(v) for k, v in value.items()}]
    return "dynamic"


def _hcl_repr(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return to_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_hcl_repr(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_hcl_repr(v)}" for k, v in value.items()) + "}"


def declared_variables(template_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The input variables a template folder declares, for contract tests and the Schematics API.

    Returns ``{name: {"type": "string"|"number"|"bool"|"list(string)"|..., "type_source": the
    constraint as written, "description": str | None, "sensitive": bool, "required": bool,
    "default": value (absent when required), "validations": int, "file": str, "line": int}}``.
    """
    try:
        module = load_module(Path(template_dir))
    except HclError as exc:
        raise TerraformError(str(exc)) from exc
    out: dict[str, dict[str, Any]] = {}
    for name, var in module.variables.items():
        try:
            typ = _parse_type(var.type_tree, var)
        except HclError as exc:
            raise TerraformError(str(exc)) from exc
        spec: dict[str, Any] = {
            "type": _type_label(typ),
            "type_source": var.type_source,
            "description": var.description,
            "sensitive": var.sensitive,
            "required": var.default is None,
            "validations": len(var.validations),
            "file": var.file,
            "line": var.line,
        }
        if var.default is not None:
            spec["default"] = literal_default(var)
        out[name] = spec
    return out

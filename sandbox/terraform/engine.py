"""The sandbox's Terraform runner: plan, apply, destroy and refresh a root module through a provider.

The Schematics emulator runs one :class:`TerraformEngine` call per job (in a background thread)
with a :class:`TerraformRun` that carries the workspace's extracted template folder, its
variable store and the per-workspace ``state`` dict that the caller keeps between jobs. What a
cloud does is behind the :class:`~sandbox.terraform.provider.Provider` the engine is built with;
this module imports nothing of a cloud.

What it does, in the order Terraform does it:

1. load every ``*.tf`` file (python-hcl2 through :mod:`sandbox.terraform.hcl`; unsupported
   constructs are errors);
2. resolve input variables: Schematics values are strings, converted per the declared ``type``
   (``"3"`` -> 3, ``"true"`` -> true, ``"[...]"``/``"{...}"`` parsed as HCL); defaults; every
   ``validation`` block is evaluated and a failure names the variable;
3. configure the provider, order resources and data sources by their references
   (``ibm_is_vpc.vpc.id``, locals, ``depends_on``), evaluate ``count`` and every argument (locals,
   functions, templates), validate each resource against the provider's schema;
4. refresh: drop from the state what the provider no longer has; plan: count what would be
   added/destroyed compared with ``state``; apply: create each missing object through the
   provider; destroy: the reverse.

An object that the provider creates with an error is kept in the state, *tainted*; the next apply
replaces it the way Terraform replaces a tainted resource: it destroys the old one first, then
creates the new one; with ``lifecycle { create_before_destroy = true }`` it creates the new one
first.

State layout (JSON-serialisable)::

    {"resources": [{"address", "mode", "type", "name", "index", "id", "attrs", "inventory_ids"}],
     "outputs": {name: {"value", "type", "sensitive"}}, "serial": int}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from sandbox.terraform.provider import Changes, Job, Provider, ProviderError, Session

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
    """Interprets the Terraform subset described in ``docs/terraform.md`` through ``provider``.

    Thread-safe when the provider is: every call works on its own :class:`TerraformRun`. Errors
    are :class:`TerraformError` (also logged as ``Error: ...``).
    """

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    # public API -------------------------------------------------------------------------------
    def plan(self, run: TerraformRun) -> dict[str, int]:
        """Validate and count changes: ``{"add": n, "change": 0, "destroy": n}``."""
        with _reporting(run):
            ctx, order = self._prepare(run)
            session = self._configure(run, "plan")
            live = self._live_entries(run, session)  # refreshed, but a plan does not write the state
            desired = self._walk(run, session, ctx, order, create=False)
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
            ctx, order = self._prepare(run)
            planned = [0]
            session = self._configure(run, "apply", lambda: planned[0])
            # validate everything before touching anything
            planned[0] = len(self._walk(run, session, ctx, order, create=False))
            run.state.setdefault("resources", [])
            self._drop_vanished(run, session)
            stats = {"added": 0, "destroyed": 0}
            desired = self._walk(run, session, ctx, order, create=True, stats=stats)
            for entry in reversed(list(run.state["resources"])):
                if entry["address"] not in desired:
                    self._destroy_entry(run, session, entry)
                    stats["destroyed"] += 1
            outputs = self._outputs(ctx)
            run.state["outputs"] = outputs
            run.state["serial"] = int(run.state.get("serial", 0)) + 1
            run.log("")
            run.log(
                f"Apply complete! Resources: {stats['added']} added, 0 changed, "
                f"{stats['destroyed']} destroyed."
            )
            if outputs:
                run.log("")
                run.log("Outputs:")
                run.log("")
                for name, out in outputs.items():
                    shown = "<sensitive>" if out["sensitive"] else _hcl_repr(out["value"])
                    run.log(f"{name} = {shown}")
            return outputs

    def destroy(self, run: TerraformRun) -> None:
        """Destroy everything in ``state`` in reverse creation order."""
        with _reporting(run):
            run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
            entries = list(run.state.get("resources", []))
            session = self._configure(run, "destroy", lambda: len(entries))
            done = 0
            for entry in reversed(entries):
                if run.should_stop():
                    raise TerraformError("the job was stopped; destroy interrupted")
                self._destroy_entry(run, session, entry)
                done += 1
            run.state["outputs"] = {}
            run.state["serial"] = int(run.state.get("serial", 0)) + 1
            run.log("")
            run.log(f"Destroy complete! Resources: {done} destroyed.")

    def refresh(self, run: TerraformRun) -> dict[str, dict[str, Any]]:
        """Drop from ``state`` what the provider no longer has; returns the outputs."""
        with _reporting(run):
            self._prepare(run)
            self._drop_vanished(run, self._configure(run, "refresh"))
            return dict(run.state.get("outputs", {}))

    def _configure(self, run: TerraformRun, command: str, planned: Callable[[], int] = lambda: 0) -> Session:
        job = Job(
            command=command,
            workspace_id=run.workspace_id,
            log=run.log,
            resources=lambda: list(run.state.get("resources", [])),
            planned=planned,
        )
        return self.provider.configure(job)

    def _drop_vanished(self, run: TerraformRun, session: Session) -> None:
        """Terraform's refresh, which plan and apply run first (``-refresh=true`` is the default):
        an object deleted outside Terraform (a server deleted by hand, a lost host) leaves the state,
        so the apply creates it again."""
        if "resources" in run.state:
            run.state["resources"] = self._live_entries(run, session)

    def _live_entries(self, run: TerraformRun, session: Session) -> list[dict[str, Any]]:
        kept = []
        for entry in run.state.get("resources", []):
            if not session.exists(entry):
                run.log(f"{entry['address']}: the resource is gone; removing it from the state")
                continue
            run.log(f"{entry['address']}: Refreshing state... [id={entry['id']}]")
            kept.append(entry)
        return kept

    # preparation ------------------------------------------------------------------------------
    def _prepare(self, run: TerraformRun) -> tuple[_Context, list[Resource]]:
        run.log(f"Terraform v{_DEFAULT_TF_VERSION}")
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
        session: Session,
        ctx: _Context,
        order: list[Resource],
        *,
        create: bool,
        stats: dict[str, int] | None = None,
    ) -> list[str]:
        """Evaluate every resource in order; with ``create`` make the missing ones. Returns addresses."""
        state_by_address = {r["address"]: r for r in run.state.get("resources", [])}
        desired: list[str] = []
        stats = stats if stats is not None else {"added": 0, "destroyed": 0}
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
                    values.append(self._read_data(run, session, res, address, cfg, create))
                    continue
                if not create:
                    problems = session.validate(res.type, cfg)
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
                        self._destroy_entry(run, session, entry)
                        stats["destroyed"] += 1
                    entry = None
                if entry is not None:
                    values.append(entry["attrs"])
                    continue
                if not create:
                    values.append(session.plan(res.type, cfg, index))
                    continue
                if run.should_stop():
                    raise TerraformError(
                        "the job was stopped; apply interrupted (state keeps what was created)"
                    )
                entry = self._create(run, session, res, address, index, cfg)
                stats["added"] += 1
                if replaced is not None:
                    self._destroy_entry(run, session, replaced)
                    stats["destroyed"] += 1
                values.append(entry["attrs"])
            target = (
                ctx.data_values.setdefault(res.type, {})
                if res.mode == "data"
                else ctx.resource_values.setdefault(res.type, {})
            )
            target[res.name] = values[0] if n is None else values
        return desired

    def _read_data(
        self, run: TerraformRun, session: Session, res: Resource, address: str, cfg: dict, create: bool
    ) -> dict[str, Any]:
        # the plan walk shows the provider's warnings; the apply walk reads again, quietly
        warn = run.log if not create else (lambda _line: None)
        try:
            value = session.read_data(res.type, cfg, warn=warn)
        except ProviderError as exc:
            raise TerraformError(f"{exc} (with {address}, {res.file} line {res.line})") from exc
        if create:
            run.log(f"{address}: Reading...")
            run.log(f"{address}: Read complete after 0s [id={value['id']}]")
        return value

    def _create(
        self, run: TerraformRun, session: Session, res: Resource, address: str, index: int | None, cfg: dict
    ) -> dict:
        run.log(f"{address}: Creating...")
        started = time.monotonic()
        made = session.create(res.type, address, index, cfg)
        entry = {
            "address": address,
            "mode": "managed",
            "type": res.type,
            "name": res.name,
            "index": index,
            "id": made.id,
            "attrs": made.attrs,
            "inventory_ids": made.handles,
        }
        run.state.setdefault("resources", []).append(entry)
        _apply_changes(run, made.changes)
        if made.error is not None:
            entry["tainted"] = True
            raise TerraformError(made.error)
        elapsed = int(time.monotonic() - started)
        run.log(f"{address}: Creation complete after {elapsed}s [id={made.id}]")
        return entry

    def _destroy_entry(self, run: TerraformRun, session: Session, entry: dict) -> None:
        run.log(f"{entry['address']}: Destroying... [id={entry['id']}]")
        started = time.monotonic()
        changes = session.delete(entry)
        run.state["resources"] = [
            r
            for r in run.state.get("resources", [])
            if not (r["address"] == entry["address"] and r["id"] == entry["id"])
        ]
        _apply_changes(run, changes)
        elapsed = int(time.monotonic() - started)
        run.log(f"{entry['address']}: Destruction complete after {elapsed}s")

    def _outputs(self, ctx: _Context) -> dict[str, dict[str, Any]]:
        out = {}
        for name, output in ctx.module.outputs.items():
            value = ctx.evaluate(output.value)
            out[name] = {"value": value, "type": _json_type(value), "sensitive": output.sensitive}
        return out


def _apply_changes(run: TerraformRun, changes: Changes) -> None:
    """What a refresh would read after a create or delete touched other objects: attributes that
    changed (a binding made or released), objects gone with the one deleted."""
    if not changes:
        return
    kept = []
    for other in run.state.get("resources", []):
        handles = other.get("inventory_ids") or []
        if any(changes.get(h, {}) is None for h in handles):
            run.log(f"{other['address']}: deleted with the instance it was bound to (auto_delete)")
            continue
        if handles and changes.get(handles[0]):
            other["attrs"].update(changes[handles[0]])
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
        if isinstance(exc, HclError | ProviderError):
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

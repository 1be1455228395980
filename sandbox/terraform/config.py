"""Load a Terraform root module (a folder of ``*.tf`` files) into plain Python structures.

Parsing is python-hcl2's, through the adapter :mod:`sandbox.terraform.hcl` (files -> the
sandbox's own syntax tree); this module turns that tree into :class:`Module` with variables,
locals, resources, data sources and outputs, each attribute kept as an expression tree for
:mod:`sandbox.terraform.expr` to evaluate later. Constructs the sandbox
does not interpret (modules, ``for_each``, provisioners, ``dynamic`` blocks, ...) are rejected
here with an error naming the file, line and construct.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.terraform.expr import Evaluator, HclError, Scope, references
from sandbox.terraform.hcl import Attr, Block, Body, TupleExpr, parse_config

__all__ = ["Attr", "Block", "Body", "ConfigError", "Module", "Output", "Resource", "Variable", "load_module"]


@dataclass
class Variable:
    name: str
    file: str
    line: int
    type_tree: Any = None
    type_source: str | None = None
    default: Attr | None = None
    description: str | None = None
    sensitive: bool = False
    nullable: bool = True
    validations: list[tuple[Attr, Attr | None]] = field(default_factory=list)


@dataclass
class Resource:
    mode: str  # "managed" or "data"
    type: str
    name: str
    body: Body
    file: str
    line: int
    count: Attr | None = None
    depends_on: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.type}.{self.name}" if self.mode == "managed" else f"data.{self.type}.{self.name}"


@dataclass
class Output:
    name: str
    value: Attr
    file: str
    line: int
    sensitive: bool = False
    description: str | None = None


@dataclass
class Module:
    directory: Path
    variables: dict[str, Variable] = field(default_factory=dict)
    locals: dict[str, Attr] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)  # address -> resource, file order
    outputs: dict[str, Output] = field(default_factory=dict)
    required_version: str | None = None
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)


class ConfigError(HclError):
    """The configuration cannot be loaded."""


_IGNORED_RESOURCE_BLOCKS = {"timeouts"}
_UNSUPPORTED_TOP = {"module", "moved", "import", "check", "removed", "ephemeral"}


def literal_string(attr: Attr | None, what: str) -> str | None:
    """Value of an attribute that must be a plain literal (descriptions, error messages)."""
    if attr is None:
        return None
    try:
        value = Evaluator(Scope(roots={}, base_dir=Path("."), filename=attr.file)).eval(attr.tree)
    except HclError as exc:
        raise ConfigError(f"{attr.file} line {attr.line}: {what} must be a literal: {exc}") from exc
    return value


def _literal_bool(attr: Attr | None, default: bool) -> bool:
    if attr is None:
        return default
    value = literal_string(attr, attr.name)
    if not isinstance(value, bool):
        raise ConfigError(f"{attr.file} line {attr.line}: '{attr.name}' must be true or false")
    return value


def _traversals(attr: Attr) -> list[tuple[str, ...]]:
    if not isinstance(attr.tree, TupleExpr):
        raise ConfigError(f"{attr.file} line {attr.line}: depends_on must be a list of references")
    return sorted(references(attr.tree))


def _check_resource_body(body: Body, file: str, address: str, top: bool) -> None:
    for block in body.blocks:
        if block.type in {"provisioner", "connection", "dynamic"}:
            raise ConfigError(
                f"{file} line {block.line}: '{block.type}' blocks are not supported by the sandbox "
                f"(in {address})"
            )
        if top and block.type == "lifecycle":
            for sub in block.body.blocks:
                raise ConfigError(
                    f"{file} line {sub.line}: lifecycle '{sub.type}' is not supported by the sandbox "
                    f"({address})"
                )
            continue
        _check_resource_body(block.body, file, address, top=False)


_CACHE: dict[tuple, Module] = {}
_CACHE_LOCK = threading.Lock()


def load_module(directory: Path | str) -> Module:
    """Parse every ``*.tf`` file of ``directory`` (sorted by name) into a :class:`Module`.

    Results are cached by the files' paths, sizes and modification times (a Module is never
    mutated after loading), so repeated plans of one workspace parse once.
    """
    directory = Path(directory)
    files = sorted(directory.glob("*.tf"))
    try:
        key = (str(directory.resolve()), *((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    except OSError:
        key = None
    if key is not None:
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:
            return cached
    module = _load_module(directory)
    if key is not None:
        with _CACHE_LOCK:
            if len(_CACHE) > 64:
                _CACHE.clear()
            _CACHE[key] = module
    return module


def _load_module(directory: Path) -> Module:
    module = Module(directory=directory)
    files = sorted(directory.glob("*.tf"))
    if not files:
        raise ConfigError(f"{directory}: no Terraform configuration files (*.tf)")
    if list(directory.glob("*.tf.json")):
        raise ConfigError(
            f"{directory}: JSON configuration files (*.tf.json) are not supported by the sandbox"
        )
    for path in files:
        try:
            body = parse_config(path.read_text(encoding="utf-8"), path.name)
        except ConfigError:
            raise
        except HclError as exc:
            raise ConfigError(str(exc)) from exc
        if body.attrs:
            first = next(iter(body.attrs.values()))
            raise ConfigError(f"{path.name} line {first.line}: unexpected top-level argument '{first.name}'")
        for block in body.blocks:
            _load_block(module, block)
    return module


def _load_block(module: Module, block: Block) -> None:
    file, line, kind = block.file, block.line, block.type
    where = f"{file} line {line}"
    if kind in _UNSUPPORTED_TOP:
        raise ConfigError(f"{where}: '{kind}' blocks are not supported by the sandbox")
    if kind == "terraform":
        rv = block.body.attrs.get("required_version")
        module.required_version = literal_string(rv, "required_version") if rv else None
        return
    if kind == "provider":
        module.providers[block.labels[0]] = {"file": file, "line": line}
        return
    if kind == "variable":
        (name,) = block.labels
        if name in module.variables:
            raise ConfigError(f"{where}: duplicate variable '{name}'")
        attrs = block.body.attrs
        unknown = set(attrs) - {"type", "default", "description", "sensitive", "nullable", "ephemeral"}
        if unknown:
            raise ConfigError(f"{where}: unsupported argument(s) {sorted(unknown)} in variable '{name}'")
        var = Variable(name=name, file=file, line=line)
        if "type" in attrs:
            var.type_tree = attrs["type"].tree
            var.type_source = attrs["type"].source
        var.default = attrs.get("default")
        var.description = literal_string(attrs.get("description"), "description")
        var.sensitive = _literal_bool(attrs.get("sensitive"), False)
        var.nullable = _literal_bool(attrs.get("nullable"), True)
        for sub in block.body.blocks:
            if sub.type != "validation":
                raise ConfigError(
                    f"{file} line {sub.line}: unsupported block '{sub.type}' in variable '{name}'"
                )
            cond = sub.body.attrs.get("condition")
            if cond is None:
                raise ConfigError(
                    f"{file} line {sub.line}: validation without condition in variable '{name}'"
                )
            var.validations.append((cond, sub.body.attrs.get("error_message")))
        module.variables[name] = var
        return
    if kind == "locals":
        for name, attr in block.body.attrs.items():
            if name in module.locals:
                raise ConfigError(f"{file} line {attr.line}: duplicate local value '{name}'")
            module.locals[name] = attr
        if block.body.blocks:
            raise ConfigError(f"{where}: blocks are not allowed in locals")
        return
    if kind in {"resource", "data"}:
        rtype, rname = block.labels
        mode = "managed" if kind == "resource" else "data"
        body = block.body
        if "for_each" in body.attrs:
            raise ConfigError(
                f"{where}: for_each is not supported by the sandbox (use count) in {rtype}.{rname}"
            )
        res = Resource(mode=mode, type=rtype, name=rname, body=body, file=file, line=line)
        res.count = body.attrs.get("count")
        if "depends_on" in body.attrs:
            res.depends_on = _traversals(body.attrs["depends_on"])
        _check_resource_body(body, file, res.address, top=True)
        if res.address in module.resources:
            raise ConfigError(f"{where}: duplicate {kind} {res.address}")
        module.resources[res.address] = res
        return
    if kind == "output":
        (name,) = block.labels
        attrs = block.body.attrs
        if "value" not in attrs:
            raise ConfigError(f"{where}: output '{name}' has no value")
        unknown = set(attrs) - {"value", "description", "sensitive", "depends_on"}
        if unknown or block.body.blocks:
            raise ConfigError(f"{where}: unsupported content in output '{name}'")
        module.outputs[name] = Output(
            name=name,
            value=attrs["value"],
            file=file,
            line=line,
            sensitive=_literal_bool(attrs.get("sensitive"), False),
            description=literal_string(attrs.get("description"), "description"),
        )
        return
    raise ConfigError(f"{where}: unsupported top-level block '{kind}'")

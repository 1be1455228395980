"""Evaluate Terraform expressions: the sandbox's syntax tree (:mod:`sandbox.terraform.hcl`) -> values.

It implements the part of the Terraform language that the project's ``terraform/`` folder uses,
plus the obvious neighbours (see ``docs/terraform.md``, section "What the sandbox interprets").
Anything else raises :class:`HclError` naming the construct, so a configuration the sandbox does
not understand fails loudly instead of producing wrong values.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sandbox.terraform.hcl import (
    Binary,
    Call,
    Conditional,
    Expr,
    For,
    GetAttr,
    HclError,
    Index,
    Literal,
    ObjectExpr,
    Splat,
    Template,
    TupleExpr,
    Unary,
    Var,
    parse_expression,
    parse_template,
)

__all__ = ["FUNCTIONS", "Evaluator", "HclError", "Scope", "parse_expression", "parse_template", "references"]


# -- values --------------------------------------------------------------------------------------


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "tuple"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def number_to_string(value: int | float) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        text = format(Decimal(repr(value)), "f")
        return text
    return str(value)


def to_string(value: Any, what: str = "value") -> str:
    """Terraform's implicit conversion to string (used by interpolation and string functions)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_to_string(value)
    if value is None:
        raise HclError(f"Invalid template interpolation value: {what} is null")
    raise HclError(f"Invalid template interpolation value: cannot include a {type_name(value)} in a string")


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise HclError("a bool is required... a number is required, got bool")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                raise HclError(f"cannot convert {value!r} to number") from None
    raise HclError(f"a number is required, got {type_name(value)}")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    raise HclError(f"a bool is required, got {type_name(value)} {value!r}")


def normalize_number(value: float) -> int | float:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


# -- scope ---------------------------------------------------------------------------------------


@dataclass
class Scope:
    """What names resolve to while evaluating one expression.

    ``roots`` maps a root identifier (``var``, ``local``, ``count``, ``path``, ``data``, a resource
    type such as ``ibm_is_vpc``) to a value or to a ``Mapping`` that is consulted lazily.
    ``base_dir`` is where ``file()``/``templatefile()`` resolve relative paths; ``filename`` names
    the file in error messages.
    """

    roots: Mapping[str, Any]
    base_dir: Path
    filename: str = "<expression>"

    def child(self, extra: dict[str, Any]) -> Scope:
        return Scope(roots={**self.roots, **extra}, base_dir=self.base_dir, filename=self.filename)


# -- expression evaluation -----------------------------------------------------------------------

_FILE_FUNCTIONS = {"templatefile", "file", "filebase64", "fileexists"}


class Evaluator:
    """Walks expression trees. One instance per scope; cheap to create."""

    def __init__(self, scope: Scope, functions: dict[str, Callable[..., Any]] | None = None) -> None:
        self.scope = scope
        self.functions = functions if functions is not None else FUNCTIONS

    def error(self, node: Any, message: str) -> HclError:
        line = getattr(node, "line", 0)
        return HclError(f"{self.scope.filename}{f' line {line}' if line else ''}: {message}")

    def eval(self, node: Expr) -> Any:
        method = getattr(self, "_" + type(node).__name__.lower(), None)
        if method is None:
            raise self.error(node, f"unsupported expression construct '{type(node).__name__}'")
        try:
            return method(node)
        except HclError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
            raise self.error(node, f"cannot evaluate {type(node).__name__}: {exc}") from exc

    def _literal(self, node: Literal) -> Any:
        return node.value

    def _var(self, node: Var) -> Any:
        if node.name not in self.scope.roots:
            raise self.error(node, f"unknown reference '{node.name}'")
        return self.scope.roots[node.name]

    def _template(self, node: Template) -> str:
        return self.render(node.parts)

    def _tupleexpr(self, node: TupleExpr) -> list[Any]:
        return [self.eval(item) for item in node.items]

    def _objectexpr(self, node: ObjectExpr) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items:
            name = key if isinstance(key, str) else to_string(self.eval(key), "object key")
            out[name] = self.eval(value)
        return out

    def _conditional(self, node: Conditional) -> Any:
        return self.eval(node.yes) if to_bool(self.eval(node.cond)) else self.eval(node.no)

    def _unary(self, node: Unary) -> Any:
        value = self.eval(node.operand)
        return (not to_bool(value)) if node.op == "!" else -to_number(value)

    def _binary(self, node: Binary) -> Any:
        op = node.op
        if op == "&&":
            return to_bool(self.eval(node.left)) and to_bool(self.eval(node.right))
        if op == "||":
            return to_bool(self.eval(node.left)) or to_bool(self.eval(node.right))
        left, right = self.eval(node.left), self.eval(node.right)
        if op == "==":
            return _equal(left, right)
        if op == "!=":
            return not _equal(left, right)
        a, b = to_number(left), to_number(right)
        if op == "/" and b == 0:
            raise self.error(node, "division by zero")
        operators: dict[str, Callable[[], Any]] = {
            "<": lambda: a < b,
            ">": lambda: a > b,
            "<=": lambda: a <= b,
            ">=": lambda: a >= b,
            "+": lambda: normalize_number(a + b),
            "-": lambda: normalize_number(a - b),
            "*": lambda: normalize_number(a * b),
            "/": lambda: normalize_number(a / b),
            "%": lambda: normalize_number(math.fmod(a, b)),
        }
        if op not in operators:
            raise self.error(node, f"unsupported operator {op}")
        return operators[op]()

    # traversal
    def _getattr(self, node: GetAttr) -> Any:
        return self.get_attr(self.eval(node.base), node.name, node)

    def get_attr(self, base: Any, name: str, node: Any) -> Any:
        if isinstance(base, Mapping):
            if name not in base:
                raise self.error(node, f"unsupported attribute '{name}'")
            return base[name]
        if isinstance(base, list):
            raise self.error(
                node, f"cannot read attribute '{name}' of a list (use [index] or [*]; is count set?)"
            )
        raise self.error(node, f"cannot read attribute '{name}' of a {type_name(base)}")

    def _index(self, node: Index) -> Any:
        return self.index(self.eval(node.base), self.eval(node.key), node)

    def index(self, base: Any, key: Any, node: Any) -> Any:
        if isinstance(base, list):
            i = to_number(key)
            if not isinstance(i, int) or i < 0 or i >= len(base):
                raise self.error(node, f"invalid index {key!r}: the list has {len(base)} element(s)")
            return base[i]
        if isinstance(base, Mapping):
            k = to_string(key)
            if k not in base:
                raise self.error(node, f"invalid index: key {k!r} does not exist")
            return base[k]
        raise self.error(node, f"cannot index a {type_name(base)}")

    def _splat(self, node: Splat) -> list[Any]:
        base = self.eval(node.base)
        items = base if isinstance(base, list) else ([] if base is None else [base])
        out = []
        for value in items:
            for kind, arg in node.steps:
                if kind == "attr":
                    value = self.get_attr(value, arg, node)
                else:
                    value = self.index(value, self.eval(arg), node)
            out.append(value)
        return out

    # functions
    def _call(self, node: Call) -> Any:
        name = node.name
        if name == "can":
            if len(node.args) != 1:
                raise self.error(node, "can() takes exactly one argument")
            try:
                self.eval(node.args[0])
                return True
            except HclError:
                return False
        if name == "try":
            last: HclError | None = None
            for arg in node.args:
                try:
                    return self.eval(arg)
                except HclError as exc:
                    last = exc
            raise self.error(node, f"no try() argument could be evaluated: {last}")
        func = self.functions.get(name)
        if func is None:
            raise self.error(node, f"call to unsupported function '{name}()'")
        args = [self.eval(a) for a in node.args]
        try:
            return func(self, *args) if name in _FILE_FUNCTIONS else func(*args)
        except HclError as exc:
            raise self.error(node, f"{name}(): {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, re.error, OverflowError) as exc:
            raise self.error(node, f"invalid call to {name}(): {exc}") from exc

    # for expressions and template directives
    def iterate(self, names: tuple[str, ...], coll: Any, node: Any) -> Iterator[Evaluator]:
        """One evaluator per element of ``coll``, with ``names`` bound (value, or key and value)."""
        if isinstance(coll, list):
            pairs: list[tuple[Any, Any]] = list(enumerate(coll))
        elif isinstance(coll, Mapping):
            pairs = sorted(coll.items())
        else:
            raise self.error(node, f"cannot iterate over a {type_name(coll)}")
        for k, v in pairs:
            binding = {names[0]: v} if len(names) == 1 else {names[0]: k, names[1]: v}
            yield Evaluator(self.scope.child(binding), self.functions)

    def _for(self, node: For) -> Any:
        out_list: list[Any] = []
        out_map: dict[str, Any] = {}
        for sub in self.iterate(node.names, self.eval(node.collection), node):
            if node.cond is not None and not to_bool(sub.eval(node.cond)):
                continue
            if node.key is None:
                out_list.append(sub.eval(node.value))
                continue
            key = to_string(sub.eval(node.key), "for key")
            if key in out_map:
                raise self.error(node, f"duplicate object key {key!r} in for expression")
            out_map[key] = sub.eval(node.value)
        return out_list if node.key is None else out_map

    def render(self, parts: tuple) -> str:
        """A template's text (a template that is one interpolation still yields a string here)."""
        out: list[str] = []
        for part in parts:
            kind = part[0]
            if kind == "lit":
                out.append(part[1])
            elif kind == "interp":
                out.append(to_string(self.eval(part[1]), "interpolated value"))
            elif kind == "if":
                out.append(self.render(part[2] if to_bool(self.eval(part[1])) else part[3]))
            else:  # for
                for sub in self.iterate(part[1], self.eval(part[2]), part[2]):
                    out.append(sub.render(part[3]))
        return "".join(out)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type_name(a) != type_name(b):
        return False
    return a == b


# -- functions -----------------------------------------------------------------------------------


def _resolve(ev: Evaluator, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ev.scope.base_dir / p


def _fn_file(ev: Evaluator, path: str) -> str:
    try:
        return _resolve(ev, path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HclError(f"no file exists at {path!r} ({exc.strerror})") from exc


def _fn_filebase64(ev: Evaluator, path: str) -> str:
    try:
        return base64.b64encode(_resolve(ev, path).read_bytes()).decode("ascii")
    except OSError as exc:
        raise HclError(f"no file exists at {path!r} ({exc.strerror})") from exc


def _fn_templatefile(ev: Evaluator, path: str, variables: dict[str, Any] | None = None) -> str:
    text = _fn_file(ev, path)
    if not isinstance(variables, dict):
        raise HclError("the second argument must be an object of template variables")
    parts = parse_template(text, str(path))
    # a template sees only its own variables (plus functions), like Terraform
    scope = Scope(roots=dict(variables), base_dir=ev.scope.base_dir, filename=Path(path).name)
    return Evaluator(scope, ev.functions).render(parts)


_FORMAT_RE = re.compile(
    r"%(?:(?P<pct>%)|(?P<flags>[-+ #0]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?(?P<verb>[a-zA-Z]))"
)


def _fn_format(spec: str, *args: Any) -> str:
    values = list(args)
    pos = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal pos
        if m.group("pct"):
            return "%"
        if pos >= len(values):
            raise HclError(f"not enough arguments for format string {spec!r}")
        value = values[pos]
        pos += 1
        verb, flags, width, prec = m.group("verb"), m.group("flags"), m.group("width"), m.group("prec")
        py_flags = flags.replace("#", "")
        if verb in {"s", "v"}:
            text = to_string(value) if not isinstance(value, list | dict) else json.dumps(value)
            return f"{text:{'<' if '-' in flags else '>'}{width}}" if width else text
        if verb == "q":
            return json.dumps(to_string(value))
        if verb == "d":
            number = to_number(value)
            if not isinstance(number, int):
                raise HclError(f"%d needs a whole number, got {value!r}")
            return ("%" + py_flags + width + "d") % number
        if verb in {"f", "e", "g"}:
            return ("%" + py_flags + width + (f".{prec}" if prec else "") + verb) % to_number(value)
        if verb == "t":
            return "true" if to_bool(value) else "false"
        raise HclError(f"unsupported format verb %{verb}")

    result = _FORMAT_RE.sub(repl, spec)
    return result


_DATE_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|[^A-Za-z']+")


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 timestamp, as Terraform's timestamp functions accept."""
    m = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value
    )
    if m is None:
        raise HclError(f"not a valid RFC3339 timestamp: {value!r}")
    text = value.upper().replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def _fn_formatdate(spec: str, timestamp: str) -> str:
    t = parse_timestamp(timestamp)
    out: list[str] = []
    for m in _DATE_TOKEN_RE.finditer(spec):
        tok = m.group(0)
        if tok.startswith("'"):
            out.append(tok[1:-1].replace("''", "'"))
            continue
        if not tok[0].isalpha():
            out.append(tok)
            continue
        table = {
            "YYYY": f"{t.year:04d}",
            "YY": f"{t.year % 100:02d}",
            "MM": f"{t.month:02d}",
            "M": str(t.month),
            "MMM": t.strftime("%b"),
            "MMMM": t.strftime("%B"),
            "DD": f"{t.day:02d}",
            "D": str(t.day),
            "EEE": t.strftime("%a"),
            "EEEE": t.strftime("%A"),
            "hh": f"{t.hour:02d}",
            "h": str(t.hour),
            "mm": f"{t.minute:02d}",
            "m": str(t.minute),
            "ss": f"{t.second:02d}",
            "s": str(t.second),
            "ZZZ": "UTC" if t.utcoffset().total_seconds() == 0 else t.strftime("%z"),
            "Z": "Z" if t.utcoffset().total_seconds() == 0 else t.isoformat()[-6:],
            "ZZZZ": t.strftime("%z"),
            "ZZZZZ": t.isoformat()[-6:] if t.utcoffset() else "+00:00",
        }
        if tok not in table:
            raise HclError(f"invalid date format verb {tok!r} in {spec!r} (quote literal letters)")
        out.append(table[tok])
    return "".join(out)


def _fn_regex(pattern: str, string: str) -> Any:
    m = re.search(pattern, string)
    if m is None:
        raise HclError("pattern did not match any part of the given string")
    if m.re.groupindex:
        return {k: m.group(k) for k in m.re.groupindex}
    if m.re.groups:
        return list(m.groups())
    return m.group(0)


def _fn_replace(string: str, search: str, replacement: str) -> str:
    string, search, replacement = to_string(string), to_string(search), to_string(replacement)
    if len(search) > 1 and search.startswith("/") and search.endswith("/"):
        repl = re.sub(
            r"\$(\d+)|\$\{(\w+)\}", lambda m: "\\g<" + (m.group(1) or m.group(2)) + ">", replacement
        )
        return re.sub(search[1:-1], repl, string)
    return string.replace(search, replacement)


def _fn_substr(string: str, offset: Any, length: Any) -> str:
    offset, length = int(to_number(offset)), int(to_number(length))
    if offset < 0:
        offset = len(string) + offset
    if offset < 0 or offset > len(string):
        raise HclError("offset out of range")
    return string[offset:] if length == -1 else string[offset : offset + length]


def _fn_length(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise HclError(f"length() of a {type_name(value)}")


def _fn_contains(collection: Any, value: Any) -> bool:
    if not isinstance(collection, list):
        raise HclError("contains() needs a list or set")
    return any(_equal(item, value) for item in collection)


def _fn_one(value: Any) -> Any:
    if not isinstance(value, list):
        raise HclError("one() needs a list")
    if len(value) > 1:
        raise HclError(f"one() got a list of {len(value)} elements")
    return value[0] if value else None


def _fn_cidrhost(prefix: str, hostnum: Any) -> str:
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError as exc:
        raise HclError(f"invalid CIDR expression: {exc}") from exc
    if "/" not in prefix:
        raise HclError(f"invalid CIDR expression {prefix!r}: no prefix length")
    n = int(to_number(hostnum))
    if n < 0:
        n = net.num_addresses + n
    if n < 0 or n >= net.num_addresses:
        raise HclError(f"prefix {prefix} has no host number {hostnum}")
    return str(net.network_address + n)


def _fn_jsondecode(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HclError(f"invalid JSON: {exc}") from exc


def _fn_tostring(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | dict):
        raise HclError(f"cannot convert {type_name(value)} to string")
    return to_string(value)


def _fn_jsonencode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda xs: all(to_bool(x) for x in xs),
    "anytrue": lambda xs: any(to_bool(x) for x in xs),
    "cidrhost": _fn_cidrhost,
    "contains": _fn_contains,
    "endswith": lambda s, suffix: to_string(s).endswith(to_string(suffix)),
    "file": _fn_file,
    "filebase64": _fn_filebase64,
    "floor": lambda x: math.floor(to_number(x)),
    "format": _fn_format,
    "formatdate": _fn_formatdate,
    "join": lambda sep, lst: to_string(sep).join(to_string(x) for x in lst),
    "jsondecode": _fn_jsondecode,
    "jsonencode": _fn_jsonencode,
    "keys": lambda m: sorted(m),
    "length": _fn_length,
    "one": _fn_one,
    "range": lambda *a: list(range(*[int(to_number(x)) for x in a])),
    "regex": _fn_regex,
    "replace": _fn_replace,
    "split": lambda sep, s: to_string(s).split(to_string(sep)),
    "startswith": lambda s, prefix: to_string(s).startswith(to_string(prefix)),
    "substr": _fn_substr,
    "templatefile": _fn_templatefile,
    "tostring": _fn_tostring,
    "trimprefix": lambda s, p: to_string(s).removeprefix(to_string(p)),
    "upper": lambda s: to_string(s).upper(),
}


# -- static analysis -----------------------------------------------------------------------------


def references(node: Any) -> set[tuple[str, ...]]:
    """Traversals an expression makes, as tuples of up to three leading names.

    ``ibm_is_vpc.vpc.id`` gives ``("ibm_is_vpc", "vpc", "id")``; ``data.ibm_is_image.image.id``
    gives ``("data", "ibm_is_image", "image")``. Names bound by for expressions are included too;
    callers ignore roots they do not know.
    """
    found: set[tuple[str, ...]] = set()

    def chain(expr: Any) -> list[str] | None:
        """Leading names of a traversal rooted at a name, else None."""
        if isinstance(expr, Var):
            return [expr.name]
        if isinstance(expr, GetAttr | Index | Splat):
            base = chain(expr.base)
            if base is None:
                return None
            return [*base, expr.name] if isinstance(expr, GetAttr) else [*base, "[]"]
        return None

    def walk(expr: Any, in_chain: bool = False) -> None:
        names = chain(expr)
        if names is not None and not in_chain:
            cut = names[:3]
            found.add(tuple(cut[: cut.index("[]")] if "[]" in cut else cut))
        if isinstance(expr, Index):
            walk(expr.base, names is not None)
            walk(expr.key)
        elif isinstance(expr, Splat):
            walk(expr.base, names is not None)
            for kind, arg in expr.steps:
                if kind == "index":
                    walk(arg)
        elif isinstance(expr, GetAttr):
            walk(expr.base, names is not None)
        elif isinstance(expr, Template):
            walk_parts(expr.parts)
        elif isinstance(expr, ObjectExpr):
            for key, value in expr.items:
                if not isinstance(key, str):
                    walk(key)
                walk(value)
        elif isinstance(expr, TupleExpr | Call):
            for item in expr.items if isinstance(expr, TupleExpr) else expr.args:
                walk(item)
        elif isinstance(expr, Expr) and not isinstance(expr, Var | Literal):
            for value in vars(expr).values():
                if isinstance(value, Expr):
                    walk(value)

    def walk_parts(parts: tuple) -> None:
        for part in parts:
            for piece in part[1:]:
                if isinstance(piece, Expr):
                    walk(piece)
                elif isinstance(piece, tuple) and piece and isinstance(piece[0], tuple):
                    walk_parts(piece)

    walk(node)
    return found

"""Evaluate Terraform (HCL2) expressions from python-hcl2's parse tree.

python-hcl2 parses the configuration with its Lark grammar (``hcl2.api.parses_to_tree``); this
module walks that raw tree. It implements the part of the Terraform language that the project's
``terraform/`` folder uses, plus the obvious neighbours (see ``docs/terraform.md``, section
"What the sandbox interprets"). Anything else raises :class:`HclError` naming the construct, so a
configuration the sandbox does not understand fails loudly instead of producing wrong values.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hcl2.api import parses_to_tree
from lark import Token, Tree


class HclError(Exception):
    """A configuration error: unsupported construct, bad reference, failed function call."""


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
    locals_: dict[str, Any] = field(default_factory=dict)

    def child(self, extra: dict[str, Any]) -> Scope:
        merged = dict(self.roots)
        merged.update(extra)
        return Scope(roots=merged, base_dir=self.base_dir, filename=self.filename)


_MISSING = object()


# -- expression evaluation -----------------------------------------------------------------------


def _line(tree: Any) -> str:
    meta = getattr(tree, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return f" line {meta.line}"
    if isinstance(tree, Token) and tree.line is not None:
        return f" line {tree.line}"
    return ""


def _children(tree: Tree) -> list[Any]:
    """Children without newline/comment nodes and punctuation tokens."""
    out = []
    for c in tree.children:
        if isinstance(c, Tree) and c.data == "new_line_or_comment":
            continue
        if isinstance(c, Token) and c.type in {
            "LPAR",
            "RPAR",
            "LSQB",
            "RSQB",
            "LBRACE",
            "RBRACE",
            "COMMA",
            "EQ",
            "COLON",
            "DOT",
            "INTERP_START",
            "DIRECTIVE_START",
            "DBLQUOTE",
            "QMARK",
            "FOR_OBJECT_ARROW",
        }:
            continue
        out.append(c)
    return out


class Evaluator:
    """Walks expression trees. One instance per scope; cheap to create."""

    def __init__(self, scope: Scope, functions: dict[str, Callable[..., Any]] | None = None) -> None:
        self.scope = scope
        self.functions = functions if functions is not None else FUNCTIONS

    def error(self, tree: Any, message: str) -> HclError:
        return HclError(f"{self.scope.filename}{_line(tree)}: {message}")

    def eval(self, tree: Any) -> Any:
        if isinstance(tree, Token):
            raise self.error(tree, f"unsupported token {tree.type} {str(tree)!r}")
        method = getattr(self, "_" + tree.data, None)
        if method is None:
            raise self.error(tree, f"unsupported expression construct '{tree.data}'")
        try:
            return method(tree)
        except HclError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
            raise self.error(tree, f"cannot evaluate {tree.data}: {exc}") from exc

    # structure
    def _expr_term(self, tree: Tree) -> Any:
        kids = _children(tree)
        if len(kids) != 1:
            raise self.error(tree, "malformed expression term")
        return self.eval(kids[0])

    _expression = _expr_term

    def _int_lit(self, tree: Tree) -> int:
        return int(str(tree.children[0]))

    def _float_lit(self, tree: Tree) -> int | float:
        return normalize_number(float(str(tree.children[0])))

    def _literal_value(self, tree: Tree) -> Any:
        return {"true": True, "false": False, "null": None}[str(tree.children[0])]

    def _identifier(self, tree: Tree) -> Any:
        name = str(tree.children[0])
        value = self.scope.roots.get(name, _MISSING) if name in self.scope.roots else _MISSING
        if value is _MISSING:
            raise self.error(tree, f"unknown reference '{name}'")
        return value

    def _string(self, tree: Tree) -> str:
        parts = parts_from_string_tree(tree, self.scope.filename)
        return render_template(parse_template_parts(parts, self.scope.filename), self)

    def _heredoc_template(self, tree: Tree) -> str:
        return self._heredoc(str(tree.children[0]), trim=False, tree=tree)

    def _heredoc_template_trim(self, tree: Tree) -> str:
        return self._heredoc(str(tree.children[0]), trim=True, tree=tree)

    def _heredoc(self, raw: str, *, trim: bool, tree: Tree) -> str:
        lines = raw.split("\n")
        # first line is <<MARKER, last two are "  MARKER" and "" (the terminal ends in a newline)
        body_lines = lines[1:-2]
        if trim:
            indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body_lines if ln.strip()]
            cut = min(indents) if indents else 0
            body_lines = [ln[cut:] for ln in body_lines]
        text = "\n".join(body_lines) + ("\n" if body_lines else "")
        return render_template(parse_template_text(text, self.scope.filename), self)

    def _template_string(self, tree: Tree) -> str:
        raise self.error(tree, "unsupported escaped-quote template string")

    def _tuple(self, tree: Tree) -> list[Any]:
        return [self.eval(c) for c in _children(tree)]

    def _object(self, tree: Tree) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for elem in _children(tree):
            key_tree, value_tree = _children(elem)
            key_expr = _children(key_tree)[0]
            # a bare identifier key is the literal name, as in Terraform
            if (
                isinstance(key_expr, Tree)
                and key_expr.data == "expr_term"
                and isinstance(_children(key_expr)[0], Tree)
                and _children(key_expr)[0].data == "identifier"
            ):
                key = str(_children(key_expr)[0].children[0])
            elif isinstance(key_expr, Tree) and key_expr.data == "keyword":
                key = str(key_expr.children[0])
            else:
                key = to_string(self.eval(key_expr), "object key")
            out[key] = self.eval(value_tree)
        return out

    # operators
    def _conditional(self, tree: Tree) -> Any:
        cond, yes, no = _children(tree)
        return self.eval(yes) if to_bool(self.eval(cond)) else self.eval(no)

    def _unary_op(self, tree: Tree) -> Any:
        op, operand = tree.children[0], _children(tree)[-1]
        value = self.eval(operand)
        if str(op) == "!":
            return not to_bool(value)
        return -to_number(value)

    def _binary_op(self, tree: Tree) -> Any:
        kids = _children(tree)
        left_tree, term = kids[0], kids[1]
        term_kids = _children(term)
        op = str(term_kids[0].children[0]).strip()
        right_tree = term_kids[1]
        if op == "&&":
            return to_bool(self.eval(left_tree)) and to_bool(self.eval(right_tree))
        if op == "||":
            return to_bool(self.eval(left_tree)) or to_bool(self.eval(right_tree))
        left, right = self.eval(left_tree), self.eval(right_tree)
        if op == "==":
            return _equal(left, right)
        if op == "!=":
            return not _equal(left, right)
        a, b = to_number(left), to_number(right)
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        if op == ">=":
            return a >= b
        if op == "+":
            return normalize_number(a + b)
        if op == "-":
            return normalize_number(a - b)
        if op == "*":
            return normalize_number(a * b)
        if op == "/":
            if b == 0:
                raise self.error(tree, "division by zero")
            return normalize_number(a / b)
        if op == "%":
            return normalize_number(math.fmod(a, b))
        raise self.error(tree, f"unsupported operator {op}")

    # traversal
    def _get_attr_expr_term(self, tree: Tree) -> Any:
        base_tree, attr = _children(tree)
        return self._get_attr_of(self.eval(base_tree), attr)

    def _get_attr_of(self, base: Any, attr: Tree) -> Any:
        name = str(_children(attr)[0].children[0])
        if isinstance(base, Mapping):
            if name not in base:
                raise self.error(attr, f"unsupported attribute '{name}'")
            return base[name]
        if isinstance(base, list):
            raise self.error(
                attr, f"cannot read attribute '{name}' of a list (use [index] or [*]; is count set?)"
            )
        raise self.error(attr, f"cannot read attribute '{name}' of a {type_name(base)}")

    def _index_expr_term(self, tree: Tree) -> Any:
        base_tree, index = _children(tree)
        return self._index_of(self.eval(base_tree), index)

    def _index_of(self, base: Any, index: Tree) -> Any:
        if index.data == "short_index":
            key: Any = int(str(index.children[-1]))
        else:
            key = self.eval(_children(index)[0])
        if isinstance(base, list):
            i = to_number(key)
            if not isinstance(i, int) or i < 0 or i >= len(base):
                raise self.error(index, f"invalid index {key!r}: the list has {len(base)} element(s)")
            return base[i]
        if isinstance(base, Mapping):
            k = to_string(key)
            if k not in base:
                raise self.error(index, f"invalid index: key {k!r} does not exist")
            return base[k]
        raise self.error(index, f"cannot index a {type_name(base)}")

    def _apply_steps(self, value: Any, steps: list[Tree]) -> Any:
        for step in steps:
            get = self._get_attr_of if step.data == "get_attr" else self._index_of
            value = get(value, step)
        return value

    def _full_splat_expr_term(self, tree: Tree) -> Any:
        base_tree, splat = _children(tree)
        base = self.eval(base_tree)
        items = base if isinstance(base, list) else ([] if base is None else [base])
        steps = [c for c in _children(splat) if isinstance(c, Tree)]
        return [self._apply_steps(item, steps) for item in items]

    def _attr_splat_expr_term(self, tree: Tree) -> Any:
        base_tree, splat = _children(tree)
        base = self.eval(base_tree)
        items = base if isinstance(base, list) else ([] if base is None else [base])
        steps = [c for c in _children(splat) if isinstance(c, Tree)]
        return [self._apply_steps(item, steps) for item in items]

    # functions
    def _function_call(self, tree: Tree) -> Any:
        kids = _children(tree)
        if any(isinstance(k, Token) and k.type == "COLONS" for k in kids):
            raise self.error(tree, "provider-defined functions are not supported")
        name = str(kids[0].children[0])
        args_tree = kids[1] if len(kids) > 1 else None
        arg_trees = _children(args_tree) if args_tree is not None else []
        if any(isinstance(a, Token) and a.type == "ELLIPSIS" for a in arg_trees):
            raise self.error(tree, f"argument expansion (...) in {name}() is not supported")
        arg_trees = [a for a in arg_trees if not isinstance(a, Token)]
        if name == "can":
            if len(arg_trees) != 1:
                raise self.error(tree, "can() takes exactly one argument")
            try:
                self.eval(arg_trees[0])
                return True
            except HclError:
                return False
        if name == "try":
            last: HclError | None = None
            for a in arg_trees:
                try:
                    return self.eval(a)
                except HclError as exc:
                    last = exc
            raise self.error(tree, f"no try() argument could be evaluated: {last}")
        func = self.functions.get(name)
        if func is None:
            raise self.error(tree, f"call to unsupported function '{name}()'")
        args = [self.eval(a) for a in arg_trees]
        try:
            if name in {"templatefile", "file", "filebase64", "fileexists"}:
                return func(self, *args)
            return func(*args)
        except HclError as exc:
            raise self.error(tree, f"{name}(): {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, re.error, OverflowError) as exc:
            raise self.error(tree, f"invalid call to {name}(): {exc}") from exc

    # for expressions
    def _for_iter(self, intro: Tree) -> tuple[list[str], Any]:
        kids = [c for c in _children(intro) if isinstance(c, Tree)]
        names = [str(k.children[0]) for k in kids if k.data == "identifier"]
        coll_tree = kids[-1]
        return names, self.eval(coll_tree)

    def _iterate(self, names: list[str], coll: Any, tree: Tree):
        if isinstance(coll, list):
            pairs = list(enumerate(coll))
        elif isinstance(coll, Mapping):
            pairs = sorted(coll.items())
        else:
            raise self.error(tree, f"cannot iterate over a {type_name(coll)}")
        for k, v in pairs:
            if len(names) == 1:
                yield {names[0]: v}
            else:
                yield {names[0]: k, names[1]: v}

    def _for_parts(self, tree: Tree) -> tuple[Tree, list[Tree], Tree | None]:
        kids = [c for c in _children(tree) if isinstance(c, Tree)]
        intro = kids[0]
        cond = kids[-1] if kids[-1].data == "for_cond" else None
        exprs = [k for k in kids[1:] if k is not cond]
        return intro, exprs, cond

    def _for_tuple_expr(self, tree: Tree) -> list[Any]:
        intro, exprs, cond = self._for_parts(tree)
        names, coll = self._for_iter(intro)
        out = []
        for binding in self._iterate(names, coll, tree):
            sub = Evaluator(self.scope.child(binding), self.functions)
            if cond is not None and not to_bool(sub.eval(_children(cond)[-1])):
                continue
            out.append(sub.eval(exprs[0]))
        return out

    def _for_object_expr(self, tree: Tree) -> dict[str, Any]:
        if any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in tree.children):
            raise self.error(tree, "grouping mode (...) in for expressions is not supported")
        intro, exprs, cond = self._for_parts(tree)
        names, coll = self._for_iter(intro)
        out: dict[str, Any] = {}
        for binding in self._iterate(names, coll, tree):
            sub = Evaluator(self.scope.child(binding), self.functions)
            if cond is not None and not to_bool(sub.eval(_children(cond)[-1])):
                continue
            key = to_string(sub.eval(exprs[0]), "for key")
            if key in out:
                raise self.error(tree, f"duplicate object key {key!r} in for expression")
            out[key] = sub.eval(exprs[1])
        return out


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type_name(a) != type_name(b):
        return False
    return a == b


# -- templates -----------------------------------------------------------------------------------
# A template is a list of parts: ("lit", text) | ("interp", tree) | ("if", tree) | ("else",)
# | ("endif",) | ("for", [names], tree) | ("endfor",). Strip markers are applied while parsing.

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def unescape_string_chars(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u":
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt == "U":
                out.append(chr(int(raw[i + 2 : i + 10], 16)))
                i += 10
                continue
            raise HclError(f"invalid escape sequence \\{nxt}")
        out.append(ch)
        i += 1
    return "".join(out)


def _directive_from_tree(node: Tree, filename: str) -> tuple[tuple, bool, bool]:
    toks = node.children
    strip_left = len(toks) > 1 and isinstance(toks[1], Token) and toks[1].type == "STRIP_MARKER"
    strip_right = len(toks) > 1 and isinstance(toks[-2], Token) and toks[-2].type == "STRIP_MARKER"
    trees = [c for c in toks if isinstance(c, Tree)]
    if node.data == "template_if_start":
        return ("if", trees[0]), strip_left, strip_right
    if node.data == "template_else":
        return ("else",), strip_left, strip_right
    if node.data == "template_endif":
        return ("endif",), strip_left, strip_right
    if node.data == "template_for_start":
        names = [str(t.children[0]) for t in trees if t.data == "identifier"]
        return ("for", names, trees[-1]), strip_left, strip_right
    if node.data == "template_endfor":
        return ("endfor",), strip_left, strip_right
    raise HclError(f"{filename}{_line(node)}: unsupported template directive '{node.data}'")


def _strip(parts: list[tuple], strips: list[tuple[bool, bool]]) -> list[tuple]:
    out = list(parts)
    for i, (left, right) in enumerate(strips):
        if left and i > 0 and out[i - 1][0] == "lit":
            out[i - 1] = ("lit", out[i - 1][1].rstrip())
        if right and i + 1 < len(out) and out[i + 1][0] == "lit":
            out[i + 1] = ("lit", out[i + 1][1].lstrip())
    return [p for p in out if not (p[0] == "lit" and p[1] == "")]


def parts_from_string_tree(tree: Tree, filename: str) -> list[tuple]:
    parts: list[tuple] = []
    strips: list[tuple[bool, bool]] = []
    for sp in tree.children:
        if isinstance(sp, Token):  # the quotes
            continue
        child = sp.children[0]
        if isinstance(child, Token):
            if child.type == "ESCAPED_INTERPOLATION" or child.type == "ESCAPED_DIRECTIVE":
                parts.append(("lit", str(child)[1:]))
            else:
                parts.append(("lit", unescape_string_chars(str(child))))
            strips.append((False, False))
        elif child.data == "interpolation":
            toks = child.children
            expr = next(c for c in toks if isinstance(c, Tree))
            left = any(isinstance(t, Token) and t.type == "STRIP_MARKER" for t in toks[:2])
            right = any(isinstance(t, Token) and t.type == "STRIP_MARKER" for t in toks[-2:])
            parts.append(("interp", expr))
            strips.append((left, right))
        else:
            part, left, right = _directive_from_tree(child, filename)
            parts.append(part)
            strips.append((left, right))
    return _strip(parts, strips)


def _parse_inline_expression(source: str, filename: str, line: int) -> Tree:
    try:
        tree = parses_to_tree(f"__expr = {source}\n")
    except Exception as exc:
        raise HclError(f"{filename} line {line}: cannot parse template expression {source!r}: {exc}") from exc
    body = tree.children[0]
    attrs = [c for c in body.children if isinstance(c, Tree) and c.data == "attribute"]
    if len(attrs) != 1:
        raise HclError(f"{filename} line {line}: cannot parse template expression {source!r}")
    return _children(attrs[0])[-1]


def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${``/``%{`` whose body starts at ``start``."""
    depth = 0
    i = start
    in_str = False
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


_DIRECTIVE_RE = re.compile(
    r"^(?:(?P<if>if)\s+(?P<cond>.+)|(?P<else>else)|(?P<endif>endif)|"
    r"(?P<for>for)\s+(?P<names>[A-Za-z_][\w-]*(?:\s*,\s*[A-Za-z_][\w-]*)?)\s+in\s+(?P<coll>.+)|"
    r"(?P<endfor>endfor))$",
    re.S,
)


@functools.lru_cache(maxsize=128)
def parse_template_text(text: str, filename: str) -> tuple[tuple, ...]:
    """Split template text (a templatefile() file or a heredoc body) into template parts (cached)."""
    return tuple(_parse_template_text(text, filename))


def _parse_template_text(text: str, filename: str) -> list[tuple]:
    parts: list[tuple] = []
    strips: list[tuple[bool, bool]] = []
    buf: list[str] = []
    i = 0

    def flush() -> None:
        if buf:
            parts.append(("lit", "".join(buf)))
            strips.append((False, False))
            buf.clear()

    while i < len(text):
        if text.startswith("$${", i) or text.startswith("%%{", i):
            buf.append(text[i + 1 : i + 3])
            i += 3
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            kind = text[i]
            close = _find_close(text, i + 2)
            line = text.count("\n", 0, i) + 1
            if close < 0:
                raise HclError(f"{filename} line {line}: unterminated template sequence")
            inner = text[i + 2 : close]
            left = inner.startswith("~")
            right = inner.endswith("~")
            inner = inner[1 if left else 0 : len(inner) - (1 if right else 0)].strip()
            flush()
            if kind == "$":
                parts.append(("interp", _parse_inline_expression(inner, filename, line)))
            else:
                m = _DIRECTIVE_RE.match(inner)
                if m is None:
                    raise HclError(f"{filename} line {line}: unsupported template directive %{{{inner}}}")
                if m.group("if"):
                    parts.append(("if", _parse_inline_expression(m.group("cond"), filename, line)))
                elif m.group("else"):
                    parts.append(("else",))
                elif m.group("endif"):
                    parts.append(("endif",))
                elif m.group("for"):
                    names = [n.strip() for n in m.group("names").split(",")]
                    parts.append(("for", names, _parse_inline_expression(m.group("coll"), filename, line)))
                else:
                    parts.append(("endfor",))
            strips.append((left, right))
            i = close + 1
            continue
        buf.append(text[i])
        i += 1
    flush()
    return _strip(parts, strips)


def parse_template_parts(parts: list[tuple] | tuple[tuple, ...], filename: str) -> list[Any]:
    """Nest flat template parts into a node list: literals, interps, ("if", c, then, else), ("for", ...)."""
    pos = 0

    def block(until: set[str]) -> tuple[list[Any], str | None]:
        nonlocal pos
        nodes: list[Any] = []
        while pos < len(parts):
            part = parts[pos]
            pos += 1
            kind = part[0]
            if kind in until:
                return nodes, kind
            if kind in {"lit", "interp"}:
                nodes.append(part)
            elif kind == "if":
                then, end = block({"else", "endif"})
                otherwise: list[Any] = []
                if end == "else":
                    otherwise, end = block({"endif"})
                if end != "endif":
                    raise HclError(f"{filename}: %{{if}} without %{{endif}}")
                nodes.append(("if", part[1], then, otherwise))
            elif kind == "for":
                body, end = block({"endfor"})
                if end != "endfor":
                    raise HclError(f"{filename}: %{{for}} without %{{endfor}}")
                nodes.append(("for", part[1], part[2], body))
            else:
                raise HclError(f"{filename}: unexpected %{{{kind}}}")
        return nodes, None

    nodes, _ = block(set())
    return nodes


def render_template(nodes: list[Any], ev: Evaluator) -> str:
    # a template that is a single interpolation yields the value itself in Terraform; here strings only
    out: list[str] = []
    for node in nodes:
        kind = node[0]
        if kind == "lit":
            out.append(node[1])
        elif kind == "interp":
            out.append(to_string(ev.eval(node[1]), "interpolated value"))
        elif kind == "if":
            branch = node[2] if to_bool(ev.eval(node[1])) else node[3]
            out.append(render_template(branch, ev))
        elif kind == "for":
            names, coll = node[1], ev.eval(node[2])
            for binding in ev._iterate(names, coll, node[2]):
                out.append(render_template(node[3], Evaluator(ev.scope.child(binding), ev.functions)))
    return "".join(out)


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


def _fn_fileexists(ev: Evaluator, path: str) -> bool:
    return _resolve(ev, path).is_file()


def _fn_templatefile(ev: Evaluator, path: str, variables: dict[str, Any] | None = None) -> str:
    text = _fn_file(ev, path)
    if not isinstance(variables, dict):
        raise HclError("the second argument must be an object of template variables")
    nodes = parse_template_parts(parse_template_text(text, str(path)), str(path))
    # a template sees only its own variables (plus functions), like Terraform
    scope = Scope(roots=dict(variables), base_dir=ev.scope.base_dir, filename=Path(path).name)
    return render_template(nodes, Evaluator(scope, ev.functions))


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


def _fn_timeadd(timestamp: str, duration: str) -> str:
    t = parse_timestamp(timestamp)
    total = 0.0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    sign = -1 if duration.startswith("-") else 1
    body = duration.lstrip("+-")
    matches = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", body)
    if not matches or "".join(a + b for a, b in matches) != body:
        raise HclError(f"invalid duration {duration!r}")
    for amount, unit in matches:
        total += float(amount) * units[unit]
    from datetime import timedelta

    result = (t + timedelta(seconds=sign * total)).astimezone(UTC)
    return result.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fn_regex(pattern: str, string: str) -> Any:
    m = re.search(pattern, string)
    if m is None:
        raise HclError("pattern did not match any part of the given string")
    if m.re.groupindex:
        return {k: m.group(k) for k in m.re.groupindex}
    if m.re.groups:
        return list(m.groups())
    return m.group(0)


def _fn_regexall(pattern: str, string: str) -> list[Any]:
    out = []
    compiled = re.compile(pattern)
    for m in compiled.finditer(string):
        if compiled.groupindex:
            out.append({k: m.group(k) for k in compiled.groupindex})
        elif compiled.groups:
            out.append(list(m.groups()))
        else:
            out.append(m.group(0))
    return out


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


def _fn_lookup(mapping: dict[str, Any], key: str, *default: Any) -> Any:
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise HclError(f"lookup failed to find key {key!r}")


def _fn_element(values: list[Any], index: Any) -> Any:
    if not values:
        raise HclError("element() of an empty list")
    return values[int(to_number(index)) % len(values)]


def _fn_coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    raise HclError("no non-null, non-empty-string arguments")


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


def _fn_cidrsubnet(prefix: str, newbits: Any, netnum: Any) -> str:
    net = ipaddress.ip_network(prefix, strict=False)
    subnets = list(net.subnets(prefixlen_diff=int(to_number(newbits))))
    return str(subnets[int(to_number(netnum))])


def _fn_jsondecode(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HclError(f"invalid JSON: {exc}") from exc


def _fn_flatten(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out.extend(_fn_flatten(v) if isinstance(v, list) else [v])
    return out


def _fn_indent(spaces: Any, string: str) -> str:
    pad = " " * int(to_number(spaces))
    lines = string.split("\n")
    return "\n".join([lines[0]] + [(pad + ln) if ln else ln for ln in lines[1:]])


def _fn_merge(*maps: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise HclError("merge() arguments must be maps or objects")
        out.update(m)
    return out


def _fn_tonumber(value: Any) -> Any:
    return None if value is None else to_number(value)


def _fn_tostring(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | dict):
        raise HclError(f"cannot convert {type_name(value)} to string")
    return to_string(value)


def _fn_jsonencode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _distinct(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(_equal(v, o) for o in out):
            out.append(v)
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": lambda x: abs(to_number(x)),
    "alltrue": lambda xs: all(to_bool(x) for x in xs),
    "anytrue": lambda xs: any(to_bool(x) for x in xs),
    "base64decode": lambda s: base64.b64decode(s).decode("utf-8"),
    "base64encode": lambda s: base64.b64encode(to_string(s).encode()).decode("ascii"),
    "ceil": lambda x: math.ceil(to_number(x)),
    "chomp": lambda s: re.sub(r"[\r\n]+$", "", s),
    "cidrhost": _fn_cidrhost,
    "cidrsubnet": _fn_cidrsubnet,
    "coalesce": _fn_coalesce,
    "compact": lambda xs: [x for x in xs if x is not None and x != ""],
    "concat": lambda *ls: [x for lst in ls for x in lst],
    "contains": _fn_contains,
    "distinct": _distinct,
    "element": _fn_element,
    "endswith": lambda s, suffix: to_string(s).endswith(to_string(suffix)),
    "file": _fn_file,
    "filebase64": _fn_filebase64,
    "fileexists": _fn_fileexists,
    "flatten": _fn_flatten,
    "floor": lambda x: math.floor(to_number(x)),
    "format": _fn_format,
    "formatdate": _fn_formatdate,
    "indent": _fn_indent,
    "join": lambda sep, lst: to_string(sep).join(to_string(x) for x in lst),
    "jsondecode": _fn_jsondecode,
    "jsonencode": _fn_jsonencode,
    "keys": lambda m: sorted(m),
    "length": _fn_length,
    "lookup": _fn_lookup,
    "lower": lambda s: to_string(s).lower(),
    "max": lambda *xs: normalize_number(max(to_number(x) for x in xs)),
    "md5": lambda s: hashlib.md5(to_string(s).encode(), usedforsecurity=False).hexdigest(),
    "merge": _fn_merge,
    "min": lambda *xs: normalize_number(min(to_number(x) for x in xs)),
    "nonsensitive": lambda x: x,
    "one": _fn_one,
    "range": lambda *a: list(range(*[int(to_number(x)) for x in a])),
    "regex": _fn_regex,
    "regexall": _fn_regexall,
    "replace": _fn_replace,
    "sensitive": lambda x: x,
    "sha256": lambda s: hashlib.sha256(to_string(s).encode()).hexdigest(),
    "split": lambda sep, s: to_string(s).split(to_string(sep)),
    "startswith": lambda s, prefix: to_string(s).startswith(to_string(prefix)),
    "substr": _fn_substr,
    "templatefile": _fn_templatefile,
    "timeadd": _fn_timeadd,
    "tobool": lambda x: None if x is None else to_bool(x),
    "tolist": lambda xs: list(xs),
    "tomap": lambda m: dict(m),
    "tonumber": _fn_tonumber,
    "toset": lambda xs: sorted(_distinct(list(xs)), key=lambda v: json.dumps(v, sort_keys=True)),
    "tostring": _fn_tostring,
    "trim": lambda s, chars: to_string(s).strip(chars),
    "trimprefix": lambda s, p: to_string(s).removeprefix(to_string(p)),
    "trimspace": lambda s: to_string(s).strip(),
    "trimsuffix": lambda s, p: to_string(s).removesuffix(to_string(p)),
    "upper": lambda s: to_string(s).upper(),
    "values": lambda m: [m[k] for k in sorted(m)],
}


# -- static analysis -----------------------------------------------------------------------------


def references(tree: Any) -> set[tuple[str, ...]]:
    """Traversals an expression makes, as tuples of up to three leading names.

    ``ibm_is_vpc.vpc.id`` gives ``("ibm_is_vpc", "vpc", "id")``; ``data.ibm_is_image.image.id``
    gives ``("data", "ibm_is_image", "image")``. Names bound by for expressions are included too;
    callers ignore roots they do not know.
    """
    found: set[tuple[str, ...]] = set()

    def chain(node: Any) -> list[str] | None:
        """Leading names of a traversal rooted at an identifier, else None."""
        if not isinstance(node, Tree):
            return None
        if node.data == "expr_term":
            kids = _children(node)
            return chain(kids[0]) if len(kids) == 1 else None
        if node.data == "identifier":
            return [str(node.children[0])]
        if node.data in {
            "get_attr_expr_term",
            "index_expr_term",
            "full_splat_expr_term",
            "attr_splat_expr_term",
        }:
            kids = _children(node)
            base = chain(kids[0])
            if base is None:
                return None
            if node.data == "get_attr_expr_term":
                return [*base, str(_children(kids[1])[0].children[0])]
            return [*base, "[]"]
        return None

    def walk(node: Any, in_chain: bool = False) -> None:
        if not isinstance(node, Tree) or node.data == "get_attr":  # attribute names are not references
            return
        names = chain(node)
        if names is not None:
            if not in_chain:
                cut = names[:3]
                if "[]" in cut:
                    cut = cut[: cut.index("[]")]
                found.add(tuple(cut))
            if node.data == "identifier":
                return
            kids = _children(node)
            walk(kids[0], True)  # the base of the same traversal
            for kid in kids[1:]:  # index expressions and splat steps are references of their own
                walk(kid)
            return
        if node.data == "function_call":
            for c in _children(node)[1:]:
                walk(c)
            return
        if node.data == "object_elem_key":
            kids = _children(node)
            # a bare identifier key is a literal, not a reference
            if (
                kids
                and isinstance(kids[0], Tree)
                and kids[0].data == "expr_term"
                and isinstance(_children(kids[0])[0], Tree)
                and _children(kids[0])[0].data == "identifier"
            ):
                return
        for c in node.children:
            walk(c)

    walk(tree)
    return found


def template_file_references(text: str, filename: str) -> set[tuple[str, ...]]:
    refs: set[tuple[str, ...]] = set()
    for part in parse_template_text(text, filename):
        for piece in part[1:]:
            if isinstance(piece, Tree):
                refs |= references(piece)
    return refs

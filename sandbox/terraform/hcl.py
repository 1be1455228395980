"""The one adapter to python-hcl2: HCL text in, the sandbox's own syntax tree out.

This is the only module that imports ``hcl2`` (or its parser, ``lark``) and the only one that
knows the shape of python-hcl2's output: its Lark grammar's rule and token names
(``expr_term``, ``get_attr_expr_term``, ``string_part``, ``STRIP_MARKER``, ...), the layout of
their children and their position metadata. An upgrade of python-hcl2 that changes any of that
breaks this file only.

Everything else in :mod:`sandbox.terraform` works on the small tree defined here: a file is a
:class:`Body` of :class:`Attr` (name = expression) and :class:`Block` (type, labels, body);
an expression is one of the :class:`Expr` classes below. String templates (quoted strings,
heredocs and ``templatefile()`` files) become :class:`Template` nodes whose parts are
``("lit", text)``, ``("interp", Expr)``, ``("if", cond, then, else)`` and
``("for", names, collection, body)``, with strip markers (``~``) already applied.

Constructs the sandbox does not interpret are refused here, when a file is loaded, with an
:class:`HclError` naming the file and line (provider-defined functions, argument expansion,
``for`` grouping mode, escaped-quote templates).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from hcl2.api import parses_to_tree
from lark import Token, Tree


class HclError(Exception):
    """A configuration error: unsupported construct, bad reference, failed function call."""


# -- the sandbox's syntax tree -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Expr:
    line: int = field(default=0, kw_only=True)


@dataclass(frozen=True, eq=False)
class Literal(Expr):
    value: Any  # int | float | bool | None


@dataclass(frozen=True, eq=False)
class Template(Expr):
    parts: tuple  # ("lit", str) | ("interp", Expr) | ("if", Expr, then, else) | ("for", names, Expr, body)


@dataclass(frozen=True, eq=False)
class Var(Expr):
    name: str


@dataclass(frozen=True, eq=False)
class TupleExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True, eq=False)
class ObjectExpr(Expr):
    items: tuple[tuple[str | Expr, Expr], ...]  # a bare-name key is a str, as in Terraform


@dataclass(frozen=True, eq=False)
class Conditional(Expr):
    cond: Expr
    yes: Expr
    no: Expr


@dataclass(frozen=True, eq=False)
class Unary(Expr):
    op: str
    operand: Expr


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, eq=False)
class GetAttr(Expr):
    base: Expr
    name: str


@dataclass(frozen=True, eq=False)
class Index(Expr):
    base: Expr
    key: Expr


@dataclass(frozen=True, eq=False)
class Splat(Expr):
    base: Expr
    steps: tuple[tuple[str, Any], ...]  # ("attr", name) | ("index", Expr), applied to each element


@dataclass(frozen=True, eq=False)
class Call(Expr):
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, eq=False)
class For(Expr):
    names: tuple[str, ...]
    collection: Expr
    key: Expr | None  # None: a tuple ``[for ...]``; else an object ``{for ...: key => value}``
    value: Expr
    cond: Expr | None


@dataclass
class Attr:
    name: str
    tree: Expr
    file: str
    line: int
    source: str = ""  # the expression's text as written


@dataclass
class Body:
    attrs: dict[str, Attr] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Block:
    type: str
    labels: list[str]
    body: Body
    file: str
    line: int


# -- entry points ----------------------------------------------------------------------------------


def parse_config(text: str, filename: str) -> Body:
    """A ``*.tf`` file's top-level body."""
    try:
        tree = parses_to_tree(text)
    except Exception as exc:  # lark raises several exception types
        raise HclError(f"{filename}: syntax error: {exc}".splitlines()[0]) from exc
    return _Converter(filename, text).body(tree.children[0])


def parse_expression(source: str, filename: str, line: int) -> Expr:
    """One expression (a Schematics variable value, a template's ``${...}``)."""
    text = f"__expr = {source}\n"
    try:
        tree = parses_to_tree(text)
    except Exception as exc:
        raise HclError(f"{filename} line {line}: cannot parse expression {source!r}: {exc}") from exc
    attrs = [c for c in tree.children[0].children if isinstance(c, Tree) and c.data == "attribute"]
    if len(attrs) != 1:
        raise HclError(f"{filename} line {line}: cannot parse expression {source!r}")
    return _Converter(filename, text, line - 1).expr(_children(attrs[0])[-1])


@functools.lru_cache(maxsize=128)
def parse_template(text: str, filename: str) -> tuple:
    """Template text (a ``templatefile()`` file or a heredoc body) -> nested template parts."""
    return tuple(_nest(_template_text_parts(text, filename), filename))


# -- python-hcl2's Lark tree -> the sandbox's tree -------------------------------------------------

_PUNCTUATION = {
    "LPAR", "RPAR", "LSQB", "RSQB", "LBRACE", "RBRACE", "COMMA", "EQ", "COLON", "DOT",
    "INTERP_START", "DIRECTIVE_START", "DBLQUOTE", "QMARK", "FOR_OBJECT_ARROW",
}  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _children(tree: Tree) -> list[Any]:
    """Children without newline/comment nodes and punctuation tokens."""
    return [
        c
        for c in tree.children
        if not (isinstance(c, Tree) and c.data == "new_line_or_comment")
        and not (isinstance(c, Token) and c.type in _PUNCTUATION)
    ]


def _line_of(node: Any) -> int:
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line
    if isinstance(node, Token) and node.line is not None:
        return node.line
    return 0


class _Converter:
    def __init__(self, filename: str, text: str, line_offset: int = 0) -> None:
        self.filename = filename
        self.text = text
        self.offset = line_offset

    def line(self, node: Any) -> int:
        n = _line_of(node)
        return n + self.offset if n else 0

    def error(self, node: Any, message: str) -> HclError:
        n = self.line(node)
        return HclError(f"{self.filename}{f' line {n}' if n else ''}: {message}")

    # -- structure
    def body(self, tree: Tree) -> Body:
        body = Body()
        for node in tree.children:
            if not isinstance(node, Tree) or node.data == "new_line_or_comment":
                continue
            line = self.line(node)
            if node.data == "attribute":
                kids = _children(node)
                name = self.name(kids[0])
                if name in body.attrs:
                    raise self.error(node, f"duplicate argument '{name}'")
                value = kids[-1]
                meta = getattr(value, "meta", None)
                source = (
                    self.text[meta.start_pos : meta.end_pos].strip()
                    if meta is not None and not meta.empty
                    else ""
                )
                body.attrs[name] = Attr(name, self.expr(value), self.filename, line, source)
            elif node.data == "block":
                kids = _children(node)
                inner = next(k for k in kids if isinstance(k, Tree) and k.data == "body")
                names = [self.name(k) for k in kids if k is not inner]
                body.blocks.append(Block(names[0], names[1:], self.body(inner), self.filename, line))
            else:
                raise self.error(node, f"unexpected '{node.data}'")
        return body

    def name(self, node: Any) -> str:
        if isinstance(node, Token):
            return str(node)
        if node.data in {"identifier", "keyword", "literal_value"}:
            return str(node.children[0])
        if node.data == "string":
            parts = []
            for sp in node.children:
                if isinstance(sp, Tree):
                    child = sp.children[0]
                    if not isinstance(child, Token):
                        raise self.error(node, "block labels cannot contain interpolation")
                    parts.append(str(child))
            return "".join(parts)
        raise self.error(node, f"unexpected name node {node.data}")

    # -- expressions
    def expr(self, node: Any) -> Expr:
        if isinstance(node, Token):
            raise self.error(node, f"unsupported token {node.type} {str(node)!r}")
        method = getattr(self, "_" + node.data, None)
        if method is None:
            raise self.error(node, f"unsupported expression construct '{node.data}'")
        return method(node, self.line(node))

    def _expr_term(self, node: Tree, line: int) -> Expr:
        kids = _children(node)
        if len(kids) != 1:
            raise self.error(node, "malformed expression term")
        return self.expr(kids[0])

    _expression = _expr_term

    def _int_lit(self, node: Tree, line: int) -> Expr:
        return Literal(int(str(node.children[0])), line=line)

    def _float_lit(self, node: Tree, line: int) -> Expr:
        value = float(str(node.children[0]))
        return Literal(int(value) if value.is_integer() else value, line=line)

    def _literal_value(self, node: Tree, line: int) -> Expr:
        return Literal({"true": True, "false": False, "null": None}[str(node.children[0])], line=line)

    def _identifier(self, node: Tree, line: int) -> Expr:
        return Var(str(node.children[0]), line=line)

    def _string(self, node: Tree, line: int) -> Expr:
        parts: list[tuple] = []
        strips: list[tuple[bool, bool]] = []
        for sp in node.children:
            if isinstance(sp, Token):  # the quotes
                continue
            child = sp.children[0]
            if isinstance(child, Token):
                if child.type in ("ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"):
                    parts.append(("lit", str(child)[1:]))
                else:
                    parts.append(("lit", self.unescape(str(child), node)))
                strips.append((False, False))
            elif child.data == "interpolation":
                toks = child.children
                expr = next(c for c in toks if isinstance(c, Tree))
                left = any(isinstance(t, Token) and t.type == "STRIP_MARKER" for t in toks[:2])
                right = any(isinstance(t, Token) and t.type == "STRIP_MARKER" for t in toks[-2:])
                parts.append(("interp", self.expr(expr)))
                strips.append((left, right))
            else:
                part, left, right = self.directive(child)
                parts.append(part)
                strips.append((left, right))
        return Template(tuple(_nest(_strip(parts, strips), self.filename)), line=line)

    def directive(self, node: Tree) -> tuple[tuple, bool, bool]:
        toks = node.children
        left = len(toks) > 1 and isinstance(toks[1], Token) and toks[1].type == "STRIP_MARKER"
        right = len(toks) > 1 and isinstance(toks[-2], Token) and toks[-2].type == "STRIP_MARKER"
        trees = [c for c in toks if isinstance(c, Tree)]
        if node.data == "template_if_start":
            return ("if", self.expr(trees[0])), left, right
        if node.data == "template_else":
            return ("else",), left, right
        if node.data == "template_endif":
            return ("endif",), left, right
        if node.data == "template_for_start":
            names = [str(t.children[0]) for t in trees if t.data == "identifier"]
            return ("for", names, self.expr(trees[-1])), left, right
        if node.data == "template_endfor":
            return ("endfor",), left, right
        raise self.error(node, f"unsupported template directive '{node.data}'")

    def unescape(self, raw: str, node: Any) -> str:
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
                if nxt in "uU":
                    width = 4 if nxt == "u" else 8
                    out.append(chr(int(raw[i + 2 : i + 2 + width], 16)))
                    i += 2 + width
                    continue
                raise self.error(node, f"invalid escape sequence \\{nxt}")
            out.append(ch)
            i += 1
        return "".join(out)

    def _heredoc_template(self, node: Tree, line: int, trim: bool = False) -> Expr:
        lines = str(node.children[0]).split("\n")
        # first line is <<MARKER, last two are "  MARKER" and "" (the terminal ends in a newline)
        body_lines = lines[1:-2]
        if trim:
            indents = [len(ln) - len(ln.lstrip(" \t")) for ln in body_lines if ln.strip()]
            cut = min(indents) if indents else 0
            body_lines = [ln[cut:] for ln in body_lines]
        text = "\n".join(body_lines) + ("\n" if body_lines else "")
        return Template(parse_template(text, self.filename), line=line)

    def _heredoc_template_trim(self, node: Tree, line: int) -> Expr:
        return self._heredoc_template(node, line, trim=True)

    def _tuple(self, node: Tree, line: int) -> Expr:
        return TupleExpr(tuple(self.expr(c) for c in _children(node)), line=line)

    def _object(self, node: Tree, line: int) -> Expr:
        items: list[tuple[str | Expr, Expr]] = []
        for elem in _children(node):
            key_tree, value_tree = _children(elem)
            key_expr = _children(key_tree)[0]
            key: str | Expr
            if isinstance(key_expr, Tree) and key_expr.data == "keyword":
                key = str(key_expr.children[0])
            else:
                key = self.expr(key_expr)
                if isinstance(key, Var):  # a bare identifier key is the literal name
                    key = key.name
            items.append((key, self.expr(value_tree)))
        return ObjectExpr(tuple(items), line=line)

    def _conditional(self, node: Tree, line: int) -> Expr:
        cond, yes, no = _children(node)
        return Conditional(self.expr(cond), self.expr(yes), self.expr(no), line=line)

    def _unary_op(self, node: Tree, line: int) -> Expr:
        return Unary(str(node.children[0]), self.expr(_children(node)[-1]), line=line)

    def _binary_op(self, node: Tree, line: int) -> Expr:
        left, term = _children(node)
        op_tree, right = _children(term)
        op = str(op_tree.children[0]).strip()
        return Binary(op, self.expr(left), self.expr(right), line=line)

    def _get_attr_expr_term(self, node: Tree, line: int) -> Expr:
        base, attr = _children(node)
        return GetAttr(self.expr(base), self.attr_name(attr), line=self.line(attr) or line)

    def attr_name(self, get_attr: Tree) -> str:
        return str(_children(get_attr)[0].children[0])

    def _index_expr_term(self, node: Tree, line: int) -> Expr:
        base, index = _children(node)
        return Index(self.expr(base), self.index_key(index), line=self.line(index) or line)

    def index_key(self, index: Tree) -> Expr:
        if index.data == "short_index":  # .0
            return Literal(int(str(index.children[-1])), line=self.line(index))
        return self.expr(_children(index)[0])

    def _full_splat_expr_term(self, node: Tree, line: int) -> Expr:
        base, splat = _children(node)
        steps = tuple(
            ("attr", self.attr_name(c)) if c.data == "get_attr" else ("index", self.index_key(c))
            for c in _children(splat)
            if isinstance(c, Tree)
        )
        return Splat(self.expr(base), steps, line=line)

    _attr_splat_expr_term = _full_splat_expr_term

    def _function_call(self, node: Tree, line: int) -> Expr:
        kids = _children(node)
        if any(isinstance(k, Token) and k.type == "COLONS" for k in kids):
            raise self.error(node, "provider-defined functions are not supported")
        name = str(kids[0].children[0])
        arg_trees = _children(kids[1]) if len(kids) > 1 else []
        if any(isinstance(a, Token) and a.type == "ELLIPSIS" for a in arg_trees):
            raise self.error(node, f"argument expansion (...) in {name}() is not supported")
        return Call(name, tuple(self.expr(a) for a in arg_trees if not isinstance(a, Token)), line=line)

    def _for_tuple_expr(self, node: Tree, line: int) -> Expr:
        if any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children):
            raise self.error(node, "grouping mode (...) in for expressions is not supported")
        kids = [c for c in _children(node) if isinstance(c, Tree)]
        intro = [c for c in _children(kids[0]) if isinstance(c, Tree)]
        names = tuple(str(k.children[0]) for k in intro if k.data == "identifier")
        cond = kids[-1] if kids[-1].data == "for_cond" else None
        exprs = [self.expr(k) for k in kids[1:] if k is not cond]
        return For(
            names,
            self.expr(intro[-1]),
            exprs[0] if len(exprs) == 2 else None,
            exprs[-1],
            self.expr(_children(cond)[-1]) if cond is not None else None,
            line=line,
        )

    _for_object_expr = _for_tuple_expr


# -- template text (templatefile() files, heredoc bodies) ------------------------------------------

_DIRECTIVE_RE = re.compile(
    r"^(?:(?P<if>if)\s+(?P<cond>.+)|(?P<else>else)|(?P<endif>endif)|"
    r"(?P<for>for)\s+(?P<names>[A-Za-z_][\w-]*(?:\s*,\s*[A-Za-z_][\w-]*)?)\s+in\s+(?P<coll>.+)|"
    r"(?P<endfor>endfor))$",
    re.S,
)


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


def _template_text_parts(text: str, filename: str) -> list[tuple]:
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
                parts.append(("interp", parse_expression(inner, filename, line)))
            else:
                m = _DIRECTIVE_RE.match(inner)
                if m is None:
                    raise HclError(f"{filename} line {line}: unsupported template directive %{{{inner}}}")
                if m.group("if"):
                    parts.append(("if", parse_expression(m.group("cond"), filename, line)))
                elif m.group("else"):
                    parts.append(("else",))
                elif m.group("endif"):
                    parts.append(("endif",))
                elif m.group("for"):
                    names = [n.strip() for n in m.group("names").split(",")]
                    parts.append(("for", names, parse_expression(m.group("coll"), filename, line)))
                else:
                    parts.append(("endfor",))
            strips.append((left, right))
            i = close + 1
            continue
        buf.append(text[i])
        i += 1
    flush()
    return _strip(parts, strips)


def _strip(parts: list[tuple], strips: list[tuple[bool, bool]]) -> list[tuple]:
    out = list(parts)
    for i, (left, right) in enumerate(strips):
        if left and i > 0 and out[i - 1][0] == "lit":
            out[i - 1] = ("lit", out[i - 1][1].rstrip())
        if right and i + 1 < len(out) and out[i + 1][0] == "lit":
            out[i + 1] = ("lit", out[i + 1][1].lstrip())
    return [p for p in out if not (p[0] == "lit" and p[1] == "")]


def _nest(parts: list[tuple], filename: str) -> list[Any]:
    """Flat parts -> nodes: literals, interps, ("if", c, then, else), ("for", names, coll, body)."""
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
                nodes.append(("if", part[1], tuple(then), tuple(otherwise)))
            elif kind == "for":
                body, end = block({"endfor"})
                if end != "endfor":
                    raise HclError(f"{filename}: %{{for}} without %{{endfor}}")
                nodes.append(("for", tuple(part[1]), part[2], tuple(body)))
            else:
                raise HclError(f"{filename}: unexpected %{{{kind}}}")
        return nodes, None

    nodes, _ = block(set())
    return nodes

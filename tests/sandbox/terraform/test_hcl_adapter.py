"""python-hcl2 is used through one adapter (sandbox/terraform/hcl.py) that yields the sandbox's own tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sandbox
from sandbox.terraform import hcl
from sandbox.terraform.expr import Evaluator, Scope, references

pytestmark = pytest.mark.sandbox

PACKAGE = Path(sandbox.__file__).parent
ADAPTER = PACKAGE / "terraform" / "hcl.py"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_adapter_is_the_only_importer_of_hcl2_and_lark():
    importers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if _imported_modules(path) & {"hcl2", "lark"}
    }
    assert importers == {"terraform/hcl.py"}
    # nothing else spells python-hcl2's output shape either
    for path in PACKAGE.rglob("*.py"):
        if path != ADAPTER:
            text = path.read_text()
            for marker in ("__is_block__", "__start_line__", "expr_term", "parses_to_tree"):
                assert marker not in text, f"{path.name} uses python-hcl2's {marker}"


def test_config_becomes_the_sandboxs_own_tree():
    body = hcl.parse_config(
        'resource "ibm_is_vpc" "vpc" {\n'
        "  count = var.on ? 1 : 0\n"
        '  name  = "${var.run_id}-vpc"\n'
        '  tags  = [for t in local.tags : upper(t) if t != ""]\n'
        '  timeouts {\n    create = "5m"\n  }\n'
        "}\n",
        "main.tf",
    )
    (block,) = body.blocks
    assert (block.type, block.labels, block.line) == ("resource", ["ibm_is_vpc", "vpc"], 1)
    attrs = block.body.attrs
    assert isinstance(attrs["count"].tree, hcl.Conditional) and attrs["count"].line == 2
    assert attrs["name"].source == '"${var.run_id}-vpc"'
    assert isinstance(attrs["name"].tree, hcl.Template)
    assert isinstance(attrs["tags"].tree, hcl.For)
    assert block.body.blocks[0].type == "timeouts"
    assert references(attrs["tags"].tree) >= {("local", "tags")}


def test_expressions_and_templates_evaluate():
    scope = Scope(roots={"var": {"xs": ["a", "b"], "n": 3}}, base_dir=Path("."), filename="t.tf")
    ev = Evaluator(scope)
    assert ev.eval(hcl.parse_expression('{ k = var.n * 2, ("x") = var.xs[*] }', "t.tf", 1)) == {
        "k": 6,
        "x": ["a", "b"],
    }
    parts = hcl.parse_template("%{ for x in xs ~}\n${x}\n%{ endfor ~}\n$${lit}", "t.tftpl")
    assert Evaluator(Scope(roots={"xs": [1, 2]}, base_dir=Path("."))).render(parts) == "1\n2\n${lit}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = provider::p::f(1)\n", "provider-defined functions are not supported"),
        ("x = f(var.xs...)\n", "argument expansion"),
        ("x = {for k, v in var.m : k => v...}\n", "grouping mode"),
        ("x = 1\nx = 2\n", "duplicate argument 'x'"),
        ("x = [\n", "syntax error"),
    ],
)
def test_unsupported_constructs_are_refused_at_load(source, message):
    with pytest.raises(hcl.HclError, match=message):
        hcl.parse_config(source, "bad.tf")

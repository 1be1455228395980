"""The runner works through the provider interface alone (sandbox/terraform/provider.py).

A minimal in-memory provider stands in for a cloud: these tests show what the runner does on its
own (ordering, state, refresh, tainted replacement, side effects on other objects), and that the
runner imports nothing of the IBM emulation.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import sandbox.terraform
from sandbox.terraform import TerraformEngine, TerraformError, TerraformRun
from sandbox.terraform.provider import Changes, Created, Job, ProviderError

RUNNER = Path(sandbox.terraform.__file__).parent

CONFIG = """
resource "box" "a" { name = "a" }
resource "box" "b" {
  count = 2
  name  = "b-${count.index}"
  peer  = box.a.id
}
data "lookup" "x" { key = box.a.name }
output "peers" { value = box.b[*].peer }
"""


class MemoryCloud:
    """Objects in a dict; ``fail`` names objects created broken (tainted), ``refuse`` ones refused."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.fail: set[str] = set()
        self.refuse: set[str] = set()
        self.jobs: list[str] = []
        self.next_id = 0

    def configure(self, job: Job) -> MemoryCloud:
        self.jobs.append(job.command)
        self.job = job
        return self

    def validate(self, rtype: str, config: dict[str, Any]) -> list[str]:
        return [] if rtype == "box" else [f"unknown resource type {rtype}"]

    def plan(self, rtype: str, config: dict[str, Any], index: int | None) -> dict[str, Any]:
        return {**config, "id": "(known after apply)"}

    def read_data(self, rtype: str, config: dict[str, Any], *, warn: Any) -> dict[str, Any]:
        return {**config, "id": f"data-{config['key']}"}

    def create(self, rtype: str, address: str, index: int | None, config: dict[str, Any]) -> Created:
        if config["name"] in self.refuse:
            raise ProviderError(f"creating {address}: refused")
        self.next_id += 1
        oid = f"obj-{self.next_id}"
        self.objects[oid] = dict(config)
        error = f"{address} failed to start" if config["name"] in self.fail else None
        return Created(id=oid, attrs={**config, "id": oid}, handles=[oid], error=error)

    def exists(self, entry: dict[str, Any]) -> bool:
        return entry["id"] in self.objects

    def delete(self, entry: dict[str, Any]) -> Changes:
        self.objects.pop(entry["id"])
        return {}


def run_of(tmp_path: Path, text: str = CONFIG) -> TerraformRun:
    (tmp_path / "main.tf").write_text(text)
    return TerraformRun("ws", tmp_path, {}, {}, lambda _line: None)


def test_apply_orders_by_reference_and_keeps_state_and_outputs(tmp_path):
    cloud = MemoryCloud()
    run = run_of(tmp_path)
    outputs = TerraformEngine(cloud).apply(run)
    a_id = next(r["id"] for r in run.state["resources"] if r["address"] == "box.a")
    assert [r["address"] for r in run.state["resources"]] == ["box.a", "box.b[0]", "box.b[1]"]
    assert outputs["peers"]["value"] == [a_id, a_id]
    assert cloud.jobs == ["apply"]
    assert TerraformEngine(cloud).plan(run) == {"add": 0, "change": 0, "destroy": 0}


def test_refresh_drops_what_the_provider_no_longer_has_and_apply_creates_it_again(tmp_path):
    cloud = MemoryCloud()
    engine = TerraformEngine(cloud)
    run = run_of(tmp_path)
    engine.apply(run)
    gone = run.state["resources"][2]["id"]
    cloud.objects.pop(gone)
    assert engine.plan(run) == {"add": 1, "change": 0, "destroy": 0}
    engine.apply(run)
    assert len(cloud.objects) == 3 and gone not in cloud.objects


def test_an_object_created_with_an_error_is_tainted_then_replaced(tmp_path):
    cloud = MemoryCloud()
    cloud.fail = {"b-1"}
    engine = TerraformEngine(cloud)
    run = run_of(tmp_path)
    with pytest.raises(TerraformError, match=r"box.b\[1\] failed to start"):
        engine.apply(run)
    [tainted] = [r for r in run.state["resources"] if r.get("tainted")]
    assert engine.plan(run) == {"add": 1, "change": 0, "destroy": 1}
    cloud.fail = set()
    engine.apply(run)
    assert tainted["id"] not in cloud.objects and len(cloud.objects) == 3
    assert not any(r.get("tainted") for r in run.state["resources"])


def test_a_refused_create_keeps_what_exists_and_destroy_removes_it(tmp_path):
    cloud = MemoryCloud()
    cloud.refuse = {"b-0"}
    engine = TerraformEngine(cloud)
    run = run_of(tmp_path)
    with pytest.raises(TerraformError, match=r"creating box.b\[0\]: refused"):
        engine.apply(run)
    assert [r["address"] for r in run.state["resources"]] == ["box.a"]
    engine.destroy(run)
    assert cloud.objects == {} and run.state["resources"] == []


def test_the_provider_schema_fails_the_plan(tmp_path):
    run = run_of(tmp_path, 'resource "crate" "c" { name = "c" }\n')
    with pytest.raises(TerraformError, match="unknown resource type crate"):
        TerraformEngine(MemoryCloud()).plan(run)


def test_the_runner_imports_nothing_of_the_ibm_emulation():
    for path in RUNNER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                assert not module.startswith("sandbox.") or module.startswith("sandbox.terraform"), (
                    f"{path.name} imports {module}"
                )

"""Helpers for the sandbox tests: SDK clients bound to a sandbox and a fake Terraform engine.

The fake engine exercises the Schematics HTTP layer without Terraform; tests of the real engine
apply ``fixtures/tf_vpc``.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator
from ibm_schematics.schematics_v1 import SchematicsV1

FIXTURES = Path(__file__).parent / "fixtures"
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")


class FakeEngineError(Exception):
    """Raised by the fake engine; the sandbox reports any engine exception as a FAILED job."""


class FakeEngine:
    """Adds one ``ibm_is_vpc`` per apply and removes it on destroy; knobs for slow/failing jobs."""

    def __init__(self, inventory: Any, **_: Any) -> None:
        self.inventory = inventory
        self.delay_s = 0.0
        self.fail: set[str] = set()
        self.started = threading.Event()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _work(self, name: str, run: Any) -> None:
        self.calls.append((name, {k: v["value"] for k, v in run.variables.items()}))
        self.started.set()
        run.log(f"fake {name} started")
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline:
            if run.should_stop():
                raise FakeEngineError("stopped")
            time.sleep(0.01)
        if name in self.fail:
            raise FakeEngineError(f"fake {name} failure")

    def plan(self, run: Any) -> dict[str, int]:
        self._work("plan", run)
        return {"add": 1, "change": 0, "destroy": 0}

    def apply(self, run: Any) -> dict[str, Any]:
        self._work("apply", run)
        if not run.state.get("ids"):
            rec = self.inventory.add("ibm_is_vpc", "fake-vpc", workspace_id=run.workspace_id)
            run.state["ids"] = [rec["id"]]
        return {"vpc_id": {"value": run.state["ids"][0], "type": "string", "sensitive": False}}

    def refresh(self, run: Any) -> dict[str, Any]:
        self._work("refresh", run)
        return {}

    def destroy(self, run: Any) -> None:
        self._work("destroy", run)
        for rid in run.state.pop("ids", []):
            self.inventory.remove(rid)


def make_tar(folder: Path | None = None, files: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if folder is not None:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(folder)))
        for name, text in (files or {}).items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Client:
    """A SchematicsV1 bound to a sandbox, the way the pipeline builds it."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self.auth = IAMAuthenticator(
            box.api_key, url=box.endpoints["iam"], client_id="bx", client_secret="bx"
        )
        self.svc = SchematicsV1(authenticator=self.auth)
        self.svc.set_service_url(box.endpoints["schematics"])

    def refresh_token(self) -> str:
        return self.auth.token_manager.request_token()["refresh_token"]

    def access_token(self) -> str:
        return self.auth.token_manager.get_token()

    def create(self, name: str = "airflow-test", variables: list[dict[str, Any]] | None = None) -> dict:
        result = self.svc.create_workspace(
            name=name,
            location="us-south",
            type=["terraform_v1.13"],
            template_data=[{"folder": ".", "type": "terraform_v1.13", "variablestore": variables or []}],
        ).get_result()
        return result

    def ready(self, files: dict[str, str] | None = None, folder: Path | None = None, **kw: Any) -> dict:
        """A workspace with an uploaded template (status INACTIVE)."""
        ws = self.create(**kw)
        tar = make_tar(folder, files if files or folder else {"main.tf": "# empty\n"})
        self.svc.template_repo_upload(w_id=ws["id"], t_id=ws["template_data"][0]["id"], file=tar)
        return ws

    def run(self, w_id: str, command: str) -> str:
        method = getattr(self.svc, f"{command}_workspace_command")
        response = method(w_id=w_id, refresh_token=self.refresh_token())
        assert response.get_status_code() == 202
        return response.get_result()["activityid"]

    def wait(self, w_id: str, activity_id: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            act = self.svc.get_workspace_activity(w_id=w_id, activity_id=activity_id).get_result()
            if act["status"] in TERMINAL:
                return act
            time.sleep(0.05)
        raise AssertionError(f"activity {activity_id} did not finish")


@pytest.fixture
def fake_box(sandbox_factory: Callable[..., Any]) -> Any:
    """A sandbox with the fake engine (``box.engine``) and no rate limit."""
    return sandbox_factory(engine_factory=FakeEngine, rate_limit_per_min=None)


@pytest.fixture
def client(fake_box: Any) -> Client:
    return Client(fake_box)


@pytest.fixture
def make_client() -> Callable[[Any], Client]:
    return Client


@pytest.fixture
def tar_of() -> Callable[..., bytes]:
    return make_tar


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES

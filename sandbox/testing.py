"""Pytest fixtures for the sandbox (registered by tests/conftest.py).

- ``sandbox``: a fresh, started sandbox per test (state in the test's ``tmp_path``), stopped after.
- ``sandbox_factory``: call it with ``Sandbox`` keyword arguments to get more/other sandboxes;
  every one it made is stopped after the test.

Both start in well under a second: every service is a thread in the test process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox.core import Sandbox


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    from sandbox.core import Sandbox

    made: list[Sandbox] = []

    def make(**kwargs: Any) -> Sandbox:
        kwargs.setdefault("state_dir", tmp_path / f"sandbox-{len(made)}")
        box = Sandbox(**kwargs)
        made.append(box)
        return box.start()

    yield make
    for box in reversed(made):
        box.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return sandbox_factory()

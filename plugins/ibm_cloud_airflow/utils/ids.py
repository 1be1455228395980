"""Ids rendered from templates: a missing XCom renders as ``""``, ``"None"`` or ``"null"``."""

from __future__ import annotations

from typing import Any

_EMPTY_IDS = ("", "none", "null")


def is_blank_id(value: Any) -> bool:
    """True for ``None`` and for an id rendered from nothing (``""``, ``"None"``, ``"null"``)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _EMPTY_IDS)

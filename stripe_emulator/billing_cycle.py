"""Placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import Emulator


def run_due_global(em: Emulator) -> None:
    return None


def end_subscription(em: Emulator, sub: dict[str, Any], now: int, reason: str) -> None:
    return None

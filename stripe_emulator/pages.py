"""Pages the emulator serves on its own host: hosted invoices, invoice PDFs, portal sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .http import Response

if TYPE_CHECKING:
    from .emulator import Emulator

PREFIX = "/emulator/"


def handle(em: Emulator, method: str, path: str, base_url: str) -> Response:
    return Response(404, b"Not found", "text/plain; charset=utf-8")

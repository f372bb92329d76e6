"""A real SMTP server for the password reset tests: aiosmtpd on a free port of 127.0.0.1.

The gateway sends with aiosmtplib over a real socket; the test reads what arrived.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope

PUBLIC_URL = "https://gateway.test"


class Inbox:
    """What the test's SMTP server received: (recipients, message) in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(content)))
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int) -> None:
        """Until `count` messages arrived (the gateway sends after answering), 10 s at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(self.messages) < count:
            assert loop.time() < deadline, f"{len(self.messages)} emails arrived, not {count}"
            await asyncio.sleep(0.02)

    def token(self, index: int = 0, public_url: str = PUBLIC_URL) -> str:
        """The reset token in the link (to `public_url`) of the `index`th email."""
        body = self.messages[index][1].get_payload(decode=True)
        assert isinstance(body, bytes)
        link = re.escape(public_url) + r"/dashboard/reset-password\?token=(npr_[\w-]+)"
        found = re.search(link, body.decode())
        assert found is not None, body
        return found.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server (its own thread and loop) for the block: its inbox and port."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def reset_settings(port: int, **extra: Any) -> dict[str, Any]:
    """Gateway settings that send reset emails to the test's SMTP server."""
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_from": "Novo Gateway <no-reply@gateway.test>",
        "public_url": PUBLIC_URL,
        **extra,
    }

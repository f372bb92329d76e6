"""Serving the emulator with uvicorn, in the foreground or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import uvicorn

from .app import EmulatorApp
from .config import EmulatorConfig
from .emulator import Emulator


class EmulatorServer:
    """An emulator served by uvicorn in a daemon thread.

    >>> server = EmulatorServer(port=0).start()   # doctest: +SKIP
    >>> server.url                                  # 'http://127.0.0.1:54321'
    >>> server.stop()
    """

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        base = config or EmulatorConfig()
        self.config = replace(base, **overrides) if overrides else base
        self.emulator = Emulator(self.config)
        self.app = EmulatorApp(self.emulator)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self.config.port = sock.getsockname()[1]
        self.emulator.state.note_base_url(self.url)
        self._socket = sock
        uv_config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(uv_config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="stripe-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Stripe emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(port: int = 0, **config: Any) -> tuple[str, Callable[[], None]]:
    """Start an emulator on ``port`` (0 = a free port); returns ``(url, stop)``."""
    server = EmulatorServer(EmulatorConfig(port=port, **config)).start()
    return server.url, server.stop


def serve(config: EmulatorConfig) -> None:
    """Run in the foreground until interrupted (``python -m stripe_emulator``)."""
    emulator = Emulator(config)
    uvicorn.run(
        EmulatorApp(emulator),
        host=config.host,
        port=config.port,
        log_level="info",
        access_log=False,
        lifespan="on",
    )

"""Streaming proxy to configured upstreams (owner: gateway domain). Interface stub."""

from __future__ import annotations

from novo_gateway.config import Settings


class UpstreamProxy:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def close(self) -> None: ...

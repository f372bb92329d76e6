"""The request dependency of the keys domain: the process's key cache (published by the app)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from novo_gateway.keys.cache import KeyCache
from novo_gateway.kit.deps import from_state

KeyCacheDep = Annotated[KeyCache, Depends(from_state("keys", KeyCache))]

"""The dashboards' form fields: bounded lengths, so an oversized field is a 400, never a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form

from novo_gateway.accounts.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH

CsrfField = Annotated[str, Form(max_length=128)]
EmailField = Annotated[str, Form(max_length=320)]
# Longer than any accepted password, so a too-long one is just a wrong password.
PasswordField = Annotated[str, Form(max_length=PASSWORD_MAX_LENGTH + 1)]
KeyNameField = Annotated[str, Form(max_length=100)]
TokenField = Annotated[str, Form(max_length=512)]


def key_name(raw: str, default: str) -> str:
    """The name asked for a new key, trimmed; `default` when blank."""
    return raw.strip() or default

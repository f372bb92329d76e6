"""The request dependency of the metering domain: the bound on an account's usage reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from novo_gateway.kit.deps import from_state
from novo_gateway.metering.reads import AccountReads

AccountReadsDep = Annotated[AccountReads, Depends(from_state("account_reads", AccountReads))]

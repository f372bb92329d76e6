"""Schemathesis hooks for the fuzzing run (loaded through SCHEMATHESIS_HOOKS).

The fuzzer acts as two accounts whose API keys are fixed for the whole run. Revoking one of them
would leave the rest of the run unauthenticated (401 everywhere, the API untested), so a revoke
aimed at one of those keys is sent for a key id that does not exist instead: it still exercises
the route, and answers 404. Revoking every other key, including keys the fuzzer created itself
and other accounts' keys, is sent as generated. For the same reason a cancellation is always
"at period end" (the account keeps calling the API); cancelling at once is tested on its own.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

_PROTECTED = {
    int(part) for part in os.environ.get("NOVO_FUZZ_PROTECTED_KEY_IDS", "").split(",") if part
}
NO_SUCH_KEY = 2**62


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    method = case.method.upper()
    if method == "POST" and case.path == "/billing/subscription/cancel":
        if isinstance(case.body, dict) and case.body.get("immediately") is True:
            case.body["immediately"] = False
        return
    if method != "DELETE" or not case.path_parameters:
        return
    try:
        key_id = int(case.path_parameters.get("id"))
    except (TypeError, ValueError):
        return
    if key_id in _PROTECTED:
        case.path_parameters["id"] = NO_SUCH_KEY

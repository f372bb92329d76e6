"""Named points where the reliability tests can crash the process on purpose.

`NOVO_FAILPOINTS="reporter.after_claim=kill"` makes the process SIGKILL itself when it reaches that
point, the way a power cut or an OOM kill would. Unset (always, outside those tests) a failpoint
costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ACTIONS = ("kill", "raise")


class FailpointError(RuntimeError):
    """Raised at a failpoint set to `raise`."""


def _parse(spec: str) -> dict[str, str]:
    points = {}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name and action in _ACTIONS:
            points[name] = action
    return points


_active = _parse(os.environ.get("NOVO_FAILPOINTS", ""))


def hit(name: str) -> None:
    """Crash here if the failpoint `name` is set."""
    action = _active.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailpointError(name)

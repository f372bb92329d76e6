"""A name for this gateway process that survives its restart: the holder of its leases.

A lease (billing/lease.py) names its holder. With a random name per start, a reporter that
crashed and came back could not take over its own lease and waited out its TTL (30 s by default)
with usage unreported meanwhile. The name here is the same for a process and for the process
that replaces it, and never the same for two live processes:

- it names the host and the database (a hash of its URL or file), and
- a slot number: the first of the lock files `<tmp>/novo-gateway-instances/<db>-<n>.lock` that
  this process can lock (an exclusive `flock`, held for the life of the process). The kernel
  drops the lock when the process dies, however it dies, so its replacement on the same host
  takes the same slot, and with it the same name, while every live process holds its own slot.

Where file locks are not available the name is random, as before (leases still work; a restart
waits for the TTL).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import IO

from novo_gateway.kit.config import Settings

log = logging.getLogger("novo_gateway.billing.instance")

MAX_SLOTS = 256
LOCK_DIRECTORY = Path(tempfile.gettempdir()) / "novo-gateway-instances"


class InstanceName:
    """This process's stable name (`holder`), kept until `close()` or the process ends."""

    def __init__(self, holder: str, lock: IO[bytes] | None = None) -> None:
        self.holder = holder
        # Closing the lock file gives the slot back: on `close()`, or when this is collected.
        self._release = weakref.finalize(self, lock.close) if lock is not None else None

    def close(self) -> None:
        """Give the slot back (a later process on this host may take the name)."""
        if self._release is not None:
            self._release()


def database_tag(settings: Settings) -> str:
    """A short hash naming the database (two gateways on one host may use different ones)."""
    target = settings.sqlalchemy_url
    if settings.is_sqlite:
        target = str(Path(settings.database_path).resolve())
    return hashlib.sha256(target.encode()).hexdigest()[:12]


def instance_name(settings: Settings, *, directory: Path = LOCK_DIRECTORY) -> InstanceName:
    """The first free slot on this host for this database, as a lease holder's name."""
    host = socket.gethostname()[:80] or "host"
    tag = database_tag(settings)
    try:
        import fcntl
    except ImportError:  # not POSIX
        return InstanceName(f"{host}/{tag}/{uuid.uuid4().hex[:12]}")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            lock = (directory / f"{tag}-{slot}.lock").open("ab")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            with contextlib.suppress(OSError):
                os.set_inheritable(lock.fileno(), False)
            return InstanceName(f"{host}/{tag}/{slot}", lock)
    except OSError as exc:
        log.warning("no instance slot in %s (%s): using a random name", directory, exc)
    return InstanceName(f"{host}/{tag}/{uuid.uuid4().hex[:12]}")

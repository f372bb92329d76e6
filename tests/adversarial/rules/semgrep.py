"""Cases for semgrep.yml (`semgrep --test`): each `ruleid` line must be found, each `ok` not."""

import hmac
import logging
import os
import subprocess
from typing import Any

from sqlalchemy import select

log = logging.getLogger(__name__)


def compare(given_token: str, stored_secret: str, request: Any, user: Any, model: Any) -> bool:
    # ruleid: no-equality-on-secrets
    if request.headers["x-signature"] == stored_secret:
        return True
    # ruleid: no-equality-on-secrets
    if user.api_key != given_token:
        return False
    # ok: no-equality-on-secrets
    if given_token == "":
        return False
    # ok: no-equality-on-secrets
    if stored_secret is None or len(given_token) == 64:
        return False
    # ok: no-equality-on-secrets
    select(model).where(model.key_hash == given_token)
    # ok: no-equality-on-secrets
    if user.user_id == request.user_id:
        return True
    return hmac.compare_digest(given_token, stored_secret)


def logs(password: str, raw_key: str, key_id: int) -> None:
    # ruleid: no-secret-in-log-call
    log.info("login with %s", password)
    # ruleid: no-secret-in-log-call
    log.warning("key %s refused", raw_key)
    # ok: no-secret-in-log-call
    log.warning("key %s refused", key_id)


class BadRequest(Exception):
    pass


def errors(token: str, key_id: int) -> None:
    # ruleid: no-secret-in-error-message
    raise BadRequest(f"the token {token} is not valid")


def errors_ok(key_id: int) -> None:
    # ok: no-secret-in-error-message
    raise BadRequest(f"the key {key_id} is not valid")


def shells() -> None:
    # ruleid: no-shell-subprocess
    subprocess.run("ls", shell=True, check=False)
    # ruleid: no-shell-subprocess
    os.system("ls")
    # ok: no-shell-subprocess
    subprocess.run(["ls"], check=False)

"""Stripe's error model: an exception carrying the status code and the ``error`` JSON object."""

from __future__ import annotations

from typing import Any

DOC_BASE = "https://docs.stripe.com/error-codes"


class StripeError(Exception):
    """An error answered to the client as ``{"error": {...}}`` with ``status``.

    ``before_execution`` marks errors raised while validating parameters (before the endpoint
    began executing); Stripe does not save those in the idempotency layer.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        before_execution: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.before_execution = before_execution
        self.extra = dict(extra or {})

    def body_v1(self, request_id: str) -> dict[str, Any]:
        err: dict[str, Any] = {}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"{DOC_BASE}#{self.code.replace('_', '-')}"
        err["message"] = self.message
        if self.param is not None:
            err["param"] = self.param
        err["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        err["type"] = self.type
        err.update(self.extra)
        return {"error": err}

    def body_v2(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "code": self.code, "message": self.message}
        if self.param is not None:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, message, param=param, code=code)


def param_error(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    """A 400 found while validating parameters (never stored for idempotency)."""
    return StripeError(400, message, param=param, code=code, before_execution=True)


def unknown_param(name: str) -> StripeError:
    return param_error(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def unsupported_param(name: str) -> StripeError:
    """A real Stripe parameter the emulator does not model (never a silent no-op)."""
    return param_error(
        f"The Stripe emulator does not support the parameter {name}. See FIDELITY.md.",
        param=name,
        code="parameter_unsupported",
    )


def missing_param(name: str) -> StripeError:
    return param_error(f"Missing required param: {name}.", param=name, code="parameter_missing")


def no_such(kind: str, obj_id: str, *, param: str = "id", status: int = 404) -> StripeError:
    """``resource_missing``: 404 for ids in the path, 400 for ids given as parameters."""
    return StripeError(status, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def card_declined(decline_code: str, message: str, *, charge: str | None = None) -> StripeError:
    extra: dict[str, Any] = {"decline_code": decline_code}
    if charge:
        extra["charge"] = charge
    return StripeError(402, message, type="card_error", code="card_declined", extra=extra)

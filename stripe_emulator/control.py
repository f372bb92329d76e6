"""``/_emulator/...`` control endpoints for tests (not part of Stripe's API).

No Stripe auth. When ``EmulatorConfig.control_token`` is set, requests need the header
``X-Emulator-Token: <token>``. Bodies and answers are JSON.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import orjson

from .billing_cycle import run_due_global
from .emulator import Emulator
from .faults import KINDS
from .messages import Response, json_response
from .resources.portal import save_dashboard_default

RUNTIME_SETTINGS = {
    "rate_limit": (float, type(None)),
    "rate_limit_burst": (float, type(None)),
    "webhook_max_attempts": (int,),
    "webhook_retry_base": (float,),
    "webhook_retry_max": (float,),
    "webhook_signature_clock": (str,),
    "finalization_grace": (int,),
    "no_payment_method": (str,),
    "dunning_final_status": (str,),
    "upcoming_days": (int,),
    "meter_event_session_ttl": (int,),
}


def _error(status: int, message: str) -> Response:
    return json_response({"error": {"type": "invalid_request_error", "message": message}}, status)


async def handle(
    emulator: Emulator, method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> Response:
    token = emulator.config.control_token
    if token and headers.get("x-emulator-token") != token:
        return _error(401, "Missing or wrong X-Emulator-Token header.")
    try:
        data: Any = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        return _error(400, "The body must be JSON.")
    if not isinstance(data, dict):
        return _error(400, "The body must be a JSON object.")
    args = {k: v[-1] for k, v in parse_qs(query).items()}
    route = (method, path.rstrip("/"))
    try:
        if route == ("GET", "/_emulator/health"):
            return json_response({"ok": True, "now": emulator.clock.now()})
        if route == ("POST", "/_emulator/reset"):
            emulator.reset()
            return json_response({"ok": True, "now": emulator.clock.now()})
        if route == ("GET", "/_emulator/state"):
            return json_response(state(emulator, args))
        if route == ("GET", "/_emulator/clock"):
            return json_response(clock(emulator))
        if route == ("POST", "/_emulator/clock/advance"):
            return json_response(advance(emulator, data))
        if route == ("POST", "/_emulator/portal/default"):
            with emulator.store.lock:
                config = save_dashboard_default(emulator.state)
                emulator.store.mark_dirty()
            return json_response({"id": config["id"]})
        if route == ("GET", "/_emulator/requests"):
            return json_response({"requests": emulator.journal.describe()})
        if route == ("GET", "/_emulator/faults"):
            return json_response({"faults": emulator.faults.describe()})
        if route == ("POST", "/_emulator/faults"):
            return add_fault(emulator, data)
        if route == ("DELETE", "/_emulator/faults"):
            emulator.faults.clear()
            return json_response({"faults": []})
        if route == ("GET", "/_emulator/webhooks"):
            return json_response(deliveries(emulator))
        if route == ("POST", "/_emulator/webhooks/flush"):
            idle = await asyncio.to_thread(
                emulator.webhooks.wait_idle, float(data.get("timeout", 10))
            )
            return json_response({"idle": idle, **deliveries(emulator)})
        if route == ("POST", "/_emulator/config"):
            return configure(emulator, data)
    except (TypeError, ValueError) as exc:
        return _error(400, str(exc))
    return _error(404, f"Unknown control endpoint {method} {path}.")


def clock(emulator: Emulator) -> dict[str, Any]:
    return {"now": emulator.clock.now(), "offset": emulator.clock.offset}


def advance(emulator: Emulator, data: dict[str, Any]) -> dict[str, Any]:
    """Move the global clock by ``seconds`` or to ``to`` (unix), then close ended periods."""
    if "to" in data:
        seconds = float(data["to"]) - emulator.clock.now_float()
    else:
        seconds = float(data.get("seconds", 0))
    if seconds < 0:
        raise ValueError("The clock only moves forward.")
    with emulator.store.lock:
        emulator.clock.advance(seconds)
        run_due_global(emulator.state)
        emulator.store.mark_dirty()
    return clock(emulator)


def add_fault(emulator: Emulator, data: dict[str, Any]) -> Response:
    kind = str(data.get("kind", ""))
    if kind not in KINDS:
        return _error(400, f"kind must be one of {', '.join(KINDS)}.")
    fault = emulator.faults.add(
        kind,  # type: ignore[arg-type]
        path=str(data.get("path", "/")),
        method=data.get("method"),
        count=int(data.get("count", 1)),
        delay=float(data.get("delay", 0)),
        retry_after=int(data.get("retry_after", 1)),
    )
    return json_response({"id": fault.id, "faults": emulator.faults.describe()})


CHOICES = {
    "no_payment_method": ("succeed", "fail"),
    "dunning_final_status": ("canceled", "unpaid", "past_due"),
    "webhook_signature_clock": ("wall", "emulator"),
}


def configure(emulator: Emulator, data: dict[str, Any]) -> Response:
    for key, value in data.items():
        if key in CHOICES and value not in CHOICES[key]:
            return _error(400, f"{key} must be one of {', '.join(CHOICES[key])}.")
        types = RUNTIME_SETTINGS.get(key)
        if types is None:
            return _error(400, f"Unknown setting {key}; settable: {', '.join(RUNTIME_SETTINGS)}.")
        if float in types and isinstance(value, int):
            value = float(value)
        if not isinstance(value, types):
            return _error(400, f"Invalid value for {key}.")
        setattr(emulator.config, key, value)
    emulator.limiter.configure(emulator.config.rate_limit, emulator.config.rate_limit_burst)
    return json_response({k: getattr(emulator.config, k) for k in RUNTIME_SETTINGS})


def deliveries(emulator: Emulator) -> dict[str, Any]:
    with emulator.store.lock:
        items = [dict(d, attempts=list(d["attempts"])) for d in emulator.store.deliveries]
    counts = {"pending": 0, "succeeded": 0, "failed": 0}
    for d in items:
        counts[d["status"]] = counts.get(d["status"], 0) + 1
    return {"counts": counts, "deliveries": items}


def state(emulator: Emulator, args: dict[str, str]) -> dict[str, Any]:
    with emulator.store.lock:
        store = emulator.store
        customer = args.get("customer")
        records = [r for r in store.meter_events if customer is None or r["customer"] == customer]
        totals: dict[str, dict[str, Decimal]] = {}
        for r in records:
            if r["error"] is None and not r["canceled"] and r["meter"]:
                per = totals.setdefault(r["customer"], {})
                per[r["meter"]] = per.get(r["meter"], Decimal(0)) + Decimal(r["value"])
        counts = {kind: len(objs) for kind, objs in store.objects.items()}
        counts.update(
            meter_event=len(store.meter_events),
            meter_event_counted=sum(
                1 for r in store.meter_events if r["error"] is None and not r["canceled"]
            ),
            meter_event_duplicate=store.counters.get("meter_event_duplicate", 0),
            event=len(store.events),
            thin_event=len(store.thin_events),
            idempotency_key=len(store.idempotency),
        )
        out: dict[str, Any] = {
            **clock(emulator),
            "counts": counts,
            "totals": {c: {m: str(v) for m, v in per.items()} for c, per in totals.items()},
            "webhook_deliveries": deliveries(emulator)["counts"],
            "faults": emulator.faults.describe(),
        }
        if args.get("meter_events", "true") != "false":
            out["meter_events"] = [
                {
                    k: r[k]
                    for k in (
                        "identifier",
                        "event_name",
                        "meter",
                        "customer",
                        "value",
                        "timestamp",
                        "created",
                        "source",
                        "error",
                        "canceled",
                    )
                }
                for r in records
            ]
        return out

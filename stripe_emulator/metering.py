"""Meter event ingestion, deduplication, error reports and aggregation (shared by v1 and v2).

Validation Stripe does when the request arrives (v1 ``/v1/billing/meter_events`` and v2
``/v2/billing/meter_events``): the payload keys, a whole-number value, the timestamp window
(35 days back, 5 minutes ahead, on the customer's clock) and the identifier's uniqueness over
a rolling 24 hours (global clock). Checks done "asynchronously" (an accepted event that is not
counted, reported by a ``v1.billing.meter.error_report_triggered`` thin event): an unknown
customer, an event name without an active meter. On the v2 stream every check is asynchronous.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from . import events
from .clock import rfc3339
from .errors import StripeError, param_error
from .state import EmulatorState

DEDUP_WINDOW = 24 * 3600
ADJUST_WINDOW = 24 * 3600
PAST_LIMIT = 35 * 24 * 3600
FUTURE_LIMIT = 5 * 60
_WHOLE = re.compile(r"-?\d{1,15}")

MESSAGES = {
    "no_meter": "No active meter was found for event name {event_name}.",
    "archived_meter": "The meter for event name {event_name} is inactive.",
    "meter_event_customer_not_found": "No customer {customer} was found.",
    "meter_event_no_customer_defined": "The payload has no customer ({key}).",
    "meter_event_invalid_value": "The value {value} is not a whole number.",
    "timestamp_too_far_in_past": "The timestamp is more than 35 days in the past.",
    "timestamp_in_future": "The timestamp is more than 5 minutes in the future.",
}


class DuplicateIdentifier(StripeError):
    def __init__(self, identifier: str) -> None:
        super().__init__(
            400,
            f"An event already exists with identifier {identifier}.",
            headers={"Stripe-Should-Retry": "false"},
        )
        self.identifier = identifier


def check_session(state: EmulatorState, token: str) -> None:
    """A v2 meter event stream request's token must name a live meter event session."""
    with state.store.lock:
        session = state.store.meter_sessions.get(token)
    if session is None:
        raise StripeError(
            401,
            "Invalid authentication token for the meter event stream. Create a meter event "
            "session with your secret key and use its authentication_token.",
            type="invalid_request_error",
            code="invalid_token",
            before_execution=True,
        )
    if session["expires_at"] <= state.clock.now():
        raise StripeError(
            401,
            "The meter event session has expired. Create a new meter event session.",
            type="temporary_session_expired",
            code="billing_meter_event_session_expired",
            before_execution=True,
        )


def active_meter(state: EmulatorState, event_name: str) -> dict[str, Any] | None:
    for meter in state.store.all("billing.meter"):
        if meter["event_name"] == event_name and meter["status"] == "active":
            return meter
    return None


def is_duplicate(state: EmulatorState, identifier: str) -> bool:
    index = state.store.identifiers.get(identifier)
    if index is None:
        return False
    return bool(state.store.meter_events[index]["created"] + DEDUP_WINDOW > state.now())


def ingest(
    state: EmulatorState,
    *,
    event_name: str,
    payload: dict[str, Any],
    identifier: str,
    timestamp: int | None,
    source: str,
    strict: bool,
) -> dict[str, Any]:
    """Validate and store one meter event; ``strict`` raises the synchronous errors (v1, v2
    create), otherwise every problem becomes an asynchronous error (v2 stream)."""
    if is_duplicate(state, identifier):
        state.store.next_counter("meter_event_duplicate")
        raise DuplicateIdentifier(identifier)
    meter = active_meter(state, event_name)
    error: str | None = None
    customer_id: str | None = None
    value = "0"
    if meter is None:
        error = "no_meter"
        if any(m["event_name"] == event_name for m in state.store.all("billing.meter")):
            error = "archived_meter"
    else:
        ckey = meter["customer_mapping"]["event_payload_key"]
        vkey = meter["value_settings"]["event_payload_key"]
        raw_customer = payload.get(ckey)
        customer_id = str(raw_customer) if raw_customer not in (None, "") else None
        raw_value = payload.get(vkey)
        if customer_id is None:
            error = _fail(
                strict,
                "meter_event_no_customer_defined",
                f"payload[{ckey}]",
                f"Missing required param: payload[{ckey}].",
            )
        elif raw_value is None and meter["default_aggregation"]["formula"] != "count":
            error = _fail(
                strict,
                "meter_event_invalid_value",
                f"payload[{vkey}]",
                f"Missing required param: payload[{vkey}].",
            )
        elif raw_value is not None and not _WHOLE.fullmatch(str(raw_value).strip()):
            error = _fail(
                strict,
                "meter_event_invalid_value",
                f"payload[{vkey}]",
                f"Invalid payload[{vkey}]: the value must be a whole number, got {raw_value!r}.",
            )
        else:
            value = str(int(str(raw_value).strip())) if raw_value is not None else "1"
    now = (
        state.customer_now(customer_id)
        if customer_id and state.store.get("customer", customer_id)
        else state.now()
    )
    ts = now if timestamp is None else int(timestamp)
    if error is None:
        if ts < now - PAST_LIMIT:
            error = _fail(
                strict,
                "timestamp_too_far_in_past",
                "timestamp",
                "The timestamp must be within the past 35 calendar days.",
            )
        elif ts > now + FUTURE_LIMIT:
            error = _fail(
                strict,
                "timestamp_in_future",
                "timestamp",
                "The timestamp must not be more than 5 minutes in the future.",
            )
    if error is None and customer_id and state.store.get("customer", customer_id) is None:
        error = "meter_event_customer_not_found"
    record: dict[str, Any] = {
        "identifier": identifier,
        "event_name": event_name,
        "meter": meter["id"] if meter else None,
        "customer": customer_id,
        "value": value,
        "timestamp": ts,
        "created": state.now(),
        "source": source,
        "error": error,
        "canceled": False,
    }
    state.store.add_meter_event(record)
    return record


def payload_strings(payload: dict[str, Any]) -> dict[str, str]:
    """The payload as Stripe echoes it (string values)."""
    return {str(k): str(v) for k, v in payload.items()}


def _fail(strict: bool, code: str, param: str, message: str) -> str:
    if strict:
        raise param_error(message, param=param)
    return code


def report_errors(state: EmulatorState, records: Iterable[dict[str, Any]]) -> None:
    """Send one error report per meter (and one ``no_meter_found``) for records in error."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for record in records:
        if record["error"]:
            groups.setdefault(record["meter"], []).append(record)
    now = state.now()
    for meter_id, failed in groups.items():
        by_code: dict[str, list[dict[str, Any]]] = {}
        for record in failed:
            by_code.setdefault(record["error"], []).append(record)
        data = {
            "developer_message_summary": f"There {'is' if len(failed) == 1 else 'are'} "
            f"{len(failed)} invalid event{'s' if len(failed) != 1 else ''}",
            "reason": {
                "error_count": len(failed),
                "error_types": [
                    {
                        "code": code,
                        "error_count": len(items),
                        "sample_errors": [
                            {
                                "error_message": _message(code, r),
                                "request": {"identifier": r["identifier"]},
                            }
                            for r in items[:5]
                        ],
                    }
                    for code, items in by_code.items()
                ],
            },
            "validation_end": rfc3339(now),
            "validation_start": rfc3339(min(r["created"] for r in failed)),
        }
        if meter_id is None:
            events.emit_thin(state, "v1.billing.meter.no_meter_found", None, data)
        else:
            related = {
                "id": meter_id,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{meter_id}",
            }
            events.emit_thin(state, "v1.billing.meter.error_report_triggered", related, data)


def _message(code: str, record: dict[str, Any]) -> str:
    return MESSAGES.get(code, code).format(
        event_name=record["event_name"],
        customer=record["customer"],
        value=record["value"],
        key="customer",
    )


def cancel(state: EmulatorState, event_name: str, identifier: str) -> None:
    """A ``type=cancel`` adjustment: the event stops counting (within 24 hours of receipt)."""
    index = state.store.identifiers.get(identifier)
    record = state.store.meter_events[index] if index is not None else None
    if record is None or record["event_name"] != event_name:
        raise StripeError(
            400,
            f"No meter event with identifier {identifier} was found for event name {event_name}.",
            code="resource_missing",
            param="cancel[identifier]",
        )
    if record["created"] + ADJUST_WINDOW <= state.now():
        raise StripeError(
            400,
            "Meter events can only be canceled within 24 hours of being received.",
            param="cancel[identifier]",
        )
    record["canceled"] = True


def counted(state: EmulatorState, meter_id: str, customer_id: str) -> Iterable[dict[str, Any]]:
    """Events that count for a customer on a meter (no error, not canceled)."""
    for index in state.store.usage_index.get(f"{meter_id}|{customer_id}", ()):
        record = state.store.meter_events[index]
        if record["error"] is None and not record["canceled"]:
            yield record


def aggregate(
    state: EmulatorState, meter: dict[str, Any], customer_id: str, start: int, end: int
) -> Decimal:
    """The meter's aggregation over events with ``start <= timestamp < end``."""
    return combine(meter, counted(state, meter["id"], customer_id), start, end)


def combine(
    meter: dict[str, Any], records: Iterable[dict[str, Any]], start: int, end: int
) -> Decimal:
    selected = [r for r in records if start <= r["timestamp"] < end]
    formula = meter["default_aggregation"]["formula"]
    if not selected:
        return Decimal(0)
    if formula == "count":
        return Decimal(len(selected))
    if formula == "last":
        latest = max(enumerate(selected), key=lambda pair: (pair[1]["timestamp"], pair[0]))
        return Decimal(latest[1]["value"])
    return sum((Decimal(r["value"]) for r in selected), Decimal(0))

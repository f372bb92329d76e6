"""Meter events and adjustments, v1 (``/v1/billing/...``) and v2 (``/v2/billing/...``)."""

from __future__ import annotations

import uuid
from typing import Any

from .. import metering
from ..clock import parse_rfc3339, rfc3339
from ..errors import StripeError, param_error
from ..ids import new_id, random_token
from ..messages import ApiRequest, Response, json_response
from ..router import Router
from ..state import EmulatorState
from ..wire import AnyValue, Choice, Int, ListOf, Obj, Str, validate
from .common import show

CREATE = {
    "event_name": Str(required=True, max_len=100),
    "payload": AnyValue(required=True),
    "identifier": Str(max_len=100),
    "timestamp": Int(),
}
ADJUST = {
    "event_name": Str(required=True, max_len=100),
    "type": Choice("cancel", required=True),
    "cancel": Obj({"identifier": Str(max_len=100)}),
}
V2_EVENT = {
    "event_name": Str(required=True, max_len=100),
    "payload": AnyValue(required=True),
    "identifier": Str(max_len=100),
    "timestamp": Str(),
}


def _payload(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise param_error("Invalid object: payload", param="payload")
    return value


def _create_v1(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = validate(req.params, CREATE)
    identifier = p.get("identifier") or str(uuid.uuid4())
    record = metering.ingest(
        state,
        event_name=p["event_name"],
        payload=_payload(p["payload"]),
        identifier=identifier,
        timestamp=p.get("timestamp"),
        source="v1",
        strict=True,
    )
    metering.report_errors(state, [record])
    return show(
        state,
        req,
        {
            "object": "billing.meter_event",
            "created": record["created"],
            "event_name": record["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": metering.payload_strings(p["payload"]),
            "timestamp": record["timestamp"],
        },
    )


def _adjust(state: EmulatorState, req: ApiRequest, v2: bool) -> dict[str, Any]:
    p = validate(req.params, ADJUST) if not v2 else _v2_validate(req.params, ADJUST)
    identifier = (p.get("cancel") or {}).get("identifier")
    if not identifier:
        raise param_error(
            "Missing required param: cancel[identifier].",
            param="cancel[identifier]",
            code="parameter_missing",
        )
    metering.cancel(state, p["event_name"], identifier)
    if v2:
        return {
            "id": new_id("mtradj", 24),
            "object": "v2.billing.meter_event_adjustment",
            "cancel": {"identifier": identifier},
            "created": rfc3339(state.now()),
            "event_name": p["event_name"],
            "livemode": False,
            "status": "pending",
            "type": "cancel",
        }
    return show(
        state,
        req,
        {
            "object": "billing.meter_event_adjustment",
            "cancel": {"identifier": identifier},
            "event_name": p["event_name"],
            "livemode": False,
            "status": "pending",
            "type": "cancel",
        },
    )


def _v2_validate(raw: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """v2 bodies are JSON and know nothing of ``expand``."""
    if "expand" in raw:
        raise param_error(
            "Received unknown parameter: expand", param="expand", code="parameter_unknown"
        )
    return validate(raw, spec)


def _v2_timestamp(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_rfc3339(value))
    except ValueError as exc:
        raise param_error(
            f"Invalid timestamp: {value}; expected an RFC 3339 date-time.", param="timestamp"
        ) from exc


def _v2_event(record: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "v2.billing.meter_event",
        "created": rfc3339(record["created"]),
        "event_name": record["event_name"],
        "identifier": record["identifier"],
        "livemode": False,
        "payload": metering.payload_strings(payload),
        "timestamp": rfc3339(record["timestamp"]),
    }


def _create_v2(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    p = _v2_validate(req.params, V2_EVENT)
    identifier = p.get("identifier") or str(uuid.uuid4())
    try:
        record = metering.ingest(
            state,
            event_name=p["event_name"],
            payload=_payload(p["payload"]),
            identifier=identifier,
            timestamp=_v2_timestamp(p.get("timestamp")),
            source="v2",
            strict=True,
        )
    except metering.DuplicateIdentifier as dup:
        raise StripeError(
            400, dup.message, code="duplicate_meter_event", headers=dup.headers
        ) from dup
    metering.report_errors(state, [record])
    return _v2_event(record, p["payload"])


def _session(state: EmulatorState, req: ApiRequest) -> dict[str, Any]:
    _v2_validate(req.params, {})
    now = state.now()
    token = f"mes_tok_test_{random_token(40)}"
    session = {
        "id": new_id("mes", 24),
        "object": "v2.billing.meter_event_session",
        "authentication_token": token,
        "created": rfc3339(now),
        "expires_at": rfc3339(now + state.config.meter_event_session_ttl),
        "livemode": False,
    }
    state.store.meter_sessions[token] = {
        "id": session["id"],
        "expires_at": now + state.config.meter_event_session_ttl,
    }
    return session


def _stream(state: EmulatorState, req: ApiRequest) -> Response:
    p = _v2_validate(req.params, {"events": ListOf(AnyValue(), max_items=100, required=True)})
    checked: list[tuple[str, dict[str, Any], str, int | None]] = []
    for i, raw in enumerate(p["events"]):
        if not isinstance(raw, dict):
            raise param_error(f"Invalid object: events[{i}]", param=f"events[{i}]")
        try:
            ev = validate({k: v for k, v in raw.items()}, V2_EVENT)
        except StripeError as err:
            err.param = f"events[{i}][{err.param}]" if err.param else f"events[{i}]"
            raise
        if "expand" in raw:
            raise param_error(
                f"Received unknown parameter: events[{i}][expand]",
                param=f"events[{i}][expand]",
                code="parameter_unknown",
            )
        checked.append(
            (
                ev["event_name"],
                _payload(ev["payload"]),
                ev.get("identifier") or str(uuid.uuid4()),
                _v2_timestamp(ev.get("timestamp")),
            )
        )
    records = []
    for event_name, payload, identifier, ts in checked:
        try:
            records.append(
                metering.ingest(
                    state,
                    event_name=event_name,
                    payload=payload,
                    identifier=identifier,
                    timestamp=ts,
                    source="v2_stream",
                    strict=False,
                )
            )
        except metering.DuplicateIdentifier:
            continue  # validation is asynchronous on the stream: duplicates are dropped
    metering.report_errors(state, records)
    return json_response({})


def register(router: Router) -> None:
    router.post("/v1/billing/meter_events", _create_v1)
    router.post(
        "/v1/billing/meter_event_adjustments", lambda state, req: _adjust(state, req, False)
    )
    router.post("/v2/billing/meter_events", _create_v2)
    router.post("/v2/billing/meter_event_adjustments", lambda state, req: _adjust(state, req, True))
    router.post("/v2/billing/meter_event_session", _session)
    router.post("/v2/billing/meter_event_stream", _stream, auth="session")

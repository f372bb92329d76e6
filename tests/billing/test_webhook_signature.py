"""`POST /webhooks/stripe` accepts only deliveries signed with a configured secret, on time."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from hashlib import sha256
from typing import Any

import pytest

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.webhook_helpers import (
    OLD_SECRET,
    SECRET,
    deliver,
    event,
    now_ts,
    sign,
    stored_events,
    subscription,
)
from tests.conftest import AppClient


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> AppClient:
    client: AppClient = await start_app(make_settings(stripe_webhook_secret=[SECRET]), clock)
    return client


def an_event(client: AppClient) -> dict[str, Any]:
    return event(
        "customer.subscription.updated",
        subscription("sub_1", "cus_unknown"),
        created=now_ts(client),
    )


def assert_refused(response: Any) -> None:
    assert response.status_code == 400
    assert response.json() == {
        "error": "Bad Request",
        "message": "Invalid Stripe signature.",
    }


async def test_a_correctly_signed_event_is_accepted_and_stored(app: AppClient) -> None:
    payload = an_event(app)

    response = await deliver(app, payload)

    assert response.status_code == 200
    assert response.json()["received"] is True
    assert [e.id for e in await stored_events(app)] == [payload["id"]]


async def test_a_delivery_without_signature_is_refused_and_nothing_is_stored(
    app: AppClient,
) -> None:
    body = json.dumps(an_event(app)).encode()

    response = await app.post(
        "/webhooks/stripe", content=body, headers={"Content-Type": "application/json"}
    )

    assert_refused(response)
    assert await stored_events(app) == []


async def test_a_delivery_signed_with_another_secret_is_refused(app: AppClient) -> None:
    assert_refused(await deliver(app, an_event(app), secret="whsec_someone_else"))
    assert await stored_events(app) == []


async def test_a_body_with_one_byte_changed_is_refused(app: AppClient) -> None:
    body = json.dumps(an_event(app)).encode()
    signature = sign(body, SECRET, now_ts(app))
    tampered = body.replace(b'"active"', b'"activf"')
    assert tampered != body and len(tampered) == len(body)

    assert_refused(await deliver(app, tampered, signature=signature))
    assert await stored_events(app) == []


async def test_the_same_event_reserialised_is_refused(app: AppClient) -> None:
    """The raw bytes are verified: JSON that means the same but differs in spacing fails."""
    payload = an_event(app)
    body = json.dumps(payload).encode()
    signature = sign(body, SECRET, now_ts(app))
    compact = json.dumps(payload, separators=(",", ":")).encode()

    assert_refused(await deliver(app, compact, signature=signature))


async def test_a_v0_signature_alone_is_refused(app: AppClient) -> None:
    body = json.dumps(an_event(app)).encode()
    t = now_ts(app)
    v0 = hmac.new(SECRET.encode(), f"{t}.".encode() + body, sha256).hexdigest()

    assert_refused(await deliver(app, body, signature=f"t={t},v0={v0}"))


@pytest.mark.parametrize("skew", [-301, 301])
async def test_a_timestamp_more_than_300_seconds_off_is_refused(app: AppClient, skew: int) -> None:
    payload = an_event(app)

    assert_refused(await deliver(app, payload, timestamp=now_ts(app) + skew))
    assert await stored_events(app) == []


@pytest.mark.parametrize("skew", [-299, 299])
async def test_a_timestamp_within_300_seconds_is_accepted(app: AppClient, skew: int) -> None:
    response = await deliver(app, an_event(app), timestamp=now_ts(app) + skew)

    assert response.status_code == 200


async def test_a_replayed_delivery_outside_the_tolerance_is_refused(
    app: AppClient, clock: FrozenClock
) -> None:
    body = json.dumps(an_event(app)).encode()
    signature = sign(body, SECRET, now_ts(app))
    assert (await deliver(app, body, signature=signature)).status_code == 200

    clock.advance(301)

    assert_refused(await deliver(app, body, signature=signature))


@pytest.mark.parametrize(
    "header",
    ["", "garbage", "t=abc,v1=00", "v1=00", "t=1,t=2,v1=00", "t=,v1="],
)
async def test_a_malformed_signature_header_is_refused(app: AppClient, header: str) -> None:
    assert_refused(await deliver(app, an_event(app), signature=header or " "))


async def test_a_signed_body_that_is_not_json_is_refused(app: AppClient) -> None:
    body = b"not json at all"

    response = await deliver(app, body)

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"


async def test_a_signed_json_without_event_id_is_refused(app: AppClient) -> None:
    response = await deliver(app, {"type": "invoice.paid", "data": {}})

    assert response.status_code == 400
    assert response.json()["message"] == "The webhook body is not a Stripe event."


async def test_during_rotation_both_secrets_are_accepted(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    app: AppClient = await start_app(
        make_settings(stripe_webhook_secret=f"{OLD_SECRET}, {SECRET}"), clock
    )

    old = await deliver(app, an_event(app), secret=OLD_SECRET)
    new = await deliver(app, an_event(app), secret=SECRET)

    assert (old.status_code, new.status_code) == (200, 200)
    assert len(await stored_events(app)) == 2


async def test_a_header_with_a_second_v1_for_the_new_secret_is_accepted(app: AppClient) -> None:
    """Stripe signs with both secrets while one rolls over; one matching v1 is enough."""
    body = json.dumps(an_event(app)).encode()
    t = now_ts(app)
    old_part = sign(body, OLD_SECRET, t).split(",")[1]
    new_part = sign(body, SECRET, t).split(",")[1]

    response = await deliver(app, body, signature=f"t={t},{old_part},{new_part}")

    assert response.status_code == 200


async def test_without_a_configured_secret_every_delivery_is_refused(
    make_settings: Callable[..., Settings], start_app: Callable[..., Any], clock: FrozenClock
) -> None:
    app: AppClient = await start_app(make_settings(), clock)

    assert_refused(await deliver(app, an_event(app)))


async def test_an_event_type_we_do_not_handle_is_answered_200_and_not_stored(
    app: AppClient,
) -> None:
    payload = event("charge.refunded", {"id": "ch_1", "object": "charge"}, created=now_ts(app))

    response = await deliver(app, payload)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "ignored": True}
    assert await stored_events(app) == []


@pytest.mark.parametrize(
    "header",
    [
        b"t=\xb2,v1=00",  # a superscript two: str.isdigit() says yes, int() says no
        b"t=" + b"9" * 5000 + b",v1=00",  # past int()'s 4,300-digit limit
        b"t=\xd9\xa1\xd9\xa2,v1=00",  # Arabic-Indic digits
        b"t=1 ,v1=00",
        b"t=1,v1=" + b"0" * 10_000,
        b"t=1," + b"v1=00," * 100 + b"v1=00",
    ],
)
async def test_a_signature_header_stripe_would_never_send_is_a_400(
    app: AppClient, header: bytes
) -> None:
    body = json.dumps(an_event(app)).encode()
    response = await app.post(
        "/webhooks/stripe",
        content=body,
        headers=[(b"Content-Type", b"application/json"), (b"Stripe-Signature", header)],
    )
    assert_refused(response)

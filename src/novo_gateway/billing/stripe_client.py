"""The one place that talks to Stripe. Nothing else in the gateway imports `stripe`.

It pins the API version, sets timeouts and the SDK's own retries, keeps our calls under a
client-side rate limit, and turns Stripe's objects and errors into our own small types, so the
rest of the billing code reads the same against Stripe's test mode, live mode or the emulator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import stripe

from novo_gateway.clock import Clock
from novo_gateway.config import Settings

API_VERSION = "2026-10-28.endive"
WEBHOOK_TOLERANCE_SECONDS = 300


class StripeFailure(Exception):
    """Stripe could not be reached or did not answer usefully; the same call may be retried."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StripeRejected(Exception):
    """Stripe refused the request (a 4xx that a retry will not fix)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class DuplicateMeterEvent(StripeRejected):
    """Stripe already holds a meter event with this identifier: the report is recorded."""


class SessionExpired(StripeRejected):
    """The v2 meter event session's token has expired: open a new session."""


class InvalidSignature(Exception):
    """A webhook whose signature, secret or timestamp does not check out."""


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One usage report as a meter event: `identifier` makes a resend a no-op at Stripe."""

    identifier: str
    customer_id: str
    value: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    id: str
    customer_id: str
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


@dataclass(frozen=True, slots=True)
class InvoiceInfo:
    id: str | None
    number: str | None
    status: str | None
    amount_due: int
    amount_paid: int
    total: int
    currency: str
    created: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    pdf_url: str | None
    hosted_url: str | None


@dataclass(frozen=True, slots=True)
class MeterSummary:
    customer_id: str
    start: datetime
    end: datetime
    value: Decimal


def _ts(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class _RateLimit:
    """A token bucket: at most `rate` calls per second on average, short bursts allowed."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class StripeBilling:
    """Typed async calls to Stripe, with our idempotency keys and error classes."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self._settings = settings
        self._clock = clock or Clock()
        base = settings.stripe_api_base.rstrip("/")
        addresses: Any = {"api": base, "meter_events": base} if base else None
        self._http = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
        self._client = stripe.StripeClient(
            settings.stripe_secret_key or "sk_test_unset",
            stripe_version=API_VERSION,
            base_addresses=addresses,
            max_network_retries=settings.stripe_max_network_retries,
            http_client=self._http,
        )
        self._limit = _RateLimit(settings.stripe_rate_limit_per_second)
        self._meter_ids: dict[str, str] = {}
        self._stream_token: tuple[str, float] | None = None

    @property
    def sdk(self) -> stripe.StripeClient:
        """The SDK client, for set-up code that needs calls not wrapped here."""
        return self._client

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def call(
        self,
        method: Any,
        *args: str,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        api_key: str | None = None,
    ) -> Any:
        """Call an SDK `*_async` method under our rate limit, translating Stripe's errors."""
        await self._limit.acquire()
        options: dict[str, Any] = {}
        if idempotency_key:
            options["idempotency_key"] = idempotency_key
        if api_key:
            options["api_key"] = api_key
        try:
            return await method(*args, dict(params or {}), options)
        except stripe.RateLimitError as exc:
            raise StripeFailure(
                str(exc.user_message or exc), retry_after=_retry_after(exc)
            ) from exc
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise StripeFailure(
                str(exc.user_message or exc), retry_after=_retry_after(exc)
            ) from exc
        except stripe.TemporarySessionExpiredError as exc:
            raise SessionExpired(str(exc.user_message or exc), code=exc.code, status=401) from exc
        except stripe.IdempotencyError as exc:
            raise StripeRejected(str(exc.user_message or exc), code="idempotency_error") from exc
        except stripe.StripeError as exc:
            status = exc.http_status
            message = str(exc.user_message or exc)
            if status is not None and (status >= 500 or status == 409):
                raise StripeFailure(message, retry_after=_retry_after(exc)) from exc
            if _should_retry(exc):
                raise StripeFailure(message, retry_after=_retry_after(exc)) from exc
            if "already exists with identifier" in message or exc.code == "duplicate_meter_event":
                raise DuplicateMeterEvent(message, code=exc.code, status=status) from exc
            raise StripeRejected(message, code=exc.code, status=status) from exc

    # --- Customers and subscriptions -----------------------------------------------------------

    async def create_customer(
        self, *, email: str, name: str, account_id: int, idempotency_key: str
    ) -> str:
        customer = await self.call(
            self._client.v1.customers.create_async,
            params={"email": email, "name": name, "metadata": {"novo_account_id": str(account_id)}},
            idempotency_key=idempotency_key,
        )
        return str(customer.id)

    async def create_subscription(
        self, *, customer_id: str, price_id: str, account_id: int, idempotency_key: str
    ) -> SubscriptionInfo:
        sub = await self.call(
            self._client.v1.subscriptions.create_async,
            params={
                "customer": customer_id,
                "items": [{"price": price_id}],
                "metadata": {"novo_account_id": str(account_id)},
            },
            idempotency_key=idempotency_key,
        )
        return subscription_info(sub)

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionInfo:
        sub = await self.call(self._client.v1.subscriptions.retrieve_async, subscription_id)
        return subscription_info(sub)

    async def list_invoices(self, customer_id: str, limit: int = 24) -> list[InvoiceInfo]:
        page = await self.call(
            self._client.v1.invoices.list_async, params={"customer": customer_id, "limit": limit}
        )
        return [invoice_info(inv) for inv in page.data]

    async def meter_event(self, *, event_name: str, event: MeterEvent) -> None:
        """Send one meter event; its identifier makes a resend a no-op at Stripe."""
        await self.call(
            self._client.v1.billing.meter_events.create_async,
            params={
                "event_name": event_name,
                "payload": {"stripe_customer_id": event.customer_id, "value": str(event.value)},
                "identifier": event.identifier,
                "timestamp": int(event.timestamp.timestamp()),
            },
            # The identifier is unique per report; deriving the key from it makes a retried POST
            # a replay at Stripe, and a resend after a crash a duplicate Stripe recognises.
            idempotency_key=f"meter-event-{event.identifier}",
        )

    async def meter_event_stream(self, *, event_name: str, events: list[MeterEvent]) -> None:
        """Send up to 100 meter events in one call to the v2 stream (high volume)."""
        body = {
            "events": [
                {
                    "event_name": event_name,
                    "identifier": e.identifier,
                    "payload": {"stripe_customer_id": e.customer_id, "value": str(e.value)},
                    "timestamp": e.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                }
                for e in events
            ]
        }
        for attempt in (1, 2):
            token = await self._meter_session_token(renew=attempt == 2)
            try:
                await self.call(
                    self._client.v2.billing.meter_event_stream.create_async,
                    params=body,
                    api_key=token,
                )
                return
            except SessionExpired:
                if attempt == 2:
                    raise

    async def _meter_session_token(self, *, renew: bool) -> str:
        """A v2 meter event session token, renewed a minute before it expires."""
        if self._stream_token and not renew and self._stream_token[1] - time.time() > 60:
            return self._stream_token[0]
        session = await self.call(self._client.v2.billing.meter_event_session.create_async)
        expires = datetime.fromisoformat(str(session.expires_at).replace("Z", "+00:00"))
        self._stream_token = (str(session.authentication_token), expires.timestamp())
        return self._stream_token[0]

    async def meter_id(self, event_name: str) -> str:
        """The id of the active meter with this event name (looked up once, then cached)."""
        cached = self._meter_ids.get(event_name)
        if cached:
            return cached
        page = await self.call(
            self._client.v1.billing.meters.list_async, params={"status": "active", "limit": 100}
        )
        async for meter in page.auto_paging_iter():
            if meter.event_name == event_name:
                self._meter_ids[event_name] = str(meter.id)
                return str(meter.id)
        raise StripeRejected(f"No active Stripe meter has the event name {event_name!r}.")

    async def meter_total(
        self, *, meter_id: str, customer_id: str, start: datetime, end: datetime
    ) -> Decimal:
        """Stripe's total for a customer between two minute boundaries ; eventually consistent."""
        page = await self.call(
            self._client.v1.billing.meters.event_summaries.list_async,
            meter_id,
            params={
                "customer": customer_id,
                "start_time": int(start.timestamp()),
                "end_time": int(end.timestamp()),
                "limit": 100,
            },
        )
        total = Decimal(0)
        async for summary in page.auto_paging_iter():
            total += Decimal(str(summary.aggregated_value))
        return total

    # --- Billing endpoints and webhooks: subscription changes, invoices, portal, events --------

    async def set_cancel_at_period_end(
        self, subscription_id: str, cancel: bool
    ) -> SubscriptionInfo:
        """Cancel at the end of the period (or undo that); the same call twice is harmless."""
        sub = await self.call(
            self._client.v1.subscriptions.update_async,
            subscription_id,
            params={"cancel_at_period_end": cancel},
        )
        return subscription_info(sub)

    async def cancel_subscription_now(self, subscription_id: str) -> SubscriptionInfo:
        """End the subscription now and invoice its usage so far (no proration credit)."""
        sub = await self.call(
            self._client.v1.subscriptions.cancel_async,
            subscription_id,
            params={"invoice_now": True, "prorate": False},
        )
        return subscription_info(sub)

    async def live_subscriptions(self, customer_id: str) -> list[SubscriptionInfo]:
        """The customer's subscriptions that have not ended (Stripe's default list filter)."""
        page = await self.call(
            self._client.v1.subscriptions.list_async,
            params={"customer": customer_id, "limit": 10},
        )
        return [subscription_info(sub) for sub in page.data]

    async def upcoming_invoice(
        self, customer_id: str, subscription_id: str | None
    ) -> UpcomingInvoice | None:
        """Stripe's preview of the next invoice; None when nothing is upcoming."""
        params: dict[str, Any] = {"customer": customer_id}
        if subscription_id:
            params["subscription"] = subscription_id
        try:
            preview = await self.call(self._client.v1.invoices.create_preview_async, params=params)
        except StripeRejected as exc:
            if exc.code == "invoice_upcoming_none":
                return None
            raise
        return upcoming_invoice(preview)

    async def portal_url(self, customer_id: str, return_url: str) -> str:
        """A billing portal session's URL for the customer, coming back to `return_url`."""
        session = await self.call(
            self._client.v1.billing_portal.sessions.create_async,
            params={"customer": customer_id, "return_url": return_url},
        )
        return str(session.url)

    async def thin_event(self, event_id: str) -> dict[str, Any]:
        """A v2 event with its `data` (webhooks carry thin events without it)."""
        event = await self.call(self._client.v2.core.events.retrieve_async, event_id)
        data: dict[str, Any] = _plain(event)
        return data

    # --- Set-up and provisioning (billing/setup.py, billing/provisioning.py) --------------------

    async def find_meter(self, event_name: str) -> MeterInfo | None:
        """The meter with this event name: the active one if any, else an inactive one."""
        page = await self.call(self._client.v1.billing.meters.list_async, params={"limit": 100})
        found: MeterInfo | None = None
        async for meter in page.auto_paging_iter():
            if meter.event_name == event_name:
                info = meter_info(meter)
                if info.status == "active":
                    return info
                found = found or info
        return found

    async def create_meter(self, params: Mapping[str, Any]) -> MeterInfo:
        return meter_info(
            await self.call(self._client.v1.billing.meters.create_async, params=params)
        )

    async def reactivate_meter(self, meter_id: str) -> MeterInfo:
        return meter_info(
            await self.call(self._client.v1.billing.meters.reactivate_async, meter_id)
        )

    async def find_product(self, product_id: str) -> ProductInfo | None:
        """The product with this id, or None when Stripe has none."""
        try:
            product = await self.call(self._client.v1.products.retrieve_async, product_id)
        except StripeRejected as exc:
            if exc.status == 404 or exc.code == "resource_missing":
                return None
            raise
        return product_info(product)

    async def create_product(self, params: Mapping[str, Any]) -> ProductInfo:
        return product_info(await self.call(self._client.v1.products.create_async, params=params))

    async def update_product(self, product_id: str, params: Mapping[str, Any]) -> ProductInfo:
        product = await self.call(self._client.v1.products.update_async, product_id, params=params)
        return product_info(product)

    async def find_price(self, lookup_key: str) -> PriceInfo | None:
        """The price holding this lookup key, with its tiers; None when no price has it."""
        page = await self.call(
            self._client.v1.prices.list_async,
            params={"lookup_keys": [lookup_key], "expand": ["data.tiers"], "limit": 1},
        )
        return price_info(page.data[0]) if page.data else None

    async def create_price(self, params: Mapping[str, Any]) -> PriceInfo:
        price = await self.call(
            self._client.v1.prices.create_async, params={**params, "expand": ["tiers"]}
        )
        return price_info(price)

    async def find_portal_configuration(self, marker: Mapping[str, str]) -> str | None:
        """The id of the active portal configuration whose metadata holds `marker`."""
        page = await self.call(
            self._client.v1.billing_portal.configurations.list_async,
            params={"active": True, "limit": 100},
        )
        async for config in page.auto_paging_iter():
            metadata = _plain(config).get("metadata") or {}
            if all(metadata.get(k) == v for k, v in marker.items()):
                return str(config.id)
        return None

    async def create_portal_configuration(self, params: Mapping[str, Any]) -> str:
        config = await self.call(
            self._client.v1.billing_portal.configurations.create_async, params=params
        )
        return str(config.id)

    async def webhook_endpoints(self) -> list[WebhookEndpointInfo]:
        page = await self.call(self._client.v1.webhook_endpoints.list_async, params={"limit": 100})
        return [webhook_endpoint_info(endpoint) async for endpoint in page.auto_paging_iter()]

    async def find_webhook_endpoint(self, url: str) -> WebhookEndpointInfo | None:
        """The webhook endpoint sending to exactly this URL (its secret is not shown again)."""
        for endpoint in await self.webhook_endpoints():
            if endpoint.url == url:
                return endpoint
        return None

    async def create_webhook_endpoint(self, params: Mapping[str, Any]) -> WebhookEndpointInfo:
        endpoint = await self.call(self._client.v1.webhook_endpoints.create_async, params=params)
        return webhook_endpoint_info(endpoint)

    async def update_webhook_endpoint(
        self, endpoint_id: str, params: Mapping[str, Any]
    ) -> WebhookEndpointInfo:
        endpoint = await self.call(
            self._client.v1.webhook_endpoints.update_async, endpoint_id, params=params
        )
        return webhook_endpoint_info(endpoint)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> None:
        await self.call(self._client.v1.webhook_endpoints.delete_async, endpoint_id)

    async def find_customer(self, *, email: str, account_id: int) -> str | None:
        """Our customer for an account: listed by email (consistent, unlike search), then
        matched on `metadata.novo_account_id`, so another customer with that email is ignored."""
        page = await self.call(
            self._client.v1.customers.list_async, params={"email": email, "limit": 100}
        )
        async for customer in page.auto_paging_iter():
            metadata = _plain(customer).get("metadata") or {}
            if metadata.get("novo_account_id") == str(account_id):
                return str(customer.id)
        return None

    async def find_subscription(
        self, *, customer_id: str, price_id: str
    ) -> SubscriptionInfo | None:
        """The customer's live subscription to this price, if it has one."""
        page = await self.call(
            self._client.v1.subscriptions.list_async,
            params={"customer": customer_id, "price": price_id, "limit": 10},
        )
        for sub in page.data:
            info = subscription_info(sub)
            if info.status not in {"canceled", "incomplete_expired"}:
                return info
        return None


def _retry_after(exc: stripe.StripeError) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _should_retry(exc: stripe.StripeError) -> bool:
    headers = exc.headers or {}
    return (headers.get("Stripe-Should-Retry") or headers.get("stripe-should-retry")) == "true"


def _plain(obj: Any) -> Any:
    """A plain dict: SDK objects are not dicts (no `.get`); webhook payloads already are."""
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def subscription_info(sub: Any) -> SubscriptionInfo:
    sub = _plain(sub)
    items = sub["items"]["data"] if sub.get("items") else []
    first = items[0] if items else {}
    return SubscriptionInfo(
        id=str(sub["id"]),
        customer_id=str(
            sub["customer"] if isinstance(sub["customer"], str) else sub["customer"]["id"]
        ),
        status=str(sub["status"]),
        current_period_start=_ts(first.get("current_period_start")),
        current_period_end=_ts(first.get("current_period_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
    )


def invoice_info(inv: Any) -> InvoiceInfo:
    inv = _plain(inv)
    return InvoiceInfo(
        id=inv.get("id"),
        number=inv.get("number"),
        status=inv.get("status"),
        amount_due=int(inv.get("amount_due") or 0),
        amount_paid=int(inv.get("amount_paid") or 0),
        total=int(inv.get("total") or 0),
        currency=str(inv.get("currency") or "usd"),
        created=_ts(inv.get("created")),
        period_start=_ts(inv.get("period_start")),
        period_end=_ts(inv.get("period_end")),
        pdf_url=inv.get("invoice_pdf"),
        hosted_url=inv.get("hosted_invoice_url"),
    )


def verify_webhook(
    payload: bytes, header: str | None, secrets: Sequence[str], now: float
) -> dict[str, Any]:
    """Check a webhook's `Stripe-Signature` against any of `secrets`; return the event as a dict.

    The SDK's check rejects only old timestamps; we reject both directions of clock skew.
    """
    if not header or not secrets:
        raise InvalidSignature("missing signature or no webhook secret configured")
    stamps = [p.strip()[2:] for p in header.split(",") if p.strip().startswith("t=")]
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise InvalidSignature("malformed Stripe-Signature header")
    if abs(now - int(stamps[0])) > WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    text = payload.decode("utf-8", errors="strict")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        try:
            event: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise InvalidSignature("body is not JSON") from exc
        return event
    raise InvalidSignature("no signature matches")


# --- Billing endpoints: the upcoming invoice -------------------------------------------------


@dataclass(frozen=True, slots=True)
class InvoiceLineInfo:
    description: str | None
    amount: int
    quantity: int | None
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True, slots=True)
class UpcomingInvoice:
    amount_due: int
    total: int
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    next_payment_attempt: datetime | None
    lines: list[InvoiceLineInfo]


def upcoming_invoice(preview: Any) -> UpcomingInvoice:
    data = _plain(preview)
    lines = (data.get("lines") or {}).get("data") or []
    return UpcomingInvoice(
        amount_due=int(data.get("amount_due") or 0),
        total=int(data.get("total") or 0),
        currency=str(data.get("currency") or "usd"),
        period_start=_ts(data.get("period_start")),
        period_end=_ts(data.get("period_end")),
        next_payment_attempt=_ts(data.get("next_payment_attempt")),
        lines=[
            InvoiceLineInfo(
                description=line.get("description"),
                amount=int(line.get("amount") or 0),
                quantity=line.get("quantity"),
                period_start=_ts((line.get("period") or {}).get("start")),
                period_end=_ts((line.get("period") or {}).get("end")),
            )
            for line in lines
        ],
    )


# --- Set-up and provisioning: meters, products, prices, webhook endpoints -------------------------


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: str
    event_name: str
    status: str
    formula: str
    customer_payload_key: str
    value_payload_key: str


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: str
    name: str
    active: bool


@dataclass(frozen=True, slots=True)
class PriceTier:
    """One graduated tier: `up_to` units (None: no limit) at `unit_amount` cents each."""

    up_to: int | None
    unit_amount: Decimal
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceInfo:
    id: str
    product_id: str
    lookup_key: str | None
    active: bool
    currency: str
    interval: str | None
    usage_type: str | None
    meter_id: str | None
    billing_scheme: str
    tiers_mode: str | None
    tiers: tuple[PriceTier, ...]


@dataclass(frozen=True, slots=True)
class WebhookEndpointInfo:
    id: str
    url: str
    status: str
    enabled_events: tuple[str, ...]
    secret: str | None = field(default=None, repr=False)


def _decimal(exact: Any, whole: Any) -> Decimal:
    if exact is not None:
        return Decimal(str(exact))
    return Decimal(int(whole or 0))


def meter_info(meter: Any) -> MeterInfo:
    data = _plain(meter)
    return MeterInfo(
        id=str(data["id"]),
        event_name=str(data["event_name"]),
        status=str(data.get("status") or "active"),
        formula=str((data.get("default_aggregation") or {}).get("formula") or ""),
        customer_payload_key=str((data.get("customer_mapping") or {}).get("event_payload_key")),
        value_payload_key=str((data.get("value_settings") or {}).get("event_payload_key")),
    )


def product_info(product: Any) -> ProductInfo:
    data = _plain(product)
    return ProductInfo(id=str(data["id"]), name=str(data.get("name")), active=bool(data["active"]))


def price_info(price: Any) -> PriceInfo:
    data = _plain(price)
    recurring = data.get("recurring") or {}
    product = data.get("product")
    return PriceInfo(
        id=str(data["id"]),
        product_id=str(product if isinstance(product, str) else (product or {}).get("id")),
        lookup_key=data.get("lookup_key"),
        active=bool(data.get("active")),
        currency=str(data.get("currency")),
        interval=recurring.get("interval"),
        usage_type=recurring.get("usage_type"),
        meter_id=recurring.get("meter"),
        billing_scheme=str(data.get("billing_scheme")),
        tiers_mode=data.get("tiers_mode"),
        tiers=tuple(
            PriceTier(
                up_to=tier.get("up_to"),
                unit_amount=_decimal(tier.get("unit_amount_decimal"), tier.get("unit_amount")),
                flat_amount=_decimal(tier.get("flat_amount_decimal"), tier.get("flat_amount")),
            )
            for tier in data.get("tiers") or []
        ),
    )


def webhook_endpoint_info(endpoint: Any) -> WebhookEndpointInfo:
    data = _plain(endpoint)
    return WebhookEndpointInfo(
        id=str(data["id"]),
        url=str(data["url"]),
        status=str(data.get("status") or "enabled"),
        enabled_events=tuple(data.get("enabled_events") or ()),
        secret=data.get("secret"),
    )

"""The one place that talks to Stripe. Nothing else in the gateway imports `stripe`.

It pins the API version, sets timeouts and the SDK's own retries, keeps our calls under a
client-side rate limit, and turns Stripe's objects and errors into our own small types, so the
rest of the billing code reads the same against Stripe's test mode, live mode or the emulator.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import stripe

from novo_gateway.accounts.models import SUBSCRIPTION_ENDED
from novo_gateway.billing.stripe_types import (
    ITEM_PERIOD_START,
    ITEM_SOURCE,
    ITEM_UNITS,
    CarriedItem,
    EventDestinationInfo,
    InvoiceInfo,
    MeterEvent,
    MeterInfo,
    PeriodInvoice,
    PriceInfo,
    ProductInfo,
    SubscriptionInfo,
    UpcomingInvoice,
    WebhookEndpointInfo,
    as_dict,
    carried_item,
    event_destination_info,
    invoice_info,
    meter_info,
    period_invoice,
    price_info,
    product_info,
    subscription_info,
    upcoming_invoice,
    webhook_endpoint_info,
)
from novo_gateway.kit import jsonbody
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings

API_VERSION = "2026-10-28.endive"
# Metadata on the objects `setup-stripe` creates, to find them again.
SETUP_MARKER: Mapping[str, str] = {"novo_gateway": "billing"}
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


class _RateLimit:
    """A token bucket: at most `rate` calls per second on average, short bursts allowed.

    It waits with `asyncio.sleep`, so it measures the event loop's clock, the one that sleep
    waits on (a test clock that stands still would make it wait for ever)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._updated: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                now = loop.time()
                elapsed = 0.0 if self._updated is None else now - self._updated
                self._tokens = min(self._rate, self._tokens + elapsed * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)


class StripeBilling:
    """Typed async calls to Stripe, with our idempotency keys and error classes."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
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
        self._portal_configuration: str | None = None

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

    # --- Late usage: period invoices and the items that carry units over (billing/carryover.py) --

    async def period_invoices(self, customer_id: str, limit: int = 24) -> list[PeriodInvoice]:
        """The customer's subscription invoices, newest first, with the units their meters
        invoiced (every line read, also past the 10 an invoice embeds)."""
        page = await self.call(
            self._client.v1.invoices.list_async, params={"customer": customer_id, "limit": limit}
        )
        found = []
        for inv in page.data:
            lines = list(inv.lines.data)
            if inv.lines.has_more:
                more = await self.call(
                    self._client.v1.invoices.line_items.list_async, inv.id, params={"limit": 100}
                )
                lines = [line async for line in more.auto_paging_iter()]
            info = period_invoice(inv, lines)
            if info is not None:
                found.append(info)
        return found

    async def invoice_covering(self, customer_id: str, at: datetime) -> PeriodInvoice | None:
        """The subscription invoice whose period holds `at` (None while none was made)."""
        for invoice in await self.period_invoices(customer_id):
            if invoice.covers(at) and invoice.status != "void":
                return invoice
        return None

    async def carried_items(self, customer_id: str, since: datetime) -> list[CarriedItem]:
        """The customer's carry-over invoice items created since `since`, pending or invoiced."""
        page = await self.call(
            self._client.v1.invoice_items.list_async,
            params={
                "customer": customer_id,
                "created": {"gte": int(since.timestamp())},
                "limit": 100,
            },
        )
        items = []
        async for item in page.auto_paging_iter():
            carried = carried_item(item)
            if carried is not None:
                items.append(carried)
        return items

    async def carry_over(
        self,
        *,
        invoice: PeriodInvoice,
        units: int,
        amount: int,
        description: str,
        source: str,
        idempotency_key: str,
        subscription: str | None,
    ) -> CarriedItem:
        """A pending invoice item charging `amount` cents for `units` of `invoice`'s period
        (named in its period and metadata): on `subscription`'s next invoice, or, with none, the
        customer's own item (for `invoice_pending`)."""
        params: dict[str, Any] = {
            "customer": invoice.customer_id,
            "amount": amount,
            "currency": invoice.currency,
            "description": description,
            "period": {
                "start": int(invoice.period_start.timestamp()),
                "end": int(invoice.period_end.timestamp()),
            },
            "metadata": {
                ITEM_UNITS: str(units),
                ITEM_PERIOD_START: str(int(invoice.period_start.timestamp())),
                ITEM_SOURCE: source,
            },
        }
        if subscription is not None:
            params["subscription"] = subscription
        item = await self.call(
            self._client.v1.invoice_items.create_async,
            params=params,
            idempotency_key=idempotency_key,
        )
        carried = carried_item(item)
        if carried is None:
            raise StripeRejected("Stripe answered an invoice item without its metadata.")
        return carried

    async def invoice_pending(self, customer_id: str, *, idempotency_key: str) -> str:
        """A one-off invoice of the customer's pending items that no subscription holds,
        finalized at once and collected by Stripe (`auto_advance`); its id."""
        invoice = await self.call(
            self._client.v1.invoices.create_async,
            params={
                "customer": customer_id,
                "pending_invoice_items_behavior": "include",
                "collection_method": "charge_automatically",
                "auto_advance": True,
                "description": "API usage after the subscription ended",
            },
            idempotency_key=idempotency_key,
        )
        await self.finalize_one_off(str(invoice.id))
        return str(invoice.id)

    async def finalize_one_off(self, invoice_id: str) -> None:
        """Finalize a one-off draft (`invoice_pending`'s); any other invoice is left as it is."""
        current = await self.call(self._client.v1.invoices.retrieve_async, invoice_id)
        if current.status == "draft" and current.billing_reason == "manual":
            await self.call(
                self._client.v1.invoices.finalize_invoice_async,
                invoice_id,
                idempotency_key=f"finalize-{invoice_id}",
            )

    async def retrieve_price(self, price_id: str) -> PriceInfo:
        """A price with its tiers."""
        price = await self.call(
            self._client.v1.prices.retrieve_async, price_id, params={"expand": ["tiers"]}
        )
        return price_info(price)

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
        if self._stream_token and not renew and self._stream_token[1] - self._clock.time() > 60:
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
        """A billing portal session's URL for the customer, coming back to `return_url`, with
        our portal configuration (Stripe's default one is the Dashboard's, not ours)."""
        return await self._portal_session({"customer": customer_id, "return_url": return_url})

    async def payment_method_url(self, customer_id: str, return_url: str) -> str:
        """A portal session that goes straight to adding a payment method (saved as the
        customer's default), then back to `return_url`."""
        params: dict[str, Any] = {
            "customer": customer_id,
            "return_url": return_url,
            "flow_data": {
                "type": "payment_method_update",
                "after_completion": {"type": "redirect", "redirect": {"return_url": return_url}},
            },
        }
        return await self._portal_session(params)

    async def _portal_session(self, params: dict[str, Any]) -> str:
        """A billing portal session's URL, with our portal configuration when there is one."""
        configuration = await self.portal_configuration()
        if configuration:
            params = {**params, "configuration": configuration}
        session = await self.call(
            self._client.v1.billing_portal.sessions.create_async, params=params
        )
        return str(session.url)

    async def has_payment_method(self, customer_id: str, subscription_id: str | None) -> bool:
        """Whether Stripe can charge the customer's invoices: a default payment method on the
        customer (`invoice_settings`) or on the subscription."""
        customer = as_dict(await self.call(self._client.v1.customers.retrieve_async, customer_id))
        if (customer.get("invoice_settings") or {}).get("default_payment_method"):
            return True
        if subscription_id is None:
            return False
        sub = as_dict(
            await self.call(self._client.v1.subscriptions.retrieve_async, subscription_id)
        )
        return bool(sub.get("default_payment_method"))

    async def portal_configuration(self) -> str | None:
        """STRIPE_PORTAL_CONFIGURATION_ID, else the configuration `setup-stripe` made, found by
        its metadata (once, then cached); None when there is none."""
        if self._settings.stripe_portal_configuration_id:
            return self._settings.stripe_portal_configuration_id
        if self._portal_configuration is None:
            self._portal_configuration = await self.find_portal_configuration(SETUP_MARKER)
        return self._portal_configuration

    async def thin_event(self, event_id: str) -> dict[str, Any]:
        """A v2 event with its `data` (webhooks carry thin events without it)."""
        event = await self.call(self._client.v2.core.events.retrieve_async, event_id)
        data: dict[str, Any] = as_dict(event)
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
            metadata = as_dict(config).get("metadata") or {}
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

    # --- v2 event destinations (thin events such as meter error reports) ---------------------

    async def event_destinations(self) -> list[EventDestinationInfo]:
        """The account's event destinations, with their URLs (redacted unless asked for)."""
        page = await self.call(
            self._client.v2.core.event_destinations.list_async,
            params={"include": ["webhook_endpoint.url"], "limit": 100},
        )
        return [event_destination_info(d) for d in page.data]

    async def create_event_destination(self, params: Mapping[str, Any]) -> EventDestinationInfo:
        """Create a destination; its signing secret is in this answer only."""
        destination = await self.call(
            self._client.v2.core.event_destinations.create_async,
            params={**params, "include": ["webhook_endpoint.signing_secret"]},
        )
        return event_destination_info(destination)

    async def update_event_destination(
        self, destination_id: str, params: Mapping[str, Any]
    ) -> EventDestinationInfo:
        destination = await self.call(
            self._client.v2.core.event_destinations.update_async,
            destination_id,
            params={**params, "include": ["webhook_endpoint.url"]},
        )
        return event_destination_info(destination)

    async def enable_event_destination(self, destination_id: str) -> None:
        await self.call(self._client.v2.core.event_destinations.enable_async, destination_id)

    async def delete_event_destination(self, destination_id: str) -> None:
        await self.call(self._client.v2.core.event_destinations.delete_async, destination_id)

    async def find_customer(self, *, email: str, account_id: int) -> str | None:
        """Our customer for an account: listed by email (consistent, unlike search), then
        matched on `metadata.novo_account_id`, so another customer with that email is ignored."""
        page = await self.call(
            self._client.v1.customers.list_async, params={"email": email, "limit": 100}
        )
        async for customer in page.auto_paging_iter():
            metadata = as_dict(customer).get("metadata") or {}
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
            if info.status not in SUBSCRIPTION_ENDED:
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


# `t=<unix seconds>,v1=<hex>[,v1=...][,v0=...]`: ASCII only, as Stripe sends it. Anything else
# (`t=²`, which `str.isdigit` accepts; a timestamp of thousands of digits, past `int`'s limit)
# is refused here, before the SDK parses the header again.
_SIGNATURE_ITEM: Final = re.compile(r"(t=[0-9]{1,12}|v[0-9]=[0-9a-fA-F]{1,256})")
MAX_SIGNATURE_ITEMS: Final = 16


def signature_timestamp(header: str) -> int:
    """The `t=` of a well-formed `Stripe-Signature` header; InvalidSignature for anything else."""
    items = header.split(",")
    if len(items) > MAX_SIGNATURE_ITEMS or not all(
        _SIGNATURE_ITEM.fullmatch(item) for item in items
    ):
        raise InvalidSignature("malformed Stripe-Signature header")
    stamps = [item[2:] for item in items if item.startswith("t=")]
    if len(stamps) != 1:
        raise InvalidSignature("malformed Stripe-Signature header")
    return int(stamps[0])


def verify_webhook(
    payload: bytes, header: str | None, secrets: Sequence[str], now: float
) -> dict[str, Any]:
    """Check a webhook's `Stripe-Signature` against any of `secrets`; return the event as a dict.

    The SDK's check rejects only old timestamps; we reject both directions of clock skew.
    """
    if not header or not secrets:
        raise InvalidSignature("missing signature or no webhook secret configured")
    timestamp = signature_timestamp(header)
    if abs(now - timestamp) > WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    text = payload.decode("utf-8", errors="strict")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        try:
            event: dict[str, Any] = jsonbody.loads(text)
        except ValueError as exc:
            raise InvalidSignature("body is not JSON") from exc
        return event
    raise InvalidSignature("no signature matches")

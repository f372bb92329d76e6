"""Late usage: a report whose period's invoice is already final is carried over to the next
invoice as an invoice item at its own period's price, once; never sent to a meter that would count
it and bill it nowhere. Against the Stripe emulator (its global clock moves the billing cycle)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from novo_gateway.billing.carryover import CarryOver
from novo_gateway.billing.reporter import ReporterRun, UsageReporter
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.stripe_types import MeterEvent
from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator, Ledger
from tests.billing.subscriptions import (
    GRACE,
    emulator_time,
    invoiced_units,
    invoices,
    small_plan,
    subscribed,
)


async def test_a_report_after_its_period_was_finalized_is_carried_over_at_its_own_price(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 8, at=ada.start + timedelta(minutes=1))
    await make_reporter(FrozenClock(emulator_time(emulator))).drain(max_seconds=10)
    # 7 calls in the period's last seconds, not reported before Stripe finalized its invoice.
    await ledger.record(ada.user_id, ada.key_id, 7, at=ada.end - timedelta(seconds=10))
    emulator.advance((ada.end - emulator_time(emulator)).total_seconds() + GRACE + 60)
    [closed] = [i for i in await invoices(stripe_billing, ada.customer) if i.amount_due == 0][:1]
    assert closed.status == "paid" and closed.lines.data[0].quantity == 8

    run = await make_reporter(FrozenClock(emulator_time(emulator))).drain(max_seconds=10)

    assert run.carried == 1 and run.sent == 0
    [late] = [r for r in await ledger.reports() if r.status == "carried"]
    assert (late.units, late.carried_cents, late.period_start) == (7, 5, ada.start)
    assert late.carried_period_end == ada.end and late.carried_invoice_item
    assert emulator.total(ada.customer, meter_id) == 8  # nothing sent to the meter
    # The next renewal invoice holds the item: 2 of the 7 calls were still free, 5 cost 1 cent.
    emulator.advance(40 * 86400)
    renewal = (await invoices(stripe_billing, ada.customer))[0]
    [item_line] = [li for li in renewal.lines.data if li.parent.type == "invoice_item_details"]
    assert item_line.amount == 5
    assert item_line.description == (
        f"API usage {ada.start:%Y-%m-%d} – {ada.end:%Y-%m-%d}, carried over: 7 calls"
    )
    assert await invoiced_units(stripe_billing, ada.customer) == 15
    assert await ledger.billable_units(ada.user_id) == 15


async def test_a_report_in_the_grace_period_goes_to_the_meter_and_its_own_invoice(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 13, at=ada.end - timedelta(seconds=10))
    emulator.advance((ada.end - emulator_time(emulator)).total_seconds() + 60)  # a draft now

    run = await make_reporter(FrozenClock(emulator_time(emulator))).drain(max_seconds=10)

    assert run.sent == 1 and run.carried == 0
    emulator.advance(GRACE)
    [renewal] = [i for i in await invoices(stripe_billing, ada.customer) if i.amount_due]
    assert renewal.lines.data[0].quantity == 13 and renewal.amount_due == 3


async def test_a_carry_over_made_before_a_crash_is_found_not_made_again(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Stripe made the item, the process died before recording it: the report is still pending,
    and sending it again finds the item instead of charging a second one."""
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 20, at=ada.end - timedelta(seconds=10))
    emulator.advance((ada.end - emulator_time(emulator)).total_seconds() + GRACE + 60)
    reporter = make_reporter(FrozenClock(emulator_time(emulator)))
    run = ReporterRun()
    await reporter.claim(run)
    [report] = await ledger.reports()
    invoice = await stripe_billing.invoice_covering(ada.customer, report.event_timestamp)
    assert invoice is not None
    carry = CarryOver(stripe_billing, stripe_settings)
    first = await carry.charge(invoice, 20, report.id, invoice.subscription_id)

    await reporter.send_due(run)

    [report] = await ledger.reports()
    assert report.status == "carried" and report.carried_invoice_item == first.id
    assert len(await stripe_billing.carried_items(ada.customer, since=ada.start)) == 1
    assert first.amount == 10


async def test_a_report_older_than_the_meter_takes_is_carried_over_not_dropped(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """The gateway was down for 6 weeks: Stripe's meter refuses events over 35 days old, but the
    period's final invoice is there to carry them over from."""
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 12, at=ada.start + timedelta(minutes=1))
    emulator.advance(42 * 86400)

    run = await make_reporter(FrozenClock(emulator_time(emulator))).drain(max_seconds=10)

    assert (run.carried, run.expired, run.sent) == (1, 0, 0)
    [report] = await ledger.reports()
    assert (report.status, report.carried_cents) == ("carried", 2)  # 10 free, 2 at 1 cent


async def test_a_report_stripe_invoiced_before_its_answer_was_lost_is_not_carried_again(
    ledger: Ledger,
    stripe_billing: StripeBilling,
    stripe_settings: Settings,
    emulator: Emulator,
    meter_id: str,
    make_reporter: Callable[..., UsageReporter],
) -> None:
    """Sent in the grace period, counted by Stripe, the answer lost (still pending here); by the
    resend the invoice is final and holds it: marked sent, not charged a second time."""
    ada = await subscribed(ledger, stripe_billing, await small_plan(stripe_billing, meter_id))
    await ledger.record(ada.user_id, ada.key_id, 14, at=ada.end - timedelta(seconds=10))
    emulator.advance((ada.end - emulator_time(emulator)).total_seconds() + 60)
    reporter = make_reporter(FrozenClock(emulator_time(emulator)))
    run = ReporterRun()
    await reporter.claim(run)
    [report] = await ledger.reports()
    await stripe_billing.meter_event(
        event_name=stripe_settings.stripe_meter_event_name,
        event=MeterEvent(report.id, ada.customer, report.units, report.event_timestamp),
    )
    emulator.advance(GRACE)

    again = ReporterRun()
    await make_reporter(FrozenClock(emulator_time(emulator))).send_due(again)

    assert (again.sent, again.carried) == (1, 0)
    [report] = await ledger.reports()
    assert (report.status, report.last_error) == ("sent", "invoiced with its own period")
    assert await stripe_billing.carried_items(ada.customer, since=ada.start) == []
    assert await invoiced_units(stripe_billing, ada.customer) == 14

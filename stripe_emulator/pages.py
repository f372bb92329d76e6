"""Pages the emulator serves on its own host (no auth, like Stripe's hosted pages):

* ``/emulator/i/{invoice}``: the hosted invoice page (``hosted_invoice_url``),
* ``/emulator/i/{invoice}/pdf``: the invoice as a one-page PDF (``invoice_pdf``),
* ``/emulator/p/session/{session}``: a customer portal session (``url``), where the customer
  can save a card as their default payment method (the portal's payment method update) and pay
  open invoices; both forms POST back to the session's page with its ``s`` token.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qsl

from . import events, invoicing, payments
from .errors import StripeError, card_declined
from .invoice_shapes import money
from .messages import Response
from .periods import format_day
from .state import EmulatorState

PREFIX = "/emulator/"
_INVOICE = re.compile(r"^/emulator/i/([A-Za-z0-9_]+)$")
_PDF = re.compile(r"^/emulator/i/([A-Za-z0-9_]+)/pdf$")
_PORTAL = re.compile(r"^/emulator/p/session/([A-Za-z0-9_]+)$")
_PORTAL_CARD = re.compile(r"^/emulator/p/session/([A-Za-z0-9_]+)/payment_method$")
_PORTAL_PAY = re.compile(r"^/emulator/p/session/([A-Za-z0-9_]+)/pay/([A-Za-z0-9_]+)$")
#: Test cards the portal page offers (a token from payments.TEST_CARDS and its label).
PORTAL_CARDS = {
    "pm_card_visa": "Visa ending 4242 (payments succeed)",
    "pm_card_mastercard": "Mastercard ending 4444 (payments succeed)",
    "pm_card_chargeCustomerFail": "Visa ending 0341 (payments are declined)",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;color:#1a1f36}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.4rem;border-bottom:1px solid #ddd;"
    "text-align:left}.amount{text-align:right}.muted{color:#697386}"
)


def handle(
    state: EmulatorState, method: str, path: str, base_url: str, query: str = "", body: bytes = b""
) -> Response:
    if method == "POST":
        with state.store.lock:
            response = _portal_post(state, path, query, body)
            state.store.mark_dirty()
        return response
    if method != "GET":
        return _not_found()
    with state.store.lock:
        if found := _INVOICE.match(path):
            invoice = state.store.get("invoice", found.group(1))
            return (
                _html(invoice_page(state, invoice))
                if invoice and invoice["number"]
                else (_not_found())
            )
        if found := _PDF.match(path):
            invoice = state.store.get("invoice", found.group(1))
            if not invoice or not invoice["number"]:
                return _not_found()
            return Response(
                200,
                invoice_pdf(invoice),
                "application/pdf",
                {"Content-Disposition": f'inline; filename="Invoice-{invoice["number"]}.pdf"'},
            )
        if found := _PORTAL.match(path):
            session = state.store.get("billing_portal.session", found.group(1))
            return _html(portal_page(state, session)) if session else _not_found()
    return _not_found()


def _portal_post(state: EmulatorState, path: str, query: str, body: bytes) -> Response:
    """The portal page's forms: save a card (and make it the default), or pay an invoice."""
    card, pay = _PORTAL_CARD.match(path), _PORTAL_PAY.match(path)
    found = card or pay
    if found is None:
        return _not_found()
    session = state.store.get("billing_portal.session", found.group(1))
    token = dict(parse_qsl(query)).get("s")
    if session is None or not token or state.store.aux(session["id"]).get("token") != token:
        return _not_found()
    back = f"{PREFIX}p/session/{session['id']}?s={token}"
    try:
        if card:
            choice = dict(parse_qsl(body.decode("utf-8", "replace"))).get("card", "")
            if choice not in PORTAL_CARDS:
                return Response(400, b"Unknown card", "text/plain; charset=utf-8")
            save_default_card(state, session["customer"], choice)
            flow = session.get("flow") or {}
            after = flow.get("after_completion") or {}
            if after.get("type") == "redirect":
                back = after["redirect"]["return_url"]
        elif pay:
            pay_invoice(state, session["customer"], pay.group(2))
    except StripeError as err:
        return _html(_message_page(err.message, back), status=402)
    return Response(303, b"", "text/plain; charset=utf-8", {"Location": back})


def save_default_card(state: EmulatorState, customer_id: str, token: str) -> dict[str, Any]:
    """Attach a new card from a test token and make it the customer's default for invoices."""
    customer = state.store.require("customer", customer_id)
    pm = payments.create_from_token(state, token, customer_id)
    events.emit(state, "payment_method.attached", pm)
    before = dict(customer["invoice_settings"])
    customer["invoice_settings"] = {**before, "default_payment_method": pm["id"]}
    events.emit(state, "customer.updated", customer, {"invoice_settings": before})
    return pm


def pay_invoice(state: EmulatorState, customer_id: str, invoice_id: str) -> None:
    """The customer pays an open invoice of theirs with their default payment method."""
    invoice = state.store.get("invoice", invoice_id)
    if invoice is None or invoice["customer"] != customer_id or invoice["status"] != "open":
        raise StripeError(400, "This invoice cannot be paid.")
    now = state.customer_now(customer_id)
    decline = invoicing.attempt_payment(state, invoice, now, automatic=False)
    if decline is not None:
        raise card_declined(decline, payments.DECLINE_MESSAGES.get(decline, "Declined."))


def _message_page(message: str, back: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Billing portal</title>"
        f"<style>{_STYLE}</style></head><body><p>{_e(message)}</p>"
        f"<p><a href='{_e(back)}'>Back</a></p></body></html>"
    )


def _html(body: str, status: int = 200) -> Response:
    return Response(status, body.encode(), "text/html; charset=utf-8")


def _not_found() -> Response:
    return Response(404, b"Not found", "text/plain; charset=utf-8")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _lines_table(invoice: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(line['description'])}</td><td>{_e(line['quantity'])}</td>"
        f"<td class='amount'>{_e(money(line['amount'], line['currency']))}</td></tr>"
        for line in invoice["lines"]["data"]
    )
    return (
        "<table><tr><th>Description</th><th>Qty</th><th class='amount'>Amount</th></tr>"
        f"{rows}<tr><th colspan='2'>Total</th>"
        f"<th class='amount'>{_e(money(invoice['total'], invoice['currency']))}</th></tr></table>"
    )


def invoice_page(state: EmulatorState, invoice: dict[str, Any]) -> str:
    status = invoice["status"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Invoice {_e(invoice['number'])}</title><style>{_STYLE}</style></head><body>"
        f"<p class='muted'>{_e(invoice['account_name'])} (Stripe emulator, test mode)</p>"
        f"<h1>Invoice {_e(invoice['number'])}</h1>"
        f"<p>Status: <strong>{_e(status)}</strong> &middot; Amount due "
        f"{_e(money(invoice['amount_due'], invoice['currency']))} &middot; Amount paid "
        f"{_e(money(invoice['amount_paid'], invoice['currency']))}</p>"
        f"<p>Billed to {_e(invoice['customer_email'] or invoice['customer'])} for "
        f"{_e(format_day(invoice['period_start']))} &ndash; "
        f"{_e(format_day(invoice['period_end']))}</p>"
        f"{_lines_table(invoice)}"
        f"<p><a href='{_e(invoice['invoice_pdf'])}'>Download PDF</a></p></body></html>"
    )


def portal_page(state: EmulatorState, session: dict[str, Any]) -> str:
    customer = state.store.get("customer", session["customer"]) or {"id": session["customer"]}
    subs = [s for s in state.store.all("subscription") if s["customer"] == customer["id"]]
    invoices = [
        i for i in state.store.all("invoice") if i["customer"] == customer["id"] and i["number"]
    ]
    sub_rows = "".join(
        f"<tr><td>{_e(s['id'])}</td><td>{_e(s['status'])}</td><td>"
        + ", ".join(
            _e(i["price"].get("nickname") or i["price"]["product"]) for i in s["items"]["data"]
        )
        + f"</td><td>{_e(format_day(s['items']['data'][0]['current_period_start']))} &ndash; "
        f"{_e(format_day(s['items']['data'][0]['current_period_end']))}</td>"
        f"<td>{'Cancels at period end' if s['cancel_at_period_end'] else ''}</td></tr>"
        for s in subs
    )
    token = state.store.aux(session["id"]).get("token", "")
    base = f"{PREFIX}p/session/{session['id']}"
    inv_rows = "".join(
        f"<tr><td><a href='{_e(i['hosted_invoice_url'])}'>{_e(i['number'])}</a></td>"
        f"<td>{_e(i['status'])}</td>"
        f"<td class='amount'>{_e(money(i['total'], i['currency']))}</td><td>"
        + (
            f"<form method='post' action='{_e(base)}/pay/{_e(i['id'])}?s={_e(token)}'>"
            "<button type='submit'>Pay</button></form>"
            if i["status"] == "open" and i["amount_remaining"] > 0
            else ""
        )
        + "</td></tr>"
        for i in invoices
    )
    pm_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
    pm = state.store.get("payment_method", pm_id) if pm_id else None
    on_file = (
        f"{_e(pm['card']['brand'].title())} ending {_e(pm['card']['last4'])}"
        if pm
        else "No payment method on file."
    )
    options = "".join(f"<option value='{k}'>{_e(v)}</option>" for k, v in PORTAL_CARDS.items())
    card_form = (
        f"<h2>Payment method</h2><p id='payment-method'>{on_file}</p>"
        f"<form method='post' action='{_e(base)}/payment_method?s={_e(token)}'>"
        f"<label>Card (test mode) <select name='card'>{options}</select></label> "
        "<button type='submit'>Save card</button></form>"
    )
    who = customer.get("name") or customer.get("email") or customer["id"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Billing portal</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<p><a href='{_e(session['return_url'])}'>&larr; Return</a></p>"
        f"<h1>Billing for {_e(who)}</h1><p class='muted'>{_e(customer.get('email'))}</p>"
        f"{card_form}"
        "<h2>Subscriptions</h2><table><tr><th>Subscription</th><th>Status</th><th>Prices</th>"
        f"<th>Current period</th><th></th></tr>{sub_rows}</table>"
        "<h2>Invoices</h2><table><tr><th>Number</th><th>Status</th>"
        f"<th class='amount'>Total</th><th></th></tr>{inv_rows}</table></body></html>"
    )


def _pdf_text(value: str) -> str:
    ascii_text = value.replace("×", "x").encode("ascii", "replace").decode()
    return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def invoice_pdf(invoice: dict[str, Any]) -> bytes:
    """A minimal, valid one-page PDF listing the invoice and its lines."""
    texts = [
        f"Invoice {invoice['number']}",
        f"{invoice['account_name']} - Stripe emulator (test mode)",
        f"Customer: {invoice['customer_email'] or invoice['customer']}",
        f"Period: {format_day(invoice['period_start'])} - {format_day(invoice['period_end'])}",
        f"Status: {invoice['status']}",
        "",
    ]
    texts += [
        f"{line['description']}: {money(line['amount'], line['currency'])}"
        for line in invoice["lines"]["data"]
    ]
    texts += [
        "",
        f"Total: {money(invoice['total'], invoice['currency'])}",
        f"Amount due: {money(invoice['amount_due'], invoice['currency'])}",
    ]
    ops = ["BT", "/F1 12 Tf", "72 740 Td", "16 TL"]
    ops += [f"({_pdf_text(t)}) Tj T*" for t in texts]
    ops.append("ET")
    stream = "\n".join(ops).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)

"""Pages the emulator serves on its own host (no auth, like Stripe's hosted pages):

* ``/emulator/i/{invoice}``: the hosted invoice page (``hosted_invoice_url``),
* ``/emulator/i/{invoice}/pdf``: the invoice as a one-page PDF (``invoice_pdf``),
* ``/emulator/p/session/{session}``: a customer portal session (``url``).
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from .http import Response
from .invoice_shapes import money
from .periods import format_day

if TYPE_CHECKING:
    from .emulator import Emulator

PREFIX = "/emulator/"
_INVOICE = re.compile(r"^/emulator/i/([A-Za-z0-9_]+)$")
_PDF = re.compile(r"^/emulator/i/([A-Za-z0-9_]+)/pdf$")
_PORTAL = re.compile(r"^/emulator/p/session/([A-Za-z0-9_]+)$")
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;color:#1a1f36}"
    "table{border-collapse:collapse;width:100%}td,th{padding:.4rem;border-bottom:1px solid #ddd;"
    "text-align:left}.amount{text-align:right}.muted{color:#697386}"
)


def handle(em: Emulator, method: str, path: str, base_url: str) -> Response:
    if method != "GET":
        return _not_found()
    with em.store.lock:
        if found := _INVOICE.match(path):
            invoice = em.store.get("invoice", found.group(1))
            return (
                _html(invoice_page(em, invoice))
                if invoice and invoice["number"]
                else (_not_found())
            )
        if found := _PDF.match(path):
            invoice = em.store.get("invoice", found.group(1))
            if not invoice or not invoice["number"]:
                return _not_found()
            return Response(
                200,
                invoice_pdf(invoice),
                "application/pdf",
                {"Content-Disposition": f'inline; filename="Invoice-{invoice["number"]}.pdf"'},
            )
        if found := _PORTAL.match(path):
            session = em.store.get("billing_portal.session", found.group(1))
            return _html(portal_page(em, session)) if session else _not_found()
    return _not_found()


def _html(body: str) -> Response:
    return Response(200, body.encode(), "text/html; charset=utf-8")


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


def invoice_page(em: Emulator, invoice: dict[str, Any]) -> str:
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


def portal_page(em: Emulator, session: dict[str, Any]) -> str:
    customer = em.store.get("customer", session["customer"]) or {"id": session["customer"]}
    subs = [s for s in em.store.all("subscription") if s["customer"] == customer["id"]]
    invoices = [
        i for i in em.store.all("invoice") if i["customer"] == customer["id"] and i["number"]
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
    inv_rows = "".join(
        f"<tr><td><a href='{_e(i['hosted_invoice_url'])}'>{_e(i['number'])}</a></td>"
        f"<td>{_e(i['status'])}</td>"
        f"<td class='amount'>{_e(money(i['total'], i['currency']))}</td></tr>"
        for i in invoices
    )
    who = customer.get("name") or customer.get("email") or customer["id"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Billing portal</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<p><a href='{_e(session['return_url'])}'>&larr; Return</a></p>"
        f"<h1>Billing for {_e(who)}</h1><p class='muted'>{_e(customer.get('email'))}</p>"
        "<h2>Subscriptions</h2><table><tr><th>Subscription</th><th>Status</th><th>Prices</th>"
        f"<th>Current period</th><th></th></tr>{sub_rows}</table>"
        "<h2>Invoices</h2><table><tr><th>Number</th><th>Status</th>"
        f"<th class='amount'>Total</th></tr>{inv_rows}</table></body></html>"
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
